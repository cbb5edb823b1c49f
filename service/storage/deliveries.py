"""Webhook subscriptions and the delivery outbox (leases, attempts, retries)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import or_, update
from sqlmodel import col, select

from service.config import WebhookConfig
from service.storage.base import _delivery, _subscription
from service.storage.hits import HitStore
from service.storage.tables import (
    DeliveryRow,
    HitRow,
    SubscriptionRow,
)
from service.types import (
    DeliveryRecord,
    HitRecord,
    Subscription,
)

# A claimed delivery is someone else's for this long; a crashed sender's claim expires then.
DELIVERY_LEASE = timedelta(minutes=2)


class DeliveryStore(HitStore):
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
