"""Scale-out with real processes on a real PostgreSQL: 3 ``worker`` processes, one database.

Every article is stored once, every hit once, every delivery sent once per subscription
(repeats only under the same webhook-id), no feed is polled by two workers in the same
interval; a worker killed with ``kill -9`` and connections killed with
``pg_terminate_backend`` lose nothing. Each test gets its own database.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from service.storage.deliveries import LEASE_MARGIN, PER_SUBSCRIPTION_BATCH
from tests.fleet import Fleet, scratch_database
from tests.receiver import WebhookReceiver
from tests.servers import FeedServer

pytestmark = pytest.mark.e2e

FEEDS = 300  # the fleet test: 3 workers, 300 feeds
FEWER = 75  # the fault tests: enough for every worker to hold leases when one is hurt
# Longest lease a worker can hold on a delivery: the fleet's receiver timeout is 2 s.
DELIVERY_LEASE_BOUND_S = LEASE_MARGIN.total_seconds() + 2.0 * PER_SUBSCRIPTION_BATCH


def test_three_workers_share_feeds_and_deliveries_once(pg_url: str, tmp_path: Path) -> None:
    with (
        scratch_database(pg_url) as db,
        FeedServer() as feeds,
        WebhookReceiver() as a,
        WebhookReceiver() as b,
    ):
        fleet = Fleet(tmp_path, db, feeds, [a, b], FEEDS)
        fleet.start(3)  # all three migrate the empty database at once
        try:
            fleet.wait_until_stored_and_sent(timeout_s=90)
            for i in range(0, FEEDS, 3):  # news arrives while they run
                fleet.add_items(i, 2)
            fleet.wait_until_stored_and_sent(timeout_s=60)
            time.sleep(1.5)  # a duplicate in flight would arrive now
        finally:
            fleet.stop()
        fleet.check_stored_once()
        fleet.check_sent_once()
        fleet.check_polls_apart()
        workers = {r[0] for r in fleet.query("SELECT DISTINCT leased_by FROM feeds")}
        assert len(fleet.procs) == 3 and all(p.returncode == 0 for p in fleet.procs)
        assert workers  # the feeds were leased (the last lease holder is kept on the row)


def test_kill_9_worker_its_feeds_and_deliveries_are_taken_over(pg_url: str, tmp_path: Path) -> None:
    with (
        scratch_database(pg_url) as db,
        FeedServer() as feeds,
        WebhookReceiver(delay_s=0.2) as hook,
    ):
        # Slow feeds: a worker holds the leases of a claimed batch for a while, so the
        # victim can be caught holding some (its feeds' takeover is then always checked).
        fleet = Fleet(tmp_path, db, feeds, [hook], FEWER, feed_delay_s=0.3)
        fleet.start(3)
        try:
            victim = fleet.procs[0].pid
            victims_leases = "SELECT id FROM feeds WHERE leased_by LIKE :w AND lease_until > now()"
            deadline = time.monotonic() + 60
            # Polls and deliveries are in flight, and the victim holds feed leases.
            while len(hook.received) < 5 or not fleet.query(victims_leases, w=f"%:{victim}:%"):
                assert time.monotonic() < deadline, fleet.logs_tail()
                fleet.assert_alive()
                time.sleep(0.05)
            fleet.kill_9(0)
            held = fleet.query(victims_leases, w=f"%:{victim}:%")
            for i in range(0, FEWER, 2):
                fleet.add_items(i, 1)
            # The victim's deliveries come free one by one as their leases end, the last of a
            # full batch after LEASE_MARGIN + one receiver timeout per place in the batch.
            fleet.wait_until_stored_and_sent(timeout_s=DELIVERY_LEASE_BOUND_S + 30)
            time.sleep(1.5)
            # The victim's leased feeds were polled again, by the others, after their lease.
            assert held, "the victim held no feed leases when it was killed"
            ids = ",".join(str(r[0]) for r in held)
            rows = fleet.query(
                f"SELECT count(*) FROM feeds WHERE id IN ({ids}) AND leased_by NOT LIKE :w",
                w=f"%:{victim}:%",
            )
            assert rows[0][0] == len(held)
        finally:
            fleet.stop()
        fleet.check_stored_once()
        fleet.check_sent_once()
        fleet.check_polls_apart()


def test_workers_carry_on_after_connections_are_killed(pg_url: str, tmp_path: Path) -> None:
    with scratch_database(pg_url) as db, FeedServer() as feeds, WebhookReceiver() as hook:
        fleet = Fleet(tmp_path, db, feeds, [hook], FEWER)
        fleet.start(3)
        try:
            fleet.wait_until_stored_and_sent(timeout_s=90)
            name = db.rsplit("/", 1)[1]
            others = (
                "SELECT pid FROM pg_stat_activity WHERE datname = :db AND pid <> pg_backend_pid()"
            )
            killed: set[int] = set()
            for round_ in range(3):
                for i in range(round_, FEWER, 3):
                    fleet.add_items(i, 1)
                time.sleep(0.3)  # mid-poll: some transactions are open now
                pids = fleet.query(
                    f"SELECT pid, pg_terminate_backend(pid) FROM ({others}) AS workers", db=name
                )
                # A backend may end on its own between the listing and its termination
                # (a connection the pool closed): pg_terminate_backend then says false.
                assert any(ok for _, ok in pids)
                killed |= {int(str(pid)) for pid, ok in pids if ok}
                time.sleep(0.5)
            fleet.wait_until_stored_and_sent(timeout_s=90)
            time.sleep(1.5)
            fleet.assert_alive()
            # The workers are connected again, on new server processes (a kill outside a
            # transaction is found by the pool's pre-ping and logs nothing).
            now_connected = {int(str(r[0])) for r in fleet.query(others, db=name)}
            assert now_connected and not now_connected & killed
        finally:
            fleet.stop()
        fleet.check_stored_once()
        fleet.check_sent_once()
