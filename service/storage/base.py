"""Shared plumbing of the storage classes: sessions, row-to-record conversion."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TypeVar

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import (
    DataError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlmodel import Session, select

from service.errors import StorageError, StorageValueError
from service.storage.tables import (
    DeliveryRow,
    FeedRow,
    SubscriptionRow,
)
from service.types import (
    DeliveryRecord,
    FeedRecord,
    Subscription,
)

T = TypeVar("T")


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
        items_per_hour=row.items_per_hour,
        failing_since=_utc(row.failing_since),
        disabled_at=_utc(row.disabled_at),
    )


def enabled_subscriptions(s: Session) -> list[Subscription]:
    """The subscriptions that receive new hits, as records."""
    rows = s.exec(select(SubscriptionRow).where(SubscriptionRow.enabled == True)).all()  # noqa: E712
    return [_subscription(r) for r in rows]


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
        events=tuple(row.options.get("events", ())),
        states=tuple(row.options.get("states", ())),
        jurisdictions=tuple(row.options.get("jurisdictions", ())),
        feeds=tuple(row.options.get("feeds", ())),
        digest=row.options.get("digest"),
        digest_hour=int(row.options.get("digest_hour", 8)),
        digest_timezone=str(row.options.get("digest_timezone", "UTC")),
        origin=row.origin,
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
        digest_period=row.digest_period,
        digest_hit_ids=tuple(row.digest_hit_ids or ()),
    )


def new_webhook_id() -> str:
    """A Standard Webhooks message id: unique per delivery, kept across its retries."""
    return "msg_" + secrets.token_urlsafe(18)


class StoreBase:
    """Owns the engine; every domain store adds methods over the same transactions."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # ------------------------------------------------------------ plumbing

    @contextmanager
    def _session(self) -> Iterator[Session]:
        """One transaction; SQLAlchemy errors become StorageError at this edge."""
        try:
            with Session(self.engine, expire_on_commit=False) as session, session.begin():
                yield session
        except (OperationalError, InterfaceError) as e:
            # The server went away (restart, pg_terminate_backend) or refused us: the pool
            # drops the dead connection and pool_pre_ping checks the next one.
            raise StorageError(f"database error: {e.orig}") from e
        except DataError as e:
            # A value the database will not hold (PostgreSQL: a NUL character in text):
            # the caller's error to handle, like any other storage failure, not a crash.
            raise StorageValueError(f"the database refused a value: {e.orig}") from e

    def _retry_conflicts(self, write: Callable[[], T], attempts: int = 3) -> T:
        """Run a write transaction again when it lost a race on a unique constraint to a
        concurrent worker (the rerun sees the winner's rows)."""
        for attempt in range(1, attempts + 1):
            try:
                return write()
            except IntegrityError as e:
                if attempt == attempts:
                    raise StorageError(f"concurrent writers kept conflicting: {e.orig}") from e
        raise AssertionError("unreachable")

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except SQLAlchemyError:
            return False

    def close(self) -> None:
        self.engine.dispose()
