"""Articles, stories and the one-transaction poll record (hit + outbox rows)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlmodel import Session, col, select

from service.alerts.routing import wants
from service.errors import StorageError
from service.storage.base import _subscription, new_webhook_id
from service.storage.feeds import FeedStore
from service.storage.tables import (
    ArticleRow,
    DeliveryRow,
    FeedRow,
    HitRow,
    StoryRow,
    SubscriptionRow,
)
from service.types import (
    Article,
    FeedUpdate,
    FetchStatus,
    MatchResult,
    NewArticle,
    Subscription,
)


class ArticleStore(FeedStore):
    # ------------------------------------------------------------ articles and stories

    def known_guids(self, feed_id: int, guids: Iterable[str]) -> set[str]:
        """Which of these entry ids this feed has already stored."""
        wanted = list(set(guids))
        found: set[str] = set()
        with self._session() as s:
            for i in range(0, len(wanted), 500):
                chunk = wanted[i : i + 500]
                found.update(
                    s.exec(
                        select(ArticleRow.guid)
                        .where(ArticleRow.feed_id == feed_id)
                        .where(col(ArticleRow.guid).in_(chunk))
                    ).all()
                )
        return found

    def known_story_keys(self, urls: Iterable[str], hashes: Iterable[str]) -> set[str]:
        """Which canonical URLs / content hashes already belong to a stored story."""
        urls_l = [u for u in set(urls) if u]
        hashes_l = list(set(hashes))
        found: set[str] = set()
        with self._session() as s:
            for i in range(0, len(urls_l), 500):
                chunk = urls_l[i : i + 500]
                story_urls = s.exec(
                    select(StoryRow.canonical_url).where(col(StoryRow.canonical_url).in_(chunk))
                ).all()
                found.update(u for u in story_urls if u)
                found.update(
                    s.exec(select(ArticleRow.url).where(col(ArticleRow.url).in_(chunk))).all()
                )
            for i in range(0, len(hashes_l), 500):
                found.update(
                    s.exec(
                        select(StoryRow.content_hash).where(
                            col(StoryRow.content_hash).in_(hashes_l[i : i + 500])
                        )
                    ).all()
                )
        found.discard("")
        return {k for k in found if k}

    @staticmethod
    def _story_for(s: Session, article: Article) -> StoryRow | None:
        if article.url:
            story = s.exec(select(StoryRow).where(StoryRow.canonical_url == article.url)).first()
            if story is not None:
                return story
            existing = s.exec(select(ArticleRow).where(ArticleRow.url == article.url)).first()
            if existing is not None:
                return s.get(StoryRow, existing.story_id)
        return s.exec(select(StoryRow).where(StoryRow.content_hash == article.content_hash)).first()

    def record_poll(
        self, update_: FeedUpdate, articles: Sequence[NewArticle], now: datetime
    ) -> list[int]:
        """Store one poll in one transaction: feed state, articles, stories, hits, deliveries.

        Returns the ids of hits created. An article whose guid the feed already has is
        skipped; one whose story is known becomes a sighting of that story (no new hit).
        """
        hit_ids: list[int] = []
        with self._session() as s:
            feed = s.get(FeedRow, update_.feed_id)
            if feed is None:
                raise StorageError(f"feed {update_.feed_id} vanished during its poll")
            subs = [
                _subscription(r)
                for r in s.exec(
                    select(SubscriptionRow).where(SubscriptionRow.enabled == True)  # noqa: E712
                ).all()
            ]
            for item in articles:
                a = item.article
                if (
                    s.exec(
                        select(ArticleRow.id)
                        .where(ArticleRow.feed_id == feed.id)
                        .where(ArticleRow.guid == a.guid)
                    ).first()
                    is not None
                ):
                    continue
                story = self._story_for(s, a)
                is_new_story = story is None
                if story is None:
                    story = StoryRow(
                        canonical_url=a.url or None, content_hash=a.content_hash, first_seen_at=now
                    )
                    s.add(story)
                    s.flush()
                assert story.id is not None and feed.id is not None
                row = ArticleRow(
                    feed_id=feed.id,
                    story_id=story.id,
                    guid=a.guid,
                    url=a.url,
                    title=a.title,
                    summary=a.summary,
                    text=a.text,
                    source=a.source,
                    author=a.author,
                    content_hash=a.content_hash,
                    published_at=a.published_at,
                    first_seen_at=now,
                )
                s.add(row)
                s.flush()
                if is_new_story and item.match is not None and item.match.flagged:
                    assert row.id is not None
                    hit_ids.append(self._add_hit(s, story.id, row.id, a, item.match, subs, now))
            self._apply_feed_update(feed, update_)
            s.add(feed)
        return hit_ids

    @staticmethod
    def _add_hit(
        s: Session,
        story_id: int,
        article_id: int,
        a: Article,
        m: MatchResult,
        subs: Sequence[Subscription],
        now: datetime,
    ) -> int:
        hit = HitRow(
            story_id=story_id,
            article_id=article_id,
            title=a.title,
            url=a.url,
            source=a.source,
            published_at=a.published_at,
            first_seen_at=now,
            score=m.score,
            topics=list(m.topics),
            event_type=m.event_type,
            jurisdictions=[j.as_dict() for j in m.jurisdictions],
            entities=[e.as_dict() for e in m.entities],
            evidence=[e.as_dict() for e in m.evidence],
            rules=list(m.rules),
            ruleset_version=m.ruleset_version,
        )
        s.add(hit)
        s.flush()
        assert hit.id is not None
        for sub in subs:
            if wants(sub, m.score, m.topics):
                s.add(
                    DeliveryRow(
                        hit_id=hit.id,
                        subscription_id=sub.id,
                        webhook_id=new_webhook_id(),
                        next_attempt_at=now,
                        created_at=now,
                    )
                )
        return hit.id

    @staticmethod
    def _apply_feed_update(feed: FeedRow, u: FeedUpdate) -> None:
        feed.last_checked_at = u.checked_at
        feed.last_status = u.status.value
        feed.last_http_status = u.http_status
        feed.error_count = u.error_count
        feed.next_check_at = u.next_check_at
        feed.last_new_items = u.new_items
        feed.last_error = u.error
        if u.status is not FetchStatus.ERROR:
            if u.etag is not None:
                feed.etag = u.etag
            if u.last_modified is not None:
                feed.last_modified = u.last_modified
            if u.body_hash is not None:
                feed.body_hash = u.body_hash

    def update_feed(self, update_: FeedUpdate) -> None:
        """Record a poll that stored no articles (not modified, or an error)."""
        self.record_poll(update_, (), update_.checked_at)
