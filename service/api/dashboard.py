"""The dashboard: server-rendered pages over the same Storage the API reads.

Jinja2 templates with autoescaping (feed text is untrusted: a title with ``<script>`` shows
as text), a stacked-bar SVG drawn here (no JavaScript, no build step), and the evidence
sentence with its matched terms marked.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from service.api.feeds import feed_payload
from service.api.hits import RowId
from service.api.webhooks import delivery_payload
from service.errors import QueryError
from service.normalize import is_web_url
from service.search import state_code
from service.storage import Storage, hit_payload
from service.types import TOPICS, HitQuery

TEMPLATES = Path(__file__).parent / "templates"
# The pages run no script and load nothing from elsewhere: a link a feed wrote
# ("javascript:...", in articles stored before links were held to http(s)) cannot run one.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
TOPIC_COLOURS = {"detainer": "#c2410c", "sanctuary": "#0f766e", "287g": "#6d28d9"}
# The chart and the places box summarise this many recent hits: enough for months of news on
# this beat, bounded so a page never reads the whole table.
SUMMARY_HITS = 2000
CHART_WEEKS = 12
PAGE = 50


def evidence_segments(evidence: dict[str, Any]) -> list[tuple[str, bool]]:
    """An evidence sentence cut into (text, is_matched_term) pieces, terms in order."""
    sentence = str(evidence.get("sentence", ""))
    base = int(evidence.get("start", 0))
    spans = sorted(
        (int(t["start"]) - base, int(t["end"]) - base)
        for t in evidence.get("terms", [])
        if 0 <= int(t["start"]) - base < int(t["end"]) - base <= len(sentence)
    )
    out: list[tuple[str, bool]] = []
    pos = 0
    for start, end in spans:
        if start < pos:
            continue
        if start > pos:
            out.append((sentence[pos:start], False))
        out.append((sentence[start:end], True))
        pos = end
    if pos < len(sentence):
        out.append((sentence[pos:], False))
    return out


def week_start(d: date) -> date:
    return d - timedelta(days=d.weekday())


def weekly_counts(
    hits: Sequence[dict[str, Any]], today: date, weeks: int = CHART_WEEKS
) -> list[tuple[date, Counter[str]]]:
    """Hits per week (Monday first) and topic for the last ``weeks`` weeks, oldest first."""
    first = week_start(today) - timedelta(weeks=weeks - 1)
    buckets: dict[date, Counter[str]] = {
        first + timedelta(weeks=i): Counter() for i in range(weeks)
    }
    for h in hits:
        when = h.get("published_at") or h.get("first_seen_at")
        if not when:
            continue
        wk = week_start(date.fromisoformat(str(when)[:10]))
        if wk in buckets:
            for t in h.get("topics", []):
                buckets[wk][t] += 1
    return sorted(buckets.items())


def chart_end(hits: Sequence[dict[str, Any]]) -> date:
    """The chart ends at the newest hit's week: an archive without recent news still shows
    its last weeks of activity instead of an empty chart."""
    dates = [
        str(h.get("published_at") or h.get("first_seen_at"))[:10]
        for h in hits
        if h.get("published_at") or h.get("first_seen_at")
    ]
    return date.fromisoformat(max(dates)) if dates else datetime.now(UTC).date()


def chart_svg(weeks: list[tuple[date, Counter[str]]], width: int = 360, height: int = 150) -> str:
    """Stacked bars, one per week, one colour per topic; escaped labels."""
    top = max([sum(c.values()) for _, c in weeks] + [1])
    bar_w = (width - 30) / max(len(weeks), 1)
    parts = [
        f'<svg viewBox="0 0 {width} {height + 20}" width="100%" role="img" '
        f'aria-label="hits per week by topic">'
    ]
    for i, (wk, counts) in enumerate(weeks):
        x = 25 + i * bar_w
        y = float(height)
        for topic in TOPICS:
            n = counts.get(topic, 0)
            if not n:
                continue
            h = n / top * (height - 10)
            y -= h
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w * 0.8:.1f}" '
                f'height="{h:.1f}" fill="{TOPIC_COLOURS[topic]}">'
                f"<title>{escape(wk.isoformat())}: {n} {escape(topic)}</title></rect>"
            )
        if i % 3 == 0:
            parts.append(f'<text x="{x:.1f}" y="{height + 14}">{wk.strftime("%b %d")}</text>')
    parts.append(f'<text x="0" y="10">{top}</text><text x="0" y="{height}">0</text></svg>')
    return "".join(parts)


def place_table(hits: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each place with its hit count, latest event and latest hit (hits come newest first)."""
    places: dict[tuple[str, str, str], dict[str, Any]] = {}
    counts: Counter[tuple[str, str, str]] = Counter()
    for h in hits:
        for j in h.get("jurisdictions", []):
            key = (str(j.get("name")), str(j.get("kind")), str(j.get("state")))
            counts[key] += 1
            places.setdefault(
                key,
                {
                    "name": key[0],
                    "kind": key[1],
                    "state": key[2],
                    "latest_event": h.get("event_type"),
                    "latest_hit_id": h["id"],
                    "latest_title": h["title"],
                },
            )
    rows = [{**places[k], "count": n} for k, n in counts.items()]
    return sorted(rows, key=lambda r: (-r["count"], r["name"]))


def _date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    except ValueError:  # said on the page, as a search that does not parse is
        raise QueryError("since", f"expected a date such as 2025-01-31, not {value!r}") from None


def add_dashboard_routes(app: FastAPI, storage: Storage, api_token: str) -> None:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )

    # Links are drawn only to web pages (``macros.link``).
    env.tests["web_url"] = is_web_url

    def page(name: str, **context: Any) -> HTMLResponse:
        return HTMLResponse(
            env.get_template(name).render(**context),
            headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY},
        )

    def guard() -> HTMLResponse | None:
        if api_token:  # the pages show everything the API does, so they need the token too
            return HTMLResponse(
                "<!doctype html><meta charset=utf-8><title>detainer-watch</title><p>This "
                "service needs a token: use the API with <code>Authorization: Bearer</code>.",
                status_code=401,
            )
        return None

    def summary() -> list[dict[str, Any]]:
        hits, _ = storage.list_hits(HitQuery(limit=SUMMARY_HITS))
        return [hit_payload(h) for h in hits]

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index(
        request: Request,
        q: str | None = None,
        topic: str | None = None,
        event: str | None = None,
        state: str | None = None,
        since: str | None = None,
        cursor: str | None = None,
    ) -> HTMLResponse:
        if (denied := guard()) is not None:
            return denied
        f = {
            "q": q or None,
            "topic": topic or None,
            "event": event or None,
            "state": (state or "").strip().upper() or None,
            "since": since or None,
        }
        query_error: str | None = None
        try:
            hits, next_cursor = storage.list_hits(
                HitQuery(
                    q=f["q"],
                    topic=f["topic"],
                    event=f["event"],
                    state=state_code("state", f["state"]),
                    since=_date(f["since"]),
                    limit=PAGE,
                    cursor=cursor or None,
                )
            )
        except QueryError as e:  # a search that does not parse, a stale cursor: say so
            hits, next_cursor, query_error = [], None, str(e)
        rows = []
        for h in hits:
            doc = hit_payload(h)
            doc["segments"] = evidence_segments(doc["evidence"][0]) if doc["evidence"] else []
            rows.append(doc)
        recent = summary()
        events = sorted({str(h["event_type"]) for h in recent if h.get("event_type")})
        next_url = "/?" + urlencode(
            {**{k: v for k, v in f.items() if v}, "cursor": next_cursor or ""}
        )
        return page(
            "hits.html",
            nav="hits",
            hits=rows,
            f=f,
            topics=TOPICS,
            events=events,
            filtered=any(f.values()),
            next_cursor=next_cursor,
            next_url=next_url,
            query_error=query_error,
            chart=chart_svg(weekly_counts(recent, chart_end(recent))),
            places=place_table(recent),
        )

    @app.get("/hits/{hit_id}", response_class=HTMLResponse, include_in_schema=False)
    def hit_page(hit_id: RowId) -> HTMLResponse:
        if (denied := guard()) is not None:
            return denied
        hit = storage.get_hit(hit_id)
        if hit is None:
            raise HTTPException(404, f"no hit {hit_id}")
        doc = hit_payload(hit)
        evidence = [{**e, "segments": evidence_segments(e)} for e in doc["evidence"]]
        deliveries = [delivery_payload(d) for d in storage.list_deliveries(hit_id=hit_id)]
        return page("hit.html", nav="hits", hit=doc, evidence=evidence, deliveries=deliveries)

    @app.get("/feeds", response_class=HTMLResponse, include_in_schema=False)
    def feeds_page() -> HTMLResponse:
        if (denied := guard()) is not None:
            return denied
        return page(
            "feeds.html", nav="feeds", feeds=[feed_payload(f) for f in storage.list_feeds()]
        )

    @app.get("/jurisdictions", response_class=HTMLResponse, include_in_schema=False)
    def places_page() -> HTMLResponse:
        if (denied := guard()) is not None:
            return denied
        return page("jurisdictions.html", nav="places", places=place_table(summary()))
