"""Articles, stories and the one-transaction poll record (hit + outbox rows)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from service.alerts.routing import wants
from service.errors import StorageError
from service.storage.base import enabled_subscriptions, new_webhook_id
from service.storage.feeds import FeedStore, feed_urls, needs_feed_row, write_feed_updates
from service.storage.stories import (
    add_story_keys,
    insert_returning_ids,
    known_guids,
    lock_stories,
    story_candidates,
)
from service.storage.tables import (
    ArticleRow,
    DeliveryRow,
    FeedRow,
    HitRow,
    StoryRow,
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

log = logging.getLogger(__name__)

# Times one poll's transaction is run when it loses a race on a unique constraint (another
# worker stored the same article, hit or delivery first); the rerun sees and skips those rows.
RECORD_POLL_ATTEMPTS = 3


class ArticleStore(FeedStore):
    # ------------------------------------------------------------ articles and stories

    def known_guids(self, feed_id: int, guids: Iterable[str]) -> set[str]:
        """Which of these entry ids this feed has already stored."""
        return self.known_guids_by_feed({feed_id: guids}).get(feed_id, set())

    def known_guids_by_feed(self, guids: Mapping[int, Iterable[str]]) -> dict[int, set[str]]:
        """Which of each feed's entry ids it has already stored, in one transaction: a
        poll's batch of feeds costs one session instead of one each."""
        if not guids:
            return {}
        with self._session() as s:
            return {feed_id: known_guids(s, feed_id, ids) for feed_id, ids in guids.items()}

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
        candidates looked up here, under the story lock: a story gets a hit from its first
        flagged sighting only, later sightings are added to it without a new hit or
        delivery.

        Workers racing on the same rows (an article, a story's hit, a delivery) meet the
        unique constraints: the loser's transaction is rolled back and run again, and then
        finds the winner's rows and skips them.
        """
        return self.record_polls([(update_, articles)], now, policy)[0]

    def record_polls(
        self,
        polls: Sequence[tuple[FeedUpdate, Sequence[NewArticle]]],
        now: datetime,
        policy: StoryPolicy | None = None,
    ) -> list[list[int]]:
        """``record_poll`` for several feeds in one transaction (in order: a later feed's
        articles see an earlier one's as stored sightings); the hit ids of each poll.

        One commit per batch instead of per feed: a first poll writes 32 band keys per
        article at random places of one index, and a commit writes every page it touched,
        so batching feeds saves most of the writing (bench/bench_poll.py)."""
        for attempt in range(1, RECORD_POLL_ATTEMPTS + 1):
            try:
                with self._session() as s:
                    # Subscriptions matter only to a flagged article (a possible new hit):
                    # most batches, and every batch of 304s, have none and skip the query
                    # (a quarter of a 304 batch's storing time in py-spy).
                    flagged = any(
                        item.match is not None and item.match.flagged
                        for _, items in polls
                        for item in items
                    )
                    subs = enabled_subscriptions(s) if flagged else []
                    # The batch's feed URLs in one query and its feed updates in one
                    # executemany: a look-up, an ORM row and a flush per feed were most
                    # of a 304 poll's storing cost. Moves and disablings take the row.
                    urls = feed_urls(s, {update_.feed_id for update_, _ in polls})
                    hits = [
                        self._record_poll_once(
                            s, urls.get(update_.feed_id), update_, articles, now, policy, subs
                        )
                        for update_, articles in polls
                    ]
                    plain = []
                    for update_, _ in polls:
                        if needs_feed_row(update_, urls[update_.feed_id]):
                            row = s.get(FeedRow, update_.feed_id)
                            assert row is not None, "its URL was just read"
                            self._apply_feed_update(row, update_)
                        else:
                            plain.append(update_)
                    write_feed_updates(s, plain)
                    return hits
            except IntegrityError as e:
                feeds = ", ".join(str(update_.feed_id) for update_, _ in polls)
                if attempt == RECORD_POLL_ATTEMPTS:
                    raise StorageError(
                        f"feed {feeds}: poll not stored after {attempt} attempts, "
                        f"a concurrent writer kept winning: {e.orig}"
                    ) from e
                log.info(
                    "feed %s: a concurrent worker stored some of the same rows; storing again",
                    feeds,
                )
        raise AssertionError("unreachable")

    def _record_poll_once(
        self,
        s: Session,
        feed_url: str | None,
        update_: FeedUpdate,
        articles: Sequence[NewArticle],
        now: datetime,
        policy: StoryPolicy | None,
        subs: Sequence[Subscription],
    ) -> list[int]:
        hit_ids: list[int] = []
        feed_id = update_.feed_id
        if feed_url is None:
            raise StorageError(f"feed {feed_id} vanished during its poll")
        if articles:
            known = known_guids(s, feed_id, {item.article.guid for item in articles})
            fresh = [item for item in articles if item.article.guid not in known]
        else:
            fresh = []
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
        # Rows go in as a few multi-row INSERTs (RETURNING the new ids in order), not one
        # ORM flush per row: this is most of a first poll's storage cost
        # (bench/bench_poll.py).
        new_story_ids = iter(
            insert_returning_ids(
                s,
                StoryRow,
                [
                    {"canonical_url": a.url or None, "content_hash": a.content_hash}
                    | {"first_seen_at": now}
                    for a, choice in zip(fresh_articles, choices, strict=True)
                    if choice.story_id is None and choice.same_as is None
                ],
                # New stories' articles have distinct hashes: equal ones join one story.
                key="content_hash",
            )
        )
        story_of: list[int] = []  # story id of each fresh article, by index
        for choice in choices:
            if choice.story_id is not None:
                story_of.append(choice.story_id)
            elif choice.same_as is not None:
                story_of.append(story_of[choice.same_as])
            else:
                story_of.append(next(new_story_ids))
        article_ids = insert_returning_ids(
            s,
            ArticleRow,
            [
                {
                    "feed_id": feed_id,
                    "story_id": story_id,
                    "guid": a.guid,
                    "url": a.url,
                    "title": a.title,
                    "summary": a.summary,
                    "text": a.text,
                    "source": a.source,
                    "author": a.author,
                    "content_hash": a.content_hash,
                    "published_at": a.published_at,
                    "first_seen_at": now,
                }
                for a, story_id in zip(fresh_articles, story_of, strict=True)
            ],
            key="guid",  # distinct: one feed's (feed_id, guid) is unique
        )
        add_story_keys(
            s,
            [
                (article_id, fp, seen_at(a, now))
                for article_id, fp, a in zip(article_ids, prints, fresh_articles, strict=True)
            ],
        )
        stories_with_hit: set[int] = set()
        for item, choice, story_id, article_id in zip(
            fresh, choices, story_of, article_ids, strict=True
        ):
            if choice.story_has_hit:
                stories_with_hit.add(story_id)
            elif story_id not in stories_with_hit and item.match is not None and item.match.flagged:
                stories_with_hit.add(story_id)
                hit_ids.append(
                    self._add_hit(
                        s, story_id, article_id, item.article, item.match, subs, now, feed_url
                    )
                )
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
