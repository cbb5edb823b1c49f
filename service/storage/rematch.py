"""Reading stored stories back for ``detainer-watch rematch``, and adding the hits it finds."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from service.storage.articles import ArticleStore
from service.storage.base import _utc, enabled_subscriptions
from service.storage.tables import ArticleRow, FeedRow, HitRow, StoryRow
from service.types import Article, MatchResult

# Stories read per query while rematching: bounds memory on a large database.
REMATCH_BATCH = 500


@dataclass(frozen=True, slots=True)
class StoredStory:
    """A story with its sightings (oldest first) and, when it has one, its hit."""

    story_id: int
    hit_id: int | None
    hit_score: float | None
    hit_topics: tuple[str, ...]
    hit_event: str | None
    articles: tuple[tuple[int, Article, str], ...]  # (article id, article, feed URL)


class RematchStore(ArticleStore):
    def stored_stories(self, since: datetime | None = None) -> Iterator[StoredStory]:
        """Every story first seen at or after ``since``, in batches, oldest first."""
        last_id = 0
        while True:
            with self._session() as s:
                stmt = select(StoryRow).where(col(StoryRow.id) > last_id)
                if since is not None:
                    stmt = stmt.where(col(StoryRow.first_seen_at) >= since)
                stories = s.exec(stmt.order_by(col(StoryRow.id)).limit(REMATCH_BATCH)).all()
                if not stories:
                    return
                ids = [st.id for st in stories]
                last_id = int(ids[-1] or 0)
                rows = s.exec(
                    select(ArticleRow, FeedRow.url)
                    .join(FeedRow, col(FeedRow.id) == ArticleRow.feed_id)
                    .where(col(ArticleRow.story_id).in_(ids))
                    .order_by(col(ArticleRow.id))
                ).all()
                hits = {
                    h.story_id: h
                    for h in s.exec(select(HitRow).where(col(HitRow.story_id).in_(ids))).all()
                }
            by_story: dict[int, list[tuple[int, Article, str]]] = defaultdict(list)
            for row, feed_url in rows:
                assert row.id is not None
                by_story[row.story_id].append(
                    (
                        row.id,
                        Article(
                            url=row.url,
                            guid=row.guid,
                            title=row.title,
                            summary=row.summary,
                            text=row.text,
                            published_at=_utc(row.published_at),
                            source=row.source,
                            content_hash=row.content_hash,
                            author=row.author,
                        ),
                        feed_url,
                    )
                )
            for sid in ids:
                assert sid is not None
                hit = hits.get(sid)
                yield StoredStory(
                    story_id=sid,
                    hit_id=hit.id if hit else None,
                    hit_score=hit.score if hit else None,
                    hit_topics=tuple(hit.topics) if hit else (),
                    hit_event=hit.event_type if hit else None,
                    articles=tuple(by_story.get(sid, ())),
                )

    def add_hit_for_story(
        self,
        story_id: int,
        article_id: int,
        article: Article,
        match: MatchResult,
        now: datetime,
        feed_url: str,
        deliver: bool,
    ) -> int | None:
        """Create a story's hit found by a rematch; None when the story already has one.

        With ``deliver`` false no subscription hears of it (old news under new rules).
        """
        try:
            with self._session() as s:
                if s.exec(select(HitRow.id).where(HitRow.story_id == story_id)).first():
                    return None
                subs = enabled_subscriptions(s) if deliver else []
                return self._add_hit(s, story_id, article_id, article, match, subs, now, feed_url)
        except IntegrityError:  # a poll gave the story its hit meanwhile
            return None
