"""Reading hits: one hit, filtered pages with a stable cursor, the API shape."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Text, cast, func, or_
from sqlmodel import Session, col, select

from service.storage.base import StoreBase, _utc
from service.storage.tables import (
    ArticleRow,
    FeedRow,
    HitRow,
)
from service.types import (
    HitQuery,
    HitRecord,
    Sighting,
)


class HitStore(StoreBase):
    # ------------------------------------------------------------ hits

    def _hit_record(self, s: Session, row: HitRow) -> HitRecord:
        return self._hit_records(s, [row])[0]

    @staticmethod
    def _hit_records(s: Session, rows: Sequence[HitRow]) -> list[HitRecord]:
        """Records for hit rows, their sightings read in one query for the lot."""
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

    def list_hits(self, q: HitQuery) -> tuple[list[HitRecord], int | None]:
        """Newest first. Returns the page and the cursor of the next page (None at the end).

        The cursor is the last id seen: ids only grow, so new hits never shift a page.
        """
        stmt = select(HitRow).order_by(col(HitRow.id).desc())
        if q.cursor is not None:
            stmt = stmt.where(col(HitRow.id) < q.cursor)
        if q.topic:
            stmt = stmt.where(cast(HitRow.topics, Text).like(f'%"{_like(q.topic)}"%'))
        if q.event:
            stmt = stmt.where(HitRow.event_type == q.event)
        if q.state:
            stmt = stmt.where(
                cast(HitRow.jurisdictions, Text).like(f'%"state": "{_like(q.state.upper())}"%')
            )
        if q.jurisdiction:
            stmt = stmt.where(
                func.lower(cast(HitRow.jurisdictions, Text)).like(
                    f'%"name": "{_like(q.jurisdiction.lower())}%'
                )
            )
        if q.min_score is not None:
            stmt = stmt.where(col(HitRow.score) >= q.min_score)
        when = func.coalesce(HitRow.published_at, HitRow.first_seen_at)
        if q.since is not None:
            stmt = stmt.where(when >= q.since)
        if q.until is not None:
            stmt = stmt.where(when < q.until)
        if q.q:
            pattern = f"%{_like(q.q.lower())}%"
            stmt = stmt.where(
                or_(
                    func.lower(HitRow.title).like(pattern),
                    col(HitRow.story_id).in_(
                        select(ArticleRow.story_id).where(
                            or_(
                                func.lower(ArticleRow.summary).like(pattern),
                                func.lower(ArticleRow.text).like(pattern),
                            )
                        )
                    ),
                )
            )
        if q.feed:
            feed_ids = select(FeedRow.id).where(
                FeedRow.url == q.feed if not q.feed.isdigit() else FeedRow.id == int(q.feed)
            )
            stmt = stmt.where(
                col(HitRow.story_id).in_(
                    select(ArticleRow.story_id).where(col(ArticleRow.feed_id).in_(feed_ids))
                )
            )
        with self._session() as s:
            rows = s.exec(stmt.limit(q.limit + 1)).all()
            page = self._hit_records(s, rows[: q.limit])
        next_cursor = page[-1].id if len(rows) > q.limit and page else None
        return page, next_cursor

    def count_hits(self) -> int:
        with self._session() as s:
            return int(s.exec(select(func.count()).select_from(HitRow)).one())


def _like(value: str) -> str:
    """Drop LIKE wildcards, backslashes and JSON quotes from a user value."""
    return value.replace("\\", "").replace("%", "").replace('"', "")


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
    }
