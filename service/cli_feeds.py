"""The ``detainer-watch feeds`` subcommands: list, add (with feed discovery), remove,
import (OPML) and export (OPML).

The edge for ``opml`` and ``discover`` (both pure): it reads files, fetches the page a
user gives to ``feeds add`` and writes to storage. Called from ``cli.cmd_feeds``; it
builds nothing itself beyond one short-lived HTTP client for discovery.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from service.config import Config, is_private_url
from service.errors import ParseError
from service.normalize import feed_url_too_long, http_host
from service.types import FeedRecord

# Discovery reads one page: a homepage is rarely over a few hundred KB, and the fetch is
# interactive, so both the size and the wait are kept small.
DISCOVERY_MAX_BYTES = 2_000_000
DISCOVERY_TIMEOUT_S = 15.0

Table = Callable[[TextIO, Sequence[str], Sequence[Sequence[str]]], None]


def _state(f: FeedRecord) -> str:
    if not f.enabled:
        return "disabled"
    return f.last_status or "new"


def _note(f: FeedRecord) -> str:
    """What a user needs to know first: why it is disabled, else its last error."""
    return (f.disabled_reason if not f.enabled else f.last_error) or ""


def list_feeds(storage: Any, fmt: str, table: Table) -> int:
    from service.api.feeds import feed_payload

    feeds: list[FeedRecord] = storage.list_feeds()
    if fmt == "json":
        for f in feeds:
            print(json.dumps(feed_payload(f)))
        return 0
    table(
        sys.stdout,
        ["id", "status", "errors", "next check", "url", "note"],
        [
            [
                str(f.id),
                _state(f),
                str(f.error_count),
                f.next_check_at.isoformat(timespec="minutes") if f.next_check_at else "-",
                f.url,
                _note(f)[:100],
            ]
            for f in feeds
        ],
    )
    return 0


def _refusal(url: str, allow_private: bool) -> str | None:
    problem = feed_url_too_long(url)
    if problem is not None:
        return problem
    if http_host(url) is None:
        return f"{url!r} is not an http(s) URL; give the feed's or the site's full URL"
    if not allow_private and is_private_url(url):
        return (
            f"{url} is a loopback/private address; set [network] allow_private_addresses "
            "= true to allow it"
        )
    return None


def discover_feed(url: str, user_agent: str) -> tuple[str, str | None]:
    """(feed URL, note): ``url`` itself when it serves a feed or cannot be fetched, else
    the first feed its HTML announces. Raises ``ParseError`` for a page without one."""
    from service.discover import feed_links, is_html
    from service.fetch import Fetcher, build_client
    from service.types import FeedForUpdate, FetchStatus

    client = build_client(user_agent, DISCOVERY_TIMEOUT_S, DISCOVERY_TIMEOUT_S, 1)
    try:
        result = Fetcher(client, DISCOVERY_MAX_BYTES, DISCOVERY_TIMEOUT_S).fetch(
            FeedForUpdate(0, url)
        )
    finally:
        client.close()
    if result.status is not FetchStatus.OK or result.body is None:
        return url, f"could not fetch it to check ({result.error}); added as given"
    page = result.final_url or url
    if not is_html(result.body, result.headers):
        return url, None
    links = feed_links(result.body, page)
    if not links:
        raise ParseError(
            f"{page} is an HTML page that announces no feed "
            '(no <link rel="alternate" type="application/rss+xml" ...>); give the feed URL'
        )
    extra = f" (it lists {len(links)}; the others: {', '.join(links[1:])})" if links[1:] else ""
    return links[0], f"discovered the feed {links[0]} on {page}{extra}"


def add_feed(
    cfg: Config, storage: Any, args: argparse.Namespace, now: datetime, user_agent: str
) -> int:
    from service.decide import parse_duration

    try:  # before any request: a typo here should not cost a fetch of the page first
        interval = parse_duration(args.interval) if args.interval else None
    except ValueError as e:
        print(f"error: --interval: {e}", file=sys.stderr)
        return 1
    allow_private = bool(cfg["network.allow_private_addresses"])
    url = args.url
    refusal = _refusal(url, allow_private)
    if refusal is None and not args.no_discover:
        try:
            url, note = discover_feed(url, user_agent)
        except ParseError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        if note:
            print(f"note: {note}", file=sys.stderr)
        refusal = _refusal(url, allow_private)
    if refusal is not None:
        print(f"error: {refusal}", file=sys.stderr)
        return 1
    feed, created = storage.add_feed(url, now, args.name, interval)
    print(("added" if created else "already present") + f": feed {feed.id} {feed.url}")
    return 0


def import_opml(cfg: Config, storage: Any, path: str, now: datetime) -> int:
    from service.opml import read_opml

    try:
        entries = read_opml(Path(path).read_bytes())
    except OSError as e:
        print(f"error: cannot read {path}: {e.strerror}", file=sys.stderr)
        return 1
    except ParseError as e:
        print(f"error: {path}: {e}", file=sys.stderr)
        return 1
    allow_private = bool(cfg["network.allow_private_addresses"])
    added = present = refused = 0
    for entry in entries:
        refusal = _refusal(entry.url, allow_private)
        if refusal is not None:
            print(f"skipped: {refusal}", file=sys.stderr)
            refused += 1
            continue
        _, created = storage.add_feed(entry.url, now, entry.name)
        added += created
        present += not created
    print(f"imported {path}: {added} added, {present} already present, {refused} refused")
    return 0


def export_opml(storage: Any, now: datetime, out: TextIO) -> int:
    from service.opml import OpmlFeed, write_opml

    feeds = [OpmlFeed(url=f.url, name=f.name) for f in storage.list_feeds() if f.enabled]
    out.write(write_opml(feeds, "detainer-watch feeds", now))
    return 0
