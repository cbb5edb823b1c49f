"""The HTTP API (FastAPI app factory). Routes read and write only through ``Storage``."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from service import __version__
from service.api.auth import token_checks
from service.api.dashboard import add_dashboard_routes
from service.api.feeds import add_feed_routes
from service.api.webhooks import add_webhook_routes
from service.storage import Storage, hit_payload
from service.types import HitQuery

# Largest page a client may ask for; bigger exports should page with the cursor.
MAX_PAGE = 500
CSV_COLUMNS = (
    "id",
    "first_seen_at",
    "published_at",
    "score",
    "topics",
    "event_type",
    "jurisdictions",
    "source",
    "title",
    "url",
    "evidence",
)


def _iso(d: datetime | None) -> str | None:
    return None if d is None else d.astimezone(UTC).isoformat().replace("+00:00", "Z")


def hits_csv(hits: list[dict[str, Any]]) -> Iterator[str]:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(CSV_COLUMNS)
    for h in hits:
        writer.writerow(
            [
                h["id"],
                h["first_seen_at"],
                h["published_at"],
                h["score"],
                ";".join(h["topics"]),
                h["event_type"] or "",
                ";".join(f"{j['name']}, {j['state']}" for j in h["jurisdictions"]),
                h["source"],
                h["title"],
                h["url"],
                h["evidence"][0]["sentence"] if h["evidence"] else "",
            ]
        )
    yield buf.getvalue()


def _parse_time(name: str, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        d = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as e:
        raise HTTPException(
            400, f"{name}: expected an ISO date or time such as 2025-01-31 or 2025-01-31T12:00:00Z"
        ) from e
    return d.replace(tzinfo=UTC) if d.tzinfo is None else d


def create_app(
    storage: Storage,
    api_token: str = "",
    scheduler_alive: Callable[[], bool] = lambda: True,
    *,
    allow_private_addresses: bool = False,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> FastAPI:
    """Build the app around a storage. ``api_token`` guards /api/* when set."""
    app = FastAPI(
        title="detainer-watch",
        version=__version__,
        description="Detainer and sanctuary-policy news hits.",
    )

    require_token, require_write = token_checks(api_token)
    auth = [Depends(require_token)]

    @app.exception_handler(HTTPException)
    async def _json_error(_request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        db, sched = storage.ping(), scheduler_alive()
        ok = db and sched
        return JSONResponse(
            {"status": "ok" if ok else "unavailable", "database": db, "scheduler": sched},
            status_code=200 if ok else 503,
        )

    @app.get("/api/v1/hits", response_model=None, dependencies=auth)
    def list_hits(
        request: Request,
        topic: str | None = None,
        event: str | None = None,
        jurisdiction: str | None = None,
        state: str | None = None,
        feed: str | None = None,
        since: str | None = None,
        until: str | None = None,
        min_score: Annotated[float | None, Query(ge=0, le=1)] = None,
        q: str | None = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        cursor: int | None = None,
        format: str | None = None,
    ) -> Response | dict[str, Any]:
        query = HitQuery(
            topic=topic,
            event=event,
            jurisdiction=jurisdiction,
            state=state,
            feed=feed,
            since=_parse_time("since", since),
            until=_parse_time("until", until),
            min_score=min_score,
            q=q,
            limit=limit,
            cursor=cursor,
        )
        hits, next_cursor = storage.list_hits(query)
        items = [hit_payload(h) for h in hits]
        wants_csv = format == "csv" or (
            format is None and "text/csv" in request.headers.get("accept", "")
        )
        if wants_csv:
            return StreamingResponse(
                hits_csv(items),
                media_type="text/csv; charset=utf-8",
                headers={"x-next-cursor": str(next_cursor or "")},
            )
        if format == "jsonl":
            body = "".join(json.dumps(i, ensure_ascii=False) + "\n" for i in items)
            return Response(body, media_type="application/x-ndjson")
        if format not in (None, "json"):
            raise HTTPException(400, "format: use json, csv or jsonl")
        return {"items": items, "next_cursor": next_cursor}

    @app.get("/api/v1/hits/{hit_id}", dependencies=auth)
    def get_hit(
        hit_id: int,
    ) -> dict[str, Any]:
        hit = storage.get_hit(hit_id)
        if hit is None:
            raise HTTPException(404, f"no hit {hit_id}")
        return hit_payload(hit)

    add_dashboard_routes(app, storage, api_token)

    add_webhook_routes(app, storage, require_token, require_write, allow_private_addresses, clock)
    add_feed_routes(app, storage, require_token, require_write, allow_private_addresses, clock)
    return app
