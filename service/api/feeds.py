"""Routes for feeds: list with health, add (with the SSRF check), remove.

Reads and writes only through ``Storage``. Adding resolves the URL's host at this edge
(``service.addresses``) and refuses non-public addresses unless the config allows them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, HTTPException, Request

from service.addresses import Resolver, private_address_reason, system_resolver
from service.api.hits import RowId
from service.decide import parse_duration
from service.normalize import MAX_FEED_URL_BYTES, http_host, too_long
from service.storage import Storage
from service.types import FeedRecord


def _iso(d: datetime | None) -> str | None:
    return None if d is None else d.astimezone(UTC).isoformat().replace("+00:00", "Z")


def feed_payload(f: FeedRecord) -> dict[str, Any]:
    """A feed with its health, as the API and ``feeds list --format json`` show it."""
    return {
        "id": f.id,
        "url": f.url,
        "name": f.name,
        "origin": f.origin,
        "enabled": f.enabled,
        "disabled_reason": f.disabled_reason,
        "disabled_at": _iso(f.disabled_at),
        "interval_s": f.interval_s,
        "items_per_hour": f.items_per_hour,
        "last_checked_at": _iso(f.last_checked_at),
        "last_status": f.last_status,
        "last_http_status": f.last_http_status,
        "last_error": f.last_error,
        "error_count": f.error_count,
        "failing_since": _iso(f.failing_since),
        "last_new_items": f.last_new_items,
        "next_check_at": _iso(f.next_check_at),
    }


def checked_feed_url(url: Any, allow_private: bool, resolve: Resolver) -> str:
    """The URL if a user may add it as a feed; else ``ValueError`` saying why."""
    # Real feed URLs are far shorter (Google News searches reach ~300 characters).
    if not isinstance(url, str) or too_long(url, MAX_FEED_URL_BYTES):
        raise ValueError(
            f"url must be a string of at most {MAX_FEED_URL_BYTES} characters (bytes in UTF-8)"
        )
    if http_host(url.strip()) is None:
        raise ValueError(f"{url!r} is not an http(s) URL; give the feed's full URL")
    if not allow_private:
        reason = private_address_reason(url, resolve)
        if reason is not None:
            raise ValueError(
                f"refused: {reason} (set [network] allow_private_addresses = true to allow it)"
            )
    return url.strip()


def add_feed_routes(
    app: FastAPI,
    storage: Storage,
    read: Callable[[Request], None],
    write: Callable[[Request], None],
    allow_private: bool,
    clock: Callable[[], datetime],
    resolve: Resolver = system_resolver,
) -> None:
    reads, writes = [Depends(read)], [Depends(write)]

    @app.get("/api/v1/feeds", dependencies=reads)
    def list_feeds() -> dict[str, Any]:
        return {"items": [feed_payload(f) for f in storage.list_feeds()]}

    @app.get("/api/v1/feeds/{feed_id}", dependencies=reads)
    def get_feed(feed_id: RowId) -> dict[str, Any]:
        """One feed with its health; a removed one too (its ``disabled_reason`` says so)."""
        feed = storage.get_feed(str(feed_id))
        if feed is None:
            raise HTTPException(404, f"no feed {feed_id}")
        return feed_payload(feed)

    @app.post("/api/v1/feeds", dependencies=writes, status_code=201)
    def add_feed(body: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
        unknown = set(body) - {"url", "name", "interval"}
        if unknown:
            raise HTTPException(422, f"unknown fields {sorted(unknown)}; use url, name, interval")
        name = body.get("name")
        if name is not None and not isinstance(name, str):
            raise HTTPException(422, "name must be a string")
        try:
            # The interval first: a request refused for it should not look up the host.
            raw_interval = body.get("interval")
            interval = None if raw_interval is None else parse_duration(raw_interval)
            url = checked_feed_url(body.get("url"), allow_private, resolve)
        except ValueError as e:
            raise HTTPException(422, str(e)) from e
        feed, created = storage.add_feed(url, clock(), name, interval)
        if not created:
            raise HTTPException(409, f"feed {feed.id} already has the URL {feed.url}")
        return feed_payload(feed)

    @app.delete("/api/v1/feeds/{feed_id}", dependencies=writes)
    def remove_feed(feed_id: RowId) -> dict[str, Any]:
        removed = storage.remove_feed(str(feed_id))
        if removed is None:
            raise HTTPException(404, f"no feed {feed_id}")
        return {"removed": feed_payload(removed)}
