"""Webhook subscriptions and the delivery outbox (leases, attempts, retries, digests).

Deliveries to one subscription go out in the order their hits were created: a pending
delivery that is waiting for its retry holds back the later ones to the same receiver
(failed ones do not), so a receiver that comes back gets everything, in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from service.config import WebhookConfig
from service.storage.base import _delivery, _subscription, new_webhook_id
from service.storage.hits import HitStore
from service.storage.tables import ArticleRow, DeliveryRow, FeedRow, HitRow, SubscriptionRow
from service.types import DeliveryRecord, HitRecord, Subscription

# A claimed delivery is someone else's until its lease ends; a crashed sender's claims expire
# then and another sender (or the restarted one) takes them over. The k-th delivery of one
# subscription in a batch waits for the k-1 before it, so its lease is k receiver timeouts
# plus this margin.
LEASE_MARGIN = timedelta(seconds=10)
# A subscription's deliveries claimed in one batch: bounds its leases (and a crash's delay).
PER_SUBSCRIPTION_BATCH = 50


def _options(h: WebhookConfig) -> dict[str, Any]:
    return {
        "events": list(h.events),
        "states": list(h.states),
        "jurisdictions": list(h.jurisdictions),
        "feeds": list(h.feeds),
        "digest": h.digest,
        "digest_hour": h.digest_hour,
        "digest_timezone": h.digest_timezone,
    }


def _apply(row: SubscriptionRow, h: WebhookConfig, origin: str) -> None:
    row.name, row.format, row.secret = h.name, h.format, h.secret
    row.min_score, row.topics, row.origin = h.min_score, list(h.topics), origin
    row.options = _options(h)


# What one claimed delivery carries to the sender.
Claim = tuple[DeliveryRecord, Subscription, list[HitRecord]]


class DeliveryStore(HitStore):
    # ------------------------------------------------------------ subscriptions

    def sync_config_webhooks(self, hooks: Sequence[WebhookConfig], now: datetime) -> None:
        """Make the config file's [[webhooks]] the enabled config subscriptions (run again
        when a worker starting at the same moment inserted the same URL first)."""
        self._retry_conflicts(lambda: self._sync_config_webhooks(hooks, now))

    def _sync_config_webhooks(self, hooks: Sequence[WebhookConfig], now: datetime) -> None:
        with self._session() as s:
            rows = {r.url: r for r in s.exec(select(SubscriptionRow)).all()}
            wanted = {h.url for h in hooks}
            for h in hooks:
                row = rows.get(h.url) or SubscriptionRow(url=h.url, secret=h.secret, created_at=now)
                _apply(row, h, "config")
                if row.disabled_reason == "removed from config":
                    row.enabled, row.disabled_reason = True, None
                s.add(row)
            for url, row in rows.items():
                if row.origin == "config" and url not in wanted and row.enabled:
                    row.enabled, row.disabled_reason = False, "removed from config"
                    s.add(row)

    def add_subscription(self, h: WebhookConfig, now: datetime) -> Subscription | None:
        """Add a subscription made through the API; None when its URL is already subscribed."""
        try:
            with self._session() as s:
                if s.exec(select(SubscriptionRow).where(SubscriptionRow.url == h.url)).first():
                    return None
                row = SubscriptionRow(url=h.url, secret=h.secret, created_at=now)
                _apply(row, h, "api")
                s.add(row)
                s.flush()
                return _subscription(row)
        except IntegrityError:  # a concurrent add of the same URL won
            return None

    def delete_subscription(self, sub_id: int) -> bool:
        """Disable a subscription for good; its delivery history stays."""
        with self._session() as s:
            row = s.get(SubscriptionRow, sub_id)
            if row is None or row.disabled_reason == "deleted":
                return False
            row.enabled, row.disabled_reason = False, "deleted"
            s.add(row)
            s.execute(
                update(DeliveryRow)
                .where(col(DeliveryRow.subscription_id) == sub_id)
                .where(col(DeliveryRow.status) == "pending")
                .values(status="failed", last_error="subscription deleted")
                .execution_options(synchronize_session=False)
            )
            return True

    def enable_subscription(self, sub_id: int) -> Subscription | None:
        with self._session() as s:
            row = s.get(SubscriptionRow, sub_id)
            if row is None or row.disabled_reason == "deleted":
                return None
            row.enabled, row.disabled_reason = True, None
            s.add(row)
            return _subscription(row)

    def get_subscription(self, sub_id: int) -> Subscription | None:
        with self._session() as s:
            row = s.get(SubscriptionRow, sub_id)
            return None if row is None else _subscription(row)

    def list_subscriptions(self) -> list[Subscription]:
        with self._session() as s:
            rows = s.exec(select(SubscriptionRow).order_by(col(SubscriptionRow.id))).all()
            return [_subscription(r) for r in rows if r.disabled_reason != "deleted"]

    def disable_subscription(self, sub_id: int, reason: str) -> None:
        with self._session() as s:
            row = s.get(SubscriptionRow, sub_id)
            if row is not None:
                row.enabled, row.disabled_reason = False, reason
                s.add(row)

    # ------------------------------------------------------------ deliveries

    def claim_deliveries(
        self, now: datetime, limit: int = 50, attempt_timeout: timedelta = timedelta(seconds=10)
    ) -> list[Claim]:
        """Lease due deliveries: per subscription, from the oldest pending one, in hit order.

        A delivery waiting for its retry blocks the later ones of its subscription, so
        order is kept; a lease already held by another sender blocks them too.
        """
        claimed: list[Claim] = []
        with self._session() as s:
            subs = {
                r.id: r
                for r in s.exec(
                    select(SubscriptionRow).where(SubscriptionRow.enabled == True)  # noqa: E712
                ).all()
            }
            # Only the head of each subscription's queue can be sent now: read at most a
            # batch per subscription, not every pending row.
            rank = (
                func.row_number()
                .over(partition_by=col(DeliveryRow.subscription_id), order_by=col(DeliveryRow.id))
                .label("position")
            )
            heads = (
                select(col(DeliveryRow.id), rank)
                .where(DeliveryRow.status == "pending")
                .where(col(DeliveryRow.subscription_id).in_(list(subs)))
                .subquery()
            )
            rows = s.exec(
                select(DeliveryRow)
                .where(
                    col(DeliveryRow.id).in_(
                        select(heads.c.id).where(heads.c.position <= PER_SUBSCRIPTION_BATCH)
                    )
                )
                .order_by(col(DeliveryRow.subscription_id), col(DeliveryRow.id))
            ).all()
            blocked: set[int] = set()
            taken: dict[int, int] = {}
            leased: list[DeliveryRow] = []
            for row in rows:
                if len(leased) >= limit:
                    break
                if row.subscription_id in blocked:
                    continue
                position = taken.get(row.subscription_id, 0) + 1
                due = row.next_attempt_at is None or _naive_le(row.next_attempt_at, now)
                free = row.lease_until is None or not _naive_le(now, row.lease_until)
                if position > PER_SUBSCRIPTION_BATCH or not (due and free):
                    blocked.add(row.subscription_id)
                    continue
                lease_until = now + LEASE_MARGIN + attempt_timeout * position
                if not self._lease_delivery(s, row, now, lease_until):
                    blocked.add(row.subscription_id)
                    continue
                taken[row.subscription_id] = position
                leased.append(row)
            wanted = {
                i
                for r in leased
                for i in ([r.hit_id] if r.hit_id is not None else (r.digest_hit_ids or []))
            }
            hit_rows = s.exec(select(HitRow).where(col(HitRow.id).in_(list(wanted)))).all()
            hits = {h.id: h for h in self._hit_records(s, hit_rows)}
            for row in leased:
                ids = [row.hit_id] if row.hit_id is not None else list(row.digest_hit_ids or [])
                claimed.append(
                    (
                        _delivery(row),
                        _subscription(subs[row.subscription_id]),
                        [hits[i] for i in ids if i in hits],
                    )
                )
        return claimed

    @staticmethod
    def _lease_delivery(s: Session, row: DeliveryRow, now: datetime, until: datetime) -> bool:
        """Take the lease of one delivery read unlocked a moment ago, if it is still pending,
        due and free. On PostgreSQL the row is locked with ``FOR UPDATE SKIP LOCKED`` (a
        sender claiming it at this moment makes us skip it, and with it the rest of its
        subscription, instead of waiting) and read again; elsewhere a conditional update lets
        only one process move ``lease_until`` forward."""
        claimable = (
            col(DeliveryRow.id) == row.id,
            col(DeliveryRow.status) == "pending",
            or_(col(DeliveryRow.lease_until).is_(None), col(DeliveryRow.lease_until) < now),
            or_(
                col(DeliveryRow.next_attempt_at).is_(None),
                col(DeliveryRow.next_attempt_at) <= now,
            ),
        )
        if s.get_bind().dialect.name == "postgresql":
            locked = s.exec(
                select(DeliveryRow)
                .where(*claimable)
                .with_for_update(skip_locked=True)
                .execution_options(populate_existing=True)
            ).first()
            if locked is None:
                return False
            locked.lease_until = until
            s.add(locked)
            s.flush()
            return True
        result = s.execute(
            update(DeliveryRow)
            .where(*claimable)
            .values(lease_until=until)
            .execution_options(synchronize_session=False)
        )
        return getattr(result, "rowcount", 0) == 1

    def release(self, delivery_ids: Sequence[int]) -> int:
        """Give back leases not used (a sender stopping early, or holding back a receiver's
        later deliveries): the pending ones among them are claimable at once, by anyone;
        attempts and retry times are untouched. Returns how many were given back."""
        if not delivery_ids:
            return 0
        with self._session() as s:
            result = s.execute(
                update(DeliveryRow)
                .where(col(DeliveryRow.id).in_(list(delivery_ids)))
                .where(col(DeliveryRow.status) == "pending")
                .where(col(DeliveryRow.lease_until).is_not(None))
                .values(lease_until=None)
                .execution_options(synchronize_session=False)
            )
            return int(getattr(result, "rowcount", 0))

    def mark_delivered(self, delivery_id: int, now: datetime, http_status: int) -> None:
        with self._session() as s:
            s.execute(
                update(DeliveryRow)
                .where(col(DeliveryRow.id) == delivery_id)
                .values(
                    status="delivered",
                    delivered_at=now,
                    lease_until=None,
                    attempts=DeliveryRow.attempts + 1,
                    last_http_status=http_status,
                    last_error=None,
                )
                .execution_options(synchronize_session=False)
            )

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

    def get_delivery(self, delivery_id: int) -> DeliveryRecord | None:
        with self._session() as s:
            row = s.get(DeliveryRow, delivery_id)
            return None if row is None else _delivery(row)

    def list_deliveries(
        self, status: str | None = None, limit: int = 100, hit_id: int | None = None
    ) -> list[DeliveryRecord]:
        with self._session() as s:
            stmt = select(DeliveryRow).order_by(col(DeliveryRow.id).desc()).limit(limit)
            if status:
                stmt = stmt.where(DeliveryRow.status == status)
            if hit_id is not None:
                stmt = stmt.where(DeliveryRow.hit_id == hit_id)
            return [_delivery(r) for r in s.exec(stmt).all()]

    def retry_delivery(self, delivery_id: int, now: datetime) -> DeliveryRecord | None:
        """Put a failed (or waiting) delivery back in the queue, due now, same webhook-id."""
        with self._session() as s:
            row = s.get(DeliveryRow, delivery_id)
            if row is None:
                return None
            if row.status != "delivered":
                row.status, row.next_attempt_at, row.lease_until = "pending", now, None
                row.created_at = now  # the retry span starts again
                s.add(row)
            return _delivery(row)

    def redeliver_hit(self, hit_id: int, now: datetime) -> list[DeliveryRecord] | None:
        """Queue the hit again for every enabled per-hit subscription, under new webhook ids.

        A redelivery is a new message (the receiver asked for it), so it gets a new id; the
        old delivery row is kept as history with its id, and the new row replaces it.
        """
        with self._session() as s:
            hit = s.get(HitRow, hit_id)
            if hit is None:
                return None
            out: list[DeliveryRecord] = []
            subs = s.exec(
                select(SubscriptionRow).where(SubscriptionRow.enabled == True)  # noqa: E712
            ).all()
            for sub in subs:
                if sub.options.get("digest"):
                    continue
                old = s.exec(
                    select(DeliveryRow)
                    .where(DeliveryRow.hit_id == hit_id)
                    .where(DeliveryRow.subscription_id == sub.id)
                ).first()
                if old is not None and old.status == "pending":
                    out.append(_delivery(old))
                    continue
                if old is not None:
                    old.hit_id, old.event_type = None, "hit.created (superseded)"
                    s.add(old)
                    s.flush()
                assert sub.id is not None
                row = DeliveryRow(
                    hit_id=hit_id,
                    subscription_id=sub.id,
                    webhook_id=new_webhook_id(),
                    next_attempt_at=now,
                    created_at=now,
                )
                s.add(row)
                s.flush()
                out.append(_delivery(row))
            return out

    # ------------------------------------------------------------ digests

    def hits_between(self, start: datetime, end: datetime) -> list[tuple[HitRecord, list[str]]]:
        """Hits first seen in [start, end), oldest first, each with the URLs of its feeds."""
        with self._session() as s:
            rows = s.exec(
                select(HitRow)
                .where(col(HitRow.first_seen_at) >= start)
                .where(col(HitRow.first_seen_at) < end)
                .order_by(col(HitRow.id))
            ).all()
            out = []
            for row in rows:
                feeds = s.exec(
                    select(FeedRow.url)
                    .join(ArticleRow, col(ArticleRow.feed_id) == FeedRow.id)
                    .where(ArticleRow.story_id == row.story_id)
                ).all()
                out.append((self._hit_record(s, row), list(feeds)))
            return out

    def add_digest(
        self, sub_id: int, period: str, hit_ids: Sequence[int], now: datetime
    ) -> DeliveryRecord | None:
        """Queue a digest for a period once; None when that period's digest already exists."""
        try:
            with self._session() as s:
                exists = s.exec(
                    select(DeliveryRow)
                    .where(DeliveryRow.subscription_id == sub_id)
                    .where(DeliveryRow.digest_period == period)
                ).first()
                if exists is not None:
                    return None
                row = DeliveryRow(
                    subscription_id=sub_id,
                    digest_period=period,
                    digest_hit_ids=list(hit_ids),
                    event_type="digest",
                    webhook_id=new_webhook_id(),
                    next_attempt_at=now,
                    created_at=now,
                    status="pending" if hit_ids else "skipped",
                )
                s.add(row)
                s.flush()
                return _delivery(row)
        except IntegrityError:  # another worker queued it first
            return None


def _naive_le(a: datetime, b: datetime) -> bool:
    """``a <= b`` where SQLite gave one side back without its (UTC) zone."""
    if (a.tzinfo is None) != (b.tzinfo is None):
        a, b = a.replace(tzinfo=None), b.replace(tzinfo=None)
    return a <= b
