"""Articles, stories and the one-transaction poll record (hit + outbox rows)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlmodel import Session, col, select

from service.alerts.routing import wants
from service.errors import StorageError
from service.storage.base import _subscription, new_webhook_id
from service.storage.feeds import FeedStore
from service.storage.stories import add_story_keys, lock_stories, story_candidates
from service.storage.tables import (
    ArticleRow,
    DeliveryRow,
    FeedRow,
    HitRow,
    StoryRow,
    SubscriptionRow,
)
from service.stories import StoryPolicy, article_fingerprint, assign_stories, seen_at
from service.types import (
    Article,
    FeedUpdate,
    Fingerprint,
    MatchResult,
    NewArticle,
    StoryCandidate,
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

    def story_candidates(
        self,
        articles: Sequence[Article],
        fingerprints: Sequence[Fingerprint],
        policy: StoryPolicy,
        now: datetime,
    ) -> list[StoryCandidate]:
        """Stored sightings these articles might join (``storage.stories.story_candidates``)."""
        with self._session() as s:
            return story_candidates(s, articles, fingerprints, policy, now)

    def record_poll(
        self,
        update_: FeedUpdate,
        articles: Sequence[NewArticle],
        now: datetime,
        policy: StoryPolicy | None = None,
    ) -> list[int]:
        """Store one poll in one transaction: feed state, articles, stories, hits, deliveries.

        Returns the ids of hits created. An article whose guid the feed already has is
        skipped. Each other one joins the story ``stories.assign_stories`` picks among the
        candidates looked up here, under the story lock (the pipeline's earlier look-up
        only spared the matcher): a story gets a hit from its first flagged sighting only,
        later sightings are added to it without a new hit or delivery.
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
            fresh = [
                item
                for item in articles
                if s.exec(
                    select(ArticleRow.id)
                    .where(ArticleRow.feed_id == feed.id)
                    .where(ArticleRow.guid == item.article.guid)
                ).first()
                is None
            ]
            if fresh:
                lock_stories(s)
            fresh_articles = [item.article for item in fresh]
            prints = [item.fingerprint or article_fingerprint(item.article) for item in fresh]
            policy = policy or StoryPolicy()
            choices = assign_stories(
                fresh_articles,
                prints,
                story_candidates(s, fresh_articles, prints, policy, now),
                policy,
                now,
            )
            story_of: list[int] = []  # story id of each fresh article, by index
            stories_with_hit: set[int] = set()
            for item, fp, choice in zip(fresh, prints, choices, strict=True):
                a = item.article
                story_id = choice.story_id
                if story_id is None and choice.same_as is not None:
                    story_id = story_of[choice.same_as]
                if story_id is None:
                    story = StoryRow(
                        canonical_url=a.url or None, content_hash=a.content_hash, first_seen_at=now
                    )
                    s.add(story)
                    s.flush()
                    assert story.id is not None
                    story_id = story.id
                elif choice.story_has_hit:
                    stories_with_hit.add(story_id)
                story_of.append(story_id)
                assert feed.id is not None
                row = ArticleRow(
                    feed_id=feed.id,
                    story_id=story_id,
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
                assert row.id is not None
                add_story_keys(s, row.id, story_id, fp, seen_at(a, now))
                if (
                    story_id not in stories_with_hit
                    and item.match is not None
                    and item.match.flagged
                ):
                    stories_with_hit.add(story_id)
                    hit_ids.append(
                        self._add_hit(s, story_id, row.id, a, item.match, subs, now, feed.url)
                    )
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
        feed_url: str = "",
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
            if wants(sub, m.score, m.topics, m.event_type, hit.jurisdictions, (feed_url,)):
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

    def update_feed(self, update_: FeedUpdate) -> None:
        """Record a poll that stored no articles (not modified, or an error)."""
        self.record_poll(update_, (), update_.checked_at)
