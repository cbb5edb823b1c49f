"""The one storage class: every SQL statement of the service lives behind its methods.

``Storage`` takes and returns records from ``service.types``; no ``Session`` leaves this
module. It does not decide anything (what is new, when next, whom to alert): callers pass
decisions in, and the one piece of policy it applies inside a transaction — which
subscriptions want a hit — is the pure ``service.alerts.routing.wants``.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Text, cast, func, or_, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlmodel import Session, col, select

from service.alerts.routing import wants
from service.config import FeedConfig, WebhookConfig
from service.errors import StorageError
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
    DeliveryRecord,
    FeedRecord,
    FeedUpdate,
    FetchStatus,
    HitQuery,
    HitRecord,
    MatchResult,
    NewArticle,
    Sighting,
    Subscription,
)

# A claimed delivery is someone else's for this long; a crashed sender's claim expires then.
DELIVERY_LEASE = timedelta(minutes=2)


def _utc(value: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; everything we store is UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _feed_record(row: FeedRow) -> FeedRecord:
    assert row.id is not None
    return FeedRecord(
        id=row.id,
        url=row.url,
        name=row.name,
        origin=row.origin,
        interval_s=row.interval_s,
        enabled=row.enabled,
        disabled_reason=row.disabled_reason,
        etag=row.etag,
        last_modified=row.last_modified,
        body_hash=row.body_hash,
        last_checked_at=_utc(row.last_checked_at),
        last_status=row.last_status,
        last_http_status=row.last_http_status,
        last_error=row.last_error,
        error_count=row.error_count,
        last_new_items=row.last_new_items,
        next_check_at=_utc(row.next_check_at),
    )


def _subscription(row: SubscriptionRow) -> Subscription:
    assert row.id is not None
    return Subscription(
        id=row.id,
        url=row.url,
        name=row.name,
        format=row.format,
        secret=row.secret,
        min_score=row.min_score,
        topics=tuple(row.topics),
        enabled=row.enabled,
        disabled_reason=row.disabled_reason,
    )


def _delivery(row: DeliveryRow) -> DeliveryRecord:
    assert row.id is not None
    return DeliveryRecord(
        id=row.id,
        hit_id=row.hit_id,
        subscription_id=row.subscription_id,
        webhook_id=row.webhook_id,
        event_type=row.event_type,
        status=row.status,
        attempts=row.attempts,
        next_attempt_at=_utc(row.next_attempt_at),
        last_http_status=row.last_http_status,
        last_error=row.last_error,
        created_at=_utc(row.created_at),
        delivered_at=_utc(row.delivered_at),
    )


def new_webhook_id() -> str:
    """A Standard Webhooks message id: unique per delivery, kept across its retries."""
    return "msg_" + secrets.token_urlsafe(18)


class Storage:
    """Reads and writes feeds, articles, stories, hits, subscriptions and deliveries."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # ------------------------------------------------------------ plumbing

    @contextmanager
    def _session(self) -> Iterator[Session]:
        """One transaction; SQLAlchemy errors become StorageError at this edge."""
        try:
            with Session(self.engine, expire_on_commit=False) as session, session.begin():
                yield session
        except OperationalError as e:
            raise StorageError(f"database error: {e.orig}") from e

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except SQLAlchemyError:
            return False

    def close(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------ feeds

    def sync_config_feeds(self, feeds: Sequence[FeedConfig], now: datetime) -> None:
        """Add the config file's feeds (due now) and refresh their names and intervals."""
        with self._session() as s:
            existing = {r.url: r for r in s.exec(select(FeedRow)).all()}
            for f in feeds:
                row = existing.get(f.url)
                if row is None:
                    s.add(
                        FeedRow(
                            url=f.url,
                            name=f.name,
                            origin="config",
                            interval_s=f.interval_s,
                            next_check_at=now,
                            created_at=now,
                        )
                    )
                else:
                    row.name = f.name or row.name
                    row.interval_s = f.interval_s
                    s.add(row)

    def add_feed(
        self, url: str, now: datetime, name: str | None = None, interval_s: float | None = None
    ) -> tuple[FeedRecord, bool]:
        """Add a feed (due now). Returns the feed and whether it was new."""
        with self._session() as s:
            row = s.exec(select(FeedRow).where(FeedRow.url == url)).first()
            if row is not None:
                return _feed_record(row), False
            row = FeedRow(
                url=url,
                name=name,
                origin="user",
                interval_s=interval_s,
                next_check_at=now,
                created_at=now,
            )
            s.add(row)
            s.flush()
            return _feed_record(row), True

    def remove_feed(self, url_or_id: str) -> FeedRecord | None:
        """Delete a feed; its articles and hits stay (they are history)."""
        with self._session() as s:
            row = self._find_feed(s, url_or_id)
            if row is None:
                return None
            record = _feed_record(row)
            row.enabled = False
            row.disabled_reason = "removed"
            row.next_check_at = None
            s.add(row)
            return record

    @staticmethod
    def _find_feed(s: Session, url_or_id: str) -> FeedRow | None:
        if url_or_id.isdigit():
            return s.get(FeedRow, int(url_or_id))
        return s.exec(select(FeedRow).where(FeedRow.url == url_or_id)).first()

    def list_feeds(self, include_removed: bool = False) -> list[FeedRecord]:
        with self._session() as s:
            stmt = select(FeedRow).order_by(col(FeedRow.id))
            rows = s.exec(stmt).all()
            return [
                _feed_record(r) for r in rows if include_removed or r.disabled_reason != "removed"
            ]

    def get_feed(self, url_or_id: str) -> FeedRecord | None:
        with self._session() as s:
            row = self._find_feed(s, url_or_id)
            return None if row is None else _feed_record(row)

    def due_feeds(self, now: datetime, limit: int = 1000) -> list[FeedRecord]:
        with self._session() as s:
            rows = s.exec(
                select(FeedRow)
                .where(FeedRow.enabled == True)  # noqa: E712 (SQL expression)
                .where(or_(col(FeedRow.next_check_at).is_(None), col(FeedRow.next_check_at) <= now))
                .order_by(col(FeedRow.next_check_at))
                .limit(limit)
            ).all()
            return [_feed_record(r) for r in rows]

    def enabled_feeds(self) -> list[FeedRecord]:
        return [f for f in self.list_feeds() if f.enabled]

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

    # ------------------------------------------------------------ hits

    def _hit_record(self, s: Session, row: HitRow) -> HitRecord:
        assert row.id is not None
        sightings = s.exec(
            select(ArticleRow)
            .where(ArticleRow.story_id == row.story_id)
            .order_by(col(ArticleRow.id))
        ).all()
        return HitRecord(
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
            articles=tuple(
                Sighting(url=a.url, source=a.source, published_at=_utc(a.published_at))
                for a in sightings
            ),
        )

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
            page = [self._hit_record(s, r) for r in rows[: q.limit]]
        next_cursor = page[-1].id if len(rows) > q.limit and page else None
        return page, next_cursor

    def count_hits(self) -> int:
        with self._session() as s:
            return int(s.exec(select(func.count()).select_from(HitRow)).one())

    # ------------------------------------------------------------ subscriptions

    def sync_config_webhooks(self, hooks: Sequence[WebhookConfig], now: datetime) -> None:
        """Make the config file's [[webhooks]] the enabled config subscriptions."""
        with self._session() as s:
            rows = {r.url: r for r in s.exec(select(SubscriptionRow)).all()}
            wanted = {h.url for h in hooks}
            for h in hooks:
                row = rows.get(h.url) or SubscriptionRow(url=h.url, secret=h.secret, created_at=now)
                row.name, row.format, row.secret = h.name, h.format, h.secret
                row.min_score, row.topics, row.origin = h.min_score, list(h.topics), "config"
                if row.disabled_reason == "removed from config":
                    row.enabled, row.disabled_reason = True, None
                s.add(row)
            for url, row in rows.items():
                if row.origin == "config" and url not in wanted and row.enabled:
                    row.enabled, row.disabled_reason = False, "removed from config"
                    s.add(row)

    def list_subscriptions(self) -> list[Subscription]:
        with self._session() as s:
            return [
                _subscription(r)
                for r in s.exec(select(SubscriptionRow).order_by(col(SubscriptionRow.id))).all()
            ]

    def disable_subscription(self, sub_id: int, reason: str) -> None:
        with self._session() as s:
            row = s.get(SubscriptionRow, sub_id)
            if row is not None:
                row.enabled, row.disabled_reason = False, reason
                s.add(row)

    # ------------------------------------------------------------ deliveries

    def claim_deliveries(
        self, now: datetime, limit: int = 20
    ) -> list[tuple[DeliveryRecord, Subscription, HitRecord]]:
        """Lease due pending deliveries, oldest hit first, so no two senders take one."""
        claimed: list[tuple[DeliveryRecord, Subscription, HitRecord]] = []
        with self._session() as s:
            rows = s.exec(
                select(DeliveryRow)
                .where(DeliveryRow.status == "pending")
                .where(col(DeliveryRow.next_attempt_at) <= now)
                .where(
                    or_(col(DeliveryRow.lease_until).is_(None), col(DeliveryRow.lease_until) < now)
                )
                .order_by(col(DeliveryRow.hit_id), col(DeliveryRow.id))
                .limit(limit)
            ).all()
            for row in rows:
                # Conditional update: only one process can move lease_until forward.
                result = s.execute(
                    update(DeliveryRow)
                    .where(col(DeliveryRow.id) == row.id)
                    .where(
                        or_(
                            col(DeliveryRow.lease_until).is_(None),
                            col(DeliveryRow.lease_until) < now,
                        )
                    )
                    .values(lease_until=now + DELIVERY_LEASE)
                    .execution_options(synchronize_session=False)
                )
                if getattr(result, "rowcount", 0) != 1:
                    continue
                sub = s.get(SubscriptionRow, row.subscription_id)
                hit = s.get(HitRow, row.hit_id)
                if sub is None or hit is None or not sub.enabled:
                    continue
                claimed.append((_delivery(row), _subscription(sub), self._hit_record(s, hit)))
        return claimed

    def mark_delivered(self, delivery_id: int, now: datetime, http_status: int) -> None:
        with self._session() as s:
            row = s.get(DeliveryRow, delivery_id)
            if row is None:
                return
            row.status, row.delivered_at, row.lease_until = "delivered", now, None
            row.attempts += 1
            row.last_http_status, row.last_error = http_status, None
            s.add(row)

    def mark_attempt_failed(
        self,
        delivery_id: int,
        error: str,
        http_status: int | None,
        next_attempt_at: datetime | None,
    ) -> None:
        """Record a failed attempt; ``next_attempt_at=None`` means give up (status failed)."""
        with self._session() as s:
            row = s.get(DeliveryRow, delivery_id)
            if row is None:
                return
            row.attempts += 1
            row.last_error, row.last_http_status, row.lease_until = error, http_status, None
            if next_attempt_at is None:
                row.status = "failed"
            else:
                row.next_attempt_at = next_attempt_at
            s.add(row)

    def list_deliveries(self, status: str | None = None, limit: int = 100) -> list[DeliveryRecord]:
        with self._session() as s:
            stmt = select(DeliveryRow).order_by(col(DeliveryRow.id).desc()).limit(limit)
            if status:
                stmt = stmt.where(DeliveryRow.status == status)
            return [_delivery(r) for r in s.exec(stmt).all()]

    def retry_delivery(self, delivery_id: int, now: datetime) -> DeliveryRecord | None:
        """Put a failed (or pending) delivery back in the queue, due now, same webhook-id."""
        with self._session() as s:
            row = s.get(DeliveryRow, delivery_id)
            if row is None:
                return None
            if row.status != "delivered":
                row.status, row.next_attempt_at, row.lease_until = "pending", now, None
                s.add(row)
            return _delivery(row)


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
