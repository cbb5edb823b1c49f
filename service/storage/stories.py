"""Story lookup for the poll transaction: candidates by URL, content hash and LSH band key.

Storage only looks candidates up and writes band keys; which story an article joins is
decided by the pure ``service.stories.assign_stories``. ``lock_stories`` serialises story
assignment between workers on PostgreSQL, so two workers storing copies of one story at
the same moment cannot both start it (SQLite has one writer at a time anyway).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import insert, text
from sqlmodel import Session, col, select

from service.storage.base import _utc
from service.storage.tables import ArticleRow, HitRow, StoryKeyRow
from service.stories import StoryPolicy, candidate_window, seen_at
from service.types import Article, Fingerprint, StoryCandidate

# Rows per IN (...) list: far below SQLite's 32,766 bound parameters and PostgreSQL's 65,535.
IN_CHUNK = 500
# Articles sharing a band key that one lookup returns at most. Band keys of copies are
# shared by a handful of articles; a key shared by hundreds is a stock phrase, and the
# exact comparison of each candidate costs a fingerprint (~0.15 ms), so this bounds a poll.
MAX_BAND_CANDIDATES = 500
# Key of the PostgreSQL transaction-level advisory lock taken around story assignment
# (any constant unique within the database; "dw-story" in ASCII).
STORY_LOCK_KEY = 0x64772D73746F7279


def _chunks(values: Iterable[Any]) -> Iterable[list[Any]]:
    items = list(values)
    for i in range(0, len(items), IN_CHUNK):
        yield items[i : i + IN_CHUNK]


def _ids(values: Iterable[int | None]) -> set[int]:
    return {v for v in values if v is not None}


def lock_stories(s: Session) -> None:
    """Hold the story-assignment lock until this transaction ends (PostgreSQL only)."""
    bind = s.get_bind()
    if bind.dialect.name == "postgresql":
        s.connection().execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": STORY_LOCK_KEY})


def story_candidates(
    s: Session,
    articles: Sequence[Article],
    fingerprints: Sequence[Fingerprint],
    policy: StoryPolicy,
    now: datetime,
) -> list[StoryCandidate]:
    """Stored sightings the articles might join: same canonical URL or content hash (any
    time), or a shared band key within the window around the articles' times."""
    if not articles:
        return []
    ids: set[int] = set()
    for chunk in _chunks({a.url for a in articles if a.url}):
        ids.update(_ids(s.exec(select(col(ArticleRow.id)).where(col(ArticleRow.url).in_(chunk)))))
    for chunk in _chunks({a.content_hash for a in articles}):
        ids.update(
            _ids(s.exec(select(col(ArticleRow.id)).where(col(ArticleRow.content_hash).in_(chunk))))
        )
    keys = {k for fp in fingerprints for k in fp.band_keys}
    if keys:
        since, until = candidate_window((seen_at(a, now) for a in articles), policy)
        found: set[int] = set()
        for chunk in _chunks(keys):
            found.update(
                s.exec(
                    select(StoryKeyRow.article_id)
                    .where(col(StoryKeyRow.band_key).in_(chunk))
                    .where(col(StoryKeyRow.seen_at) >= since)
                    .where(col(StoryKeyRow.seen_at) <= until)
                    .distinct()
                    .limit(MAX_BAND_CANDIDATES - len(found))
                ).all()
            )
            if len(found) >= MAX_BAND_CANDIDATES:
                break
        ids |= found
    rows: list[ArticleRow] = []
    for chunk in _chunks(sorted(ids)):
        rows.extend(s.exec(select(ArticleRow).where(col(ArticleRow.id).in_(chunk))).all())
    with_hit: set[int] = set()
    for chunk in _chunks({r.story_id for r in rows}):
        with_hit.update(s.exec(select(HitRow.story_id).where(col(HitRow.story_id).in_(chunk))))
    return [
        StoryCandidate(
            story_id=r.story_id,
            url=r.url,
            content_hash=r.content_hash,
            title=r.title,
            summary=r.summary,
            text=r.text,
            seen_at=_utc(r.published_at) or _utc(r.first_seen_at) or now,
            has_hit=r.story_id in with_hit,
        )
        for r in sorted(rows, key=lambda r: r.id or 0)
    ]


def known_guids(s: Session, feed_id: int, guids: Iterable[str]) -> set[str]:
    """Which of these entry ids the feed has already stored (one query per IN_CHUNK)."""
    found: set[str] = set()
    for chunk in _chunks(set(guids)):
        found.update(
            s.exec(
                select(ArticleRow.guid)
                .where(ArticleRow.feed_id == feed_id)
                .where(col(ArticleRow.guid).in_(chunk))
            ).all()
        )
    return found


def insert_returning_ids(s: Session, model: Any, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Insert rows of an integer-keyed table in one statement per IN_CHUNK rows and return
    their new ids in the order given (multi-row INSERT ... RETURNING, on SQLite >= 3.35
    and PostgreSQL), without building an ORM object per row."""
    table = model.__table__
    ids: list[int] = []
    for chunk in _chunks(rows):
        statement = insert(table).returning(table.c.id, sort_by_parameter_order=True)
        ids.extend(s.connection().execute(statement, chunk).scalars().all())
    return ids


def add_story_keys(s: Session, articles: Iterable[tuple[int, int, Fingerprint, datetime]]) -> None:
    """Index stored articles' band keys for later near-duplicate lookups; ``articles`` are
    (article id, story id, fingerprint, seen at). One multi-row INSERT for all of them."""
    rows = [
        {"article_id": article_id, "band_key": key, "story_id": story_id, "seen_at": at}
        for article_id, story_id, fp, at in articles
        for key in fp.band_keys
    ]
    if rows:
        s.connection().execute(insert(StoryKeyRow.__table__), rows)  # type: ignore[attr-defined]
