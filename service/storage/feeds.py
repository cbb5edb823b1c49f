"""Feeds and their health (schedule state, validators, errors)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, update
from sqlalchemy.orm import object_session
from sqlmodel import Session, col, select

from service.config import FeedConfig
from service.normalize import feed_url
from service.storage.base import StoreBase, _feed_record
from service.storage.stories import _in_rows, _mark, bind_processors, driver_execute
from service.storage.tables import (
    FeedRow,
    feed_named,
    feed_url_is,
)
from service.types import (
    FeedRecord,
    FeedUpdate,
    FetchStatus,
)


def feed_urls(s: Session, ids: Iterable[int]) -> dict[int, str]:
    """The URLs of the feeds with these ids, by id, in one query per IN_CHUNK ids (a
    missing id is simply absent). Run on the driver like the poll's other look-ups: the
    ORM's statement set-up cost more than the query (bench/bench_poll.py's 304 poll)."""
    rows = _in_rows(s, "SELECT id, url FROM feeds WHERE id IN ({in})", sorted(set(ids)))
    return {row[0]: row[1] for row in rows}


def feed_update_values(u: FeedUpdate) -> dict[str, Any]:
    """The feed-row columns one poll's outcome sets, but for a move or a disabling (which
    need the row itself, ``FeedStore._apply_feed_update``). Pure."""
    values: dict[str, Any] = {
        "last_checked_at": u.checked_at,
        "last_status": u.status.value,
        "last_http_status": u.http_status,
        "error_count": u.error_count,
        "next_check_at": u.next_check_at,
        "last_new_items": u.new_items,
        "last_error": u.error,
        "failing_since": u.failing_since,
        "lease_until": None,  # the poll is recorded: the feed is free for its next check
    }
    if u.items_per_hour is not None:
        values["items_per_hour"] = u.items_per_hour
    if u.status is not FetchStatus.ERROR:
        for name in ("etag", "last_modified", "body_hash"):
            if getattr(u, name) is not None:
                values[name] = getattr(u, name)
    return values


def needs_feed_row(u: FeedUpdate, url: str) -> bool:
    """Whether recording ``u`` on the feed at ``url`` moves or disables it. Pure."""
    return u.disabled_reason is not None or (u.moved_to is not None and u.moved_to != url)


def write_feed_updates(s: Session, updates: Sequence[FeedUpdate]) -> None:
    """Record polls that neither move nor disable their feed: one UPDATE per set of
    columns, run over all of them (executemany) on the driver, each value bound as its
    column's type binds it. Through the ORM, reading each row and setting its attributes,
    this was most of the storing cost of a 304 poll; through SQLAlchemy's ``execute``, its
    statement set-up was still ~7 % of a 304 poll's samples (py-spy ``--gil``, README)."""
    groups: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
    for u in updates:
        values = feed_update_values(u)
        groups.setdefault(tuple(values), []).append((*values.values(), u.feed_id))
    if not groups:
        return
    conn = s.connection()
    table: Any = FeedRow.__table__  # type: ignore[attr-defined]
    quote = conn.dialect.identifier_preparer.quote
    mark = _mark(conn)
    for names, rows in groups.items():
        process = bind_processors(conn, table, names)
        sets = ", ".join(f"{quote(n)} = {mark}" for n in names)
        params = [
            (
                *(
                    value if proc is None else proc(value)
                    for value, proc in zip(row[:-1], process, strict=True)
                ),
                row[-1],  # the feed's id
            )
            for row in rows
        ]
        driver_execute(
            conn,
            f"UPDATE {quote(table.name)} SET {sets} WHERE {quote('id')} = {mark}",
            params,
            many=True,
        )


class FeedStore(StoreBase):
    # ------------------------------------------------------------ feeds

    def sync_config_feeds(self, feeds: Sequence[FeedConfig], now: datetime) -> None:
        """Add the config file's feeds (due now) and refresh their names and intervals.
        Workers starting together may race here; the loser runs again (URLs are unique)."""
        self._retry_conflicts(lambda: self._sync_config_feeds(feeds, now))

    def _sync_config_feeds(self, feeds: Sequence[FeedConfig], now: datetime) -> None:
        with self._session() as s:
            # Rows stored before feed URLs were normalised are found by either form, so a
            # config URL in another case or with ":80" does not add the feed a second time.
            existing: dict[str, FeedRow] = {}
            for r in s.exec(select(FeedRow)).all():
                existing[r.url] = r
                existing.setdefault(feed_url(r.url), r)
            for f in feeds:  # their URLs normalised when the config was read
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
        """Add a feed (due now), its URL normalised (``normalize.feed_url``: one feed however
        its scheme and host are cased). Returns the feed and whether it was new; a feed that
        was removed before comes back (enabled, due now, its history kept) and counts as new."""
        raw, url = url, feed_url(url)
        with self._session() as s:
            # The normalised form first; a row stored as given before normalising also counts.
            rows = s.exec(select(FeedRow).where(feed_url_is(raw))).all()
            row = next((r for r in rows if r.url == url), rows[0] if rows else None)
            if row is not None and row.disabled_reason == "removed":
                row.enabled, row.disabled_reason, row.disabled_at = True, None, None
                row.name = name or row.name
                row.interval_s = interval_s if interval_s is not None else row.interval_s
                row.next_check_at, row.error_count, row.failing_since = now, 0, None
                s.add(row)
                return _feed_record(row), True
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
        return s.exec(select(FeedRow).where(feed_named(url_or_id))).first()

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

    def claim_feeds(
        self, now: datetime, worker: str, limit: int, lease: timedelta
    ) -> list[FeedRecord]:
        """Lease up to ``limit`` due feeds to ``worker`` until ``now + lease``.

        A leased feed is no one else's until its poll is recorded (which ends the lease) or
        the lease runs out (a crashed worker: another takes the feed over then). On
        PostgreSQL the due rows are locked with ``FOR UPDATE SKIP LOCKED``, so workers
        claiming at the same moment get different feeds without waiting for each other;
        on SQLite a conditional update lets only one process take each feed.
        """
        free = or_(col(FeedRow.lease_until).is_(None), col(FeedRow.lease_until) < now)
        due = (
            select(FeedRow)
            .where(FeedRow.enabled == True)  # noqa: E712 (SQL expression)
            .where(or_(col(FeedRow.next_check_at).is_(None), col(FeedRow.next_check_at) <= now))
            .where(free)
            .order_by(col(FeedRow.next_check_at), col(FeedRow.id))
            .limit(limit)
        )
        until = now + lease
        with self._session() as s:
            if s.get_bind().dialect.name == "postgresql":
                rows = s.exec(due.with_for_update(skip_locked=True)).all()
                for row in rows:
                    row.lease_until, row.leased_by = until, worker
                    s.add(row)
                return [_feed_record(r) for r in rows]
            claimed = []
            for row in s.exec(due).all():
                result = s.execute(
                    update(FeedRow)
                    .where(col(FeedRow.id) == row.id)
                    .where(free)
                    .values(lease_until=until, leased_by=worker)
                    .execution_options(synchronize_session=False)
                )
                if getattr(result, "rowcount", 0) == 1:
                    claimed.append(_feed_record(row))
            return claimed

    def release_feeds(self, worker: str) -> int:
        """Give back the leases ``worker`` holds on feeds whose poll it has not recorded (a
        worker stopping cleanly): the feeds are claimable at once, by anyone, instead of when
        the lease runs out. Their schedule is untouched (they stay due). Returns how many."""
        with self._session() as s:
            result = s.execute(
                update(FeedRow)
                .where(col(FeedRow.leased_by) == worker)
                .where(col(FeedRow.lease_until).is_not(None))
                .values(lease_until=None)
                .execution_options(synchronize_session=False)
            )
            return int(getattr(result, "rowcount", 0))

    def enabled_feeds(self) -> list[FeedRecord]:
        return [f for f in self.list_feeds() if f.enabled]

    @staticmethod
    def _apply_feed_update(feed: FeedRow, u: FeedUpdate) -> None:
        """Write one poll's outcome on the feed row (inside the poll's transaction)."""
        for name, value in feed_update_values(u).items():
            setattr(feed, name, value)
        if u.moved_to is not None and u.moved_to != feed.url:
            FeedStore._move_feed(feed, u.moved_to, u.checked_at)
        if u.disabled_reason is not None:
            FeedStore._disable(feed, u.disabled_reason, u.checked_at)

    @staticmethod
    def _move_feed(feed: FeedRow, url: str, now: datetime) -> None:
        """Follow a permanent redirect; when another feed already has the new URL, this
        one is a duplicate and is disabled instead (URLs are unique)."""
        s = object_session(feed)
        assert s is not None, "a feed row being updated belongs to a session"
        raw, url = url, feed_url(url)  # stored normalised, as add_feed stores it
        if url == feed.url:
            return
        other = s.execute(
            select(FeedRow.id).where(feed_url_is(raw)).where(FeedRow.id != feed.id)
        ).first()
        if other is None:
            feed.url = url
            return
        FeedStore._disable(feed, f"permanently redirected to {url}, already feed {other[0]}", now)

    @staticmethod
    def _disable(feed: FeedRow, reason: str, now: datetime) -> None:
        feed.enabled = False
        feed.disabled_reason = reason
        feed.disabled_at = now
        feed.next_check_at = None
