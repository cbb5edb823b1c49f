"""Reading hits: one hit, filtered pages with a stable cursor, exports, counts, the API shape."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row, func
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from service.search import Cursor, decode_cursor, encode_cursor, marked_snippet
from service.storage.base import StoreBase, _utc
from service.storage.hitfilters import (
    FEW_MATCHES,
    hit_time,
    match_count_statement,
    matched_ids,
    page_statement,
    snippets,
)
from service.storage.tables import (
    ArticleRow,
    DeliveryRow,
    FeedRow,
    HitPlaceRow,
    HitRow,
    HitTopicRow,
)
from service.types import (
    HitQuery,
    HitRecord,
    HitStats,
    PlaceSummary,
    Sighting,
)

# Rows per keyset page while streaming an export: big enough to amortise the per-page
# sightings query, small enough that a page of records is a few MB at most.
EXPORT_PAGE = 500
# Places listed by /stats and /jurisdictions; the long tail beyond is one-hit towns.
STATS_MAX_PLACES = 500


class HitStore(StoreBase):
    # Below this many matches a PostgreSQL search is paged from its matches (tests lower it).
    few_matches = FEW_MATCHES

    # ------------------------------------------------------------ hits

    def _hit_record(self, s: Session, row: HitRow) -> HitRecord:
        return self._hit_records(s, [row])[0]

    @staticmethod
    def _hit_records(s: Session, rows: Sequence[HitRow | Row[Any]]) -> list[HitRecord]:
        """Records for hit rows (ORM objects or plain rows of the hits columns), their
        sightings read in one query for the lot."""
        sightings: dict[int, list[Sighting]] = defaultdict(list)
        story_ids = list({r.story_id for r in rows})
        for i in range(0, len(story_ids), 500):
            for story_id, url, source, published_at in s.exec(
                select(
                    ArticleRow.story_id, ArticleRow.url, ArticleRow.source, ArticleRow.published_at
                )
                .where(col(ArticleRow.story_id).in_(story_ids[i : i + 500]))
                .order_by(col(ArticleRow.id))
            ).all():
                sightings[story_id].append(
                    Sighting(url=url, source=source, published_at=_utc(published_at))
                )
        out = []
        for row in rows:
            assert row.id is not None
            out.append(
                HitRecord(
                    id=row.id,
                    title=row.title,
                    url=row.url,
                    source=row.source,
                    published_at=_utc(row.published_at),
                    first_seen_at=_utc(row.first_seen_at),
                    score=row.score,
                    topics=tuple(row.topics),
                    event_type=row.event_type,
                    jurisdictions=tuple(row.jurisdictions),
                    entities=tuple(row.entities),
                    evidence=tuple(row.evidence),
                    rules=tuple(row.rules),
                    ruleset_version=row.ruleset_version,
                    articles=tuple(sightings[row.story_id]),
                )
            )
        return out

    def get_hit(self, hit_id: int) -> HitRecord | None:
        with self._session() as s:
            row = s.get(HitRow, hit_id)
            return None if row is None else self._hit_record(s, row)

    def list_hits(self, q: HitQuery) -> tuple[list[HitRecord], str | None]:
        """One page in ``q.sort`` order, and the cursor of the next page (None at the end).

        Keyset pagination: the cursor holds the last row's ``id`` (newest) or ``(score, id)``
        (score), so hits arriving between pages never shift, skip or repeat a row. With a
        search the records carry snippets. QueryError for a bad search or cursor.
        """
        after = decode_cursor(q.cursor, q.sort) if q.cursor is not None else None
        dialect = self.engine.dialect.name
        with self._session() as s:
            stmt = page_statement(q, dialect, after, q.limit + 1, self._few_matches(s, q, after))
            # Plain rows, not ORM objects: nothing is written back, and building 50 SQLModel
            # instances cost a fifth of a page's time (bench_query.py).
            rows = s.connection().execute(stmt).all()
            page = self._with_snippets(s, q, self._hit_records(s, rows[: q.limit]))
        if len(rows) <= q.limit or not page:
            return page, None
        last = page[-1]
        return page, encode_cursor(
            Cursor(q.sort, last.id, last.score if q.sort == "score" else None)
        )

    def iter_hits(self, q: HitQuery, total: int | None = None) -> Iterator[HitRecord]:
        """Every hit the query matches (at most ``total``), in its sort, for exports.

        Reads keyset pages of ``EXPORT_PAGE`` rows, each in its own short transaction, and
        yields as it goes: memory stays flat however many rows match, and a long download
        holds no transaction open. Starts after ``q.cursor`` when given; ``q.limit`` is
        ignored.
        """
        after = decode_cursor(q.cursor, q.sort) if q.cursor is not None else None
        left = total
        dialect = self.engine.dialect.name
        while left is None or left > 0:
            size = EXPORT_PAGE if left is None else min(EXPORT_PAGE, left)
            with self._session() as s:
                stmt = page_statement(q, dialect, after, size, self._few_matches(s, q, after))
                rows = s.connection().execute(stmt).all()
                page = self._with_snippets(s, q, self._hit_records(s, rows))
            yield from page
            if len(rows) < size:
                return
            if left is not None:
                left -= len(rows)
            last = page[-1]
            after = Cursor(q.sort, last.id, last.score)

    def _few_matches(self, s: Session, q: HitQuery, after: Cursor | None) -> bool:
        """True for a PostgreSQL search with fewer than ``few_matches`` hits after the
        cursor: its page is then sorted from the matches (``page_statement``)."""
        dialect = self.engine.dialect.name
        if dialect != "postgresql" or not q.q:
            return False
        stmt = match_count_statement(q, dialect, after, self.few_matches)
        return int(s.connection().execute(stmt).scalar_one()) < self.few_matches

    def _with_snippets(self, s: Session, q: HitQuery, page: list[HitRecord]) -> list[HitRecord]:
        if not q.q or not page:
            return page
        raw = snippets(s, q.q, self.engine.dialect.name, [h.id for h in page])
        return [replace(h, snippet=marked_snippet(raw[h.id])) if h.id in raw else h for h in page]

    def hit_stats(self, q: HitQuery) -> HitStats:
        """Counts of the hits matching ``q`` by day, topic, event, state and place."""
        dialect = self.engine.dialect.name
        ids = matched_ids(q, dialect).scalar_subquery()
        when = hit_time()
        if dialect == "sqlite":
            day: Any = func.strftime("%Y-%m-%d", when)
        else:
            day = func.to_char(func.timezone("UTC", when), "YYYY-MM-DD")
        n = func.count()
        with self._session() as s:
            total = int(s.exec(select(func.count()).where(col(HitRow.id).in_(ids))).one())
            by_day = s.exec(
                select(day, n).where(col(HitRow.id).in_(ids)).group_by(day).order_by(day)
            ).all()
            by_event = s.exec(
                select(HitRow.event_type, n)
                .where(col(HitRow.id).in_(ids))
                .group_by(HitRow.event_type)
                .order_by(n.desc(), col(HitRow.event_type))
            ).all()
            by_topic = s.exec(
                select(HitTopicRow.topic, n)
                .where(col(HitTopicRow.hit_id).in_(ids))
                .group_by(HitTopicRow.topic)
                .order_by(n.desc(), HitTopicRow.topic)
            ).all()
            distinct_hits = func.count(func.distinct(HitPlaceRow.hit_id))
            by_state = s.exec(
                select(HitPlaceRow.state, distinct_hits)
                .where(col(HitPlaceRow.hit_id).in_(ids))
                .group_by(HitPlaceRow.state)
                .order_by(distinct_hits.desc(), HitPlaceRow.state)
            ).all()
            by_place = s.exec(
                select(HitPlaceRow.name, HitPlaceRow.kind, HitPlaceRow.state, n)
                .where(col(HitPlaceRow.hit_id).in_(ids))
                .group_by(HitPlaceRow.name, HitPlaceRow.kind, HitPlaceRow.state)
                .order_by(n.desc(), HitPlaceRow.name)
                .limit(STATS_MAX_PLACES)
            ).all()
        return HitStats(
            total=total,
            by_day=tuple((str(d), int(c)) for d, c in by_day if d is not None),
            by_topic=tuple((t, int(c)) for t, c in by_topic),
            by_event=tuple((e, int(c)) for e, c in by_event),
            by_state=tuple((st, int(c)) for st, c in by_state if st),
            by_jurisdiction=tuple((nm, k, st, int(c)) for nm, k, st, c in by_place),
        )

    def jurisdictions(self, q: HitQuery) -> list[PlaceSummary]:
        """Each place among the hits matching ``q``: its count and newest hit, most hits first."""
        ids = matched_ids(q, self.engine.dialect.name).scalar_subquery()
        n = func.count().label("n")
        latest = func.max(HitPlaceRow.hit_id).label("latest")
        places = (
            sa_select(
                col(HitPlaceRow.name), col(HitPlaceRow.kind), col(HitPlaceRow.state), n, latest
            )
            .where(col(HitPlaceRow.hit_id).in_(ids))
            .group_by(HitPlaceRow.name, HitPlaceRow.kind, HitPlaceRow.state)
            .subquery()
        )
        stmt = (
            sa_select(
                places.c.name,
                places.c.kind,
                places.c.state,
                places.c.n,
                col(HitRow.id),
                col(HitRow.title),
                col(HitRow.event_type),
                col(HitRow.first_seen_at),
            )
            .join(HitRow, col(HitRow.id) == places.c.latest)
            .order_by(places.c.n.desc(), places.c.name, places.c.state)
            .limit(STATS_MAX_PLACES)
        )
        with self._session() as s:
            rows = s.connection().execute(stmt).all()
        return [
            PlaceSummary(
                name=name,
                kind=kind,
                state=state,
                hits=int(count),
                latest_hit_id=int(hit_id),
                latest_title=title,
                latest_event=event,
                latest_seen_at=_utc(seen),
            )
            for name, kind, state, count, hit_id, title, event, seen in rows
        ]

    def metric_counts(self) -> dict[str, dict[str, int]]:
        """Row counts for /metrics at scrape time: hits, articles, feeds by health, deliveries
        by status (a handful of COUNTs on indexed tables)."""
        with self._session() as s:
            hits = int(s.exec(select(func.count()).select_from(HitRow)).one())
            articles = int(s.exec(select(func.count()).select_from(ArticleRow)).one())
            feeds = s.exec(
                select(FeedRow.enabled, FeedRow.last_status, func.count()).group_by(
                    col(FeedRow.enabled), col(FeedRow.last_status)
                )
            ).all()
            deliveries = s.exec(
                select(DeliveryRow.status, func.count()).group_by(DeliveryRow.status)
            ).all()
        feed_counts: dict[str, int] = defaultdict(int)
        for enabled, status, count in feeds:
            feed_counts["disabled" if not enabled else (status or "never_checked")] += int(count)
        return {
            "hits": {"": hits},
            "articles": {"": articles},
            "feeds": dict(feed_counts),
            "deliveries": {str(status): int(count) for status, count in deliveries},
        }

    def count_hits(self) -> int:
        with self._session() as s:
            return int(s.exec(select(func.count()).select_from(HitRow)).one())


def hit_payload(hit: HitRecord) -> dict[str, Any]:
    """The hit object of DESIGN.md §7, as the API and webhooks send it."""

    def iso(d: datetime | None) -> str | None:
        return None if d is None else d.astimezone(UTC).isoformat().replace("+00:00", "Z")

    return {
        "id": hit.id,
        "title": hit.title,
        "url": hit.url,
        "source": hit.source,
        "published_at": iso(hit.published_at),
        "first_seen_at": iso(hit.first_seen_at),
        "score": round(hit.score, 4),
        "topics": list(hit.topics),
        "event_type": hit.event_type,
        "jurisdictions": list(hit.jurisdictions),
        "entities": list(hit.entities),
        "evidence": list(hit.evidence),
        "rules": list(hit.rules),
        "ruleset_version": hit.ruleset_version,
        "articles": [
            {"url": a.url, "source": a.source, "published_at": iso(a.published_at)}
            for a in hit.articles
        ],
    } | ({} if hit.snippet is None else {"snippet": hit.snippet})
