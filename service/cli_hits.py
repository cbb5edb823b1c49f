"""``detainer-watch hits`` and ``detainer-watch stats``: the API's hit queries in a terminal.

Same filters and search syntax as ``GET /api/v1/hits`` (``service.search``); csv and jsonl
stream every matching hit (or ``--limit`` of them) page by page, like the API's exports.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from service.api.hits import hits_csv, hits_jsonl, stats_payload
from service.errors import QueryError
from service.search import state_code
from service.storage import Storage, hit_payload
from service.types import HitQuery

DEFAULT_ROWS = 50  # rows of table/json output without --limit


def add_hit_filters(p: argparse.ArgumentParser) -> None:
    """The filter options of ``hits`` and ``stats`` (the API's query parameters)."""
    p.add_argument("--topic", help="detainer, sanctuary or 287g")
    p.add_argument("--event", help="event type, e.g. detainer_declined")
    p.add_argument("--jurisdiction", help='place name, or "Name, ST"')
    p.add_argument("--state", help="two-letter code, e.g. MA")
    p.add_argument("--feed", help="feed id or URL")
    p.add_argument("--source", help="outlet name, e.g. 'Boston Globe'")
    p.add_argument("--q", help='full-text search: words, "phrases", OR, NOT, prefix*')
    p.add_argument("--since", metavar="DATE", help="ISO date/time, UTC")
    p.add_argument("--until", metavar="DATE", help="ISO date/time, UTC (exclusive)")
    p.add_argument("--min-score", type=float)


def parse_when(name: str, value: str | None) -> datetime | None:
    """The UTC moment of a command's date option ``name`` (ISO; no zone means UTC), or a
    ``QueryError`` that names the option and shows the form."""
    if value is None:
        return None
    try:
        d = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as e:
        raise QueryError(name, "expected an ISO date or time such as 2025-01-31") from e
    return d.replace(tzinfo=UTC) if d.tzinfo is None else d.astimezone(UTC)


# The API's bounds on the same filters (``service.api.hits``) hold here too: a value outside
# them is a mistake to report, not a filter that quietly matches nothing ("--state
# Massachusetts" through ``search.state_code``, "--min-score 50") or everything.
def min_score_filter(value: float | None) -> float | None:
    """``--min-score`` as given, or a ``QueryError``: scores run from 0 to 1."""
    if value is None or 0 <= value <= 1:
        return value
    raise QueryError("--min-score", f"expected a score from 0 to 1, not {value:g}")


def row_limit(value: int | None) -> int | None:
    """``--limit`` as given, or a ``QueryError``: at least one row (leave it out for the
    default)."""
    if value is None or value >= 1:
        return value
    raise QueryError(
        "--limit", f"expected 1 or more rows, not {value}; leave it out for the default"
    )


def query_from_args(args: argparse.Namespace) -> HitQuery:
    return HitQuery(
        topic=args.topic,
        event=args.event,
        jurisdiction=args.jurisdiction,
        state=state_code("--state", args.state),
        feed=args.feed,
        source=args.source,
        since=parse_when("--since", args.since),
        until=parse_when("--until", args.until),
        min_score=min_score_filter(args.min_score),
        q=args.q,
        sort=getattr(args, "sort", "newest"),
    )


def print_hits(storage: Storage, args: argparse.Namespace, out: TextIO) -> int:
    query = query_from_args(args)
    row_limit(args.limit)
    if args.format in ("csv", "jsonl"):
        rows = storage.iter_hits(query, total=args.limit)
        for chunk in hits_csv(rows) if args.format == "csv" else hits_jsonl(rows):
            out.write(chunk)
        return 0
    limit = args.limit or DEFAULT_ROWS
    items = [hit_payload(h) for h in storage.iter_hits(query, total=limit)]
    if args.format == "json":  # one object a line, as before jsonl had its own name
        for item in items:
            out.write(json.dumps(item, ensure_ascii=False) + "\n")
        return 0
    table(
        out,
        ["id", "seen", "score", "topics", "event", "place", "title"],
        [
            [
                str(h["id"]),
                (h["first_seen_at"] or "")[:16],
                f"{h['score']:.2f}",
                ",".join(h["topics"]),
                h["event_type"] or "",
                "; ".join(f"{j['name']}, {j['state']}" for j in h["jurisdictions"][:2]),
                h["title"][:70],
            ]
            for h in items
        ],
    )
    return 0


def print_stats(storage: Storage, args: argparse.Namespace, out: TextIO) -> int:
    stats = stats_payload(storage.hit_stats(query_from_args(args)))
    if args.format == "json":
        out.write(json.dumps(stats, ensure_ascii=False, indent=2) + "\n")
        return 0
    out.write(f"{stats['total']} hits\n")
    sections: list[tuple[str, str, list[dict[str, Any]]]] = [
        ("week", "week", stats["by_week"]),
        ("topic", "topic", stats["by_topic"]),
        ("event", "event", stats["by_event"]),
        ("state", "state", stats["by_state"]),
    ]
    for title, key, rows in sections:
        out.write("\n")
        table(out, [title, "hits"], [[str(r[key] or "-"), str(r["count"])] for r in rows])
    out.write("\n")
    table(
        out,
        ["jurisdiction", "hits"],
        [[f"{r['name']}, {r['state']}", str(r["count"])] for r in stats["by_jurisdiction"][:20]],
    )
    return 0


def table(out: TextIO, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max([len(header[i])] + [len(r[i]) for r in rows]) for i in range(len(header))]
    for row in [list(header), *rows]:
        out.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        out.write("\n")
