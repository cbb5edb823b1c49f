"""A worker stopped cleanly (SIGTERM) gives back the feeds and deliveries it claimed but did
not finish, so the next worker takes them at once instead of after their leases.

Real ``detainer-watch worker`` processes on SQLite and on PostgreSQL (DW_TEST_POSTGRES_URL):
slow feeds and a slow receiver keep polls and deliveries in flight when the signal comes.
The leases here are long (a feed's: 3 x 30 s total timeout; a delivery's: 10 s plus the
receiver timeout per place in its batch), so "at once" and "after the lease" are far apart.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.fleet import Fleet, scratch_database
from tests.receiver import WebhookReceiver
from tests.seedfeed import rss
from tests.servers import FeedServer

pytestmark = pytest.mark.e2e

FEEDS = 12
FETCH_S = 1.5  # each feed request takes this long: a poll batch is always in flight
SEND_S = 0.4  # each webhook POST takes this long: a delivery batch is in flight too
TOTAL_TIMEOUT_S = 30.0  # feed leases: (2 + 1) x this = 90 s


@contextmanager
def database(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'dw.db'}"
        return
    with scratch_database(request.getfixturevalue("pg_url")) as url:
        yield url


# ``run`` (scheduler and API in one process, what ``make run`` and the Docker image start)
# stops the same way: uvicorn re-raised the SIGTERM it had handled, which killed the process
# before its scheduler was shut down (exit 143, leases held, "leaked semaphore objects").
@pytest.mark.parametrize(
    ("command", "kind"), [("worker", "sqlite"), ("worker", "postgres"), ("run", "sqlite")]
)
def test_sigterm_releases_unfinished_feeds_and_deliveries(
    command: str, kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    with (
        database(kind, tmp_path, request) as db,
        FeedServer() as feeds,
        WebhookReceiver(delay_s=SEND_S) as hook,
    ):
        fleet = Fleet(tmp_path, db, feeds, [hook], FEEDS, total_timeout_s=TOTAL_TIMEOUT_S)
        for i in range(FEEDS):
            fleet.add_items(i, 1)  # two stories per feed: 24 hits, 24 deliveries
            feeds.route(f"/f{i}.xml", body=rss(fleet.items[i]), delay_s=FETCH_S)
        fleet.start(1, command)
        try:
            deadline = time.monotonic() + 60
            while len(hook.received) < 3:  # hits stored, deliveries being sent, polls going on
                assert time.monotonic() < deadline, fleet.logs_tail()
                fleet.assert_alive()
                time.sleep(0.05)
            first = fleet.procs[0]
            first.send_signal(signal.SIGTERM)
            assert first.wait(timeout=30) == 0, fleet.logs_tail()
            stopped_at = time.monotonic()

            # Nothing the stopped worker claimed is still leased ...
            assert fleet.query("SELECT count(*) FROM feeds WHERE lease_until IS NOT NULL") == [
                (0,)
            ], fleet.logs_tail()
            leased = fleet.query(
                "SELECT count(*) FROM deliveries WHERE status = 'pending' "
                "AND lease_until IS NOT NULL"
            )
            assert leased == [(0,)], fleet.logs_tail()
            # ... though it stopped with work left: polls cut off, deliveries not yet sent.
            log = fleet.logs[0].read_text()
            assert "released the leases of" in log, log[-3000:]
            assert log.rstrip().endswith("INFO service: stopped"), log[-3000:]
            assert "leaked" not in log, log[-3000:]  # the parse processes were shut down
            (pending,) = fleet.query("SELECT count(*) FROM deliveries WHERE status = 'pending'")
            assert int(str(pending[0])) > 0, "the worker sent everything before it stopped"

            # The next worker takes all of it over at once, well inside any lease.
            fleet.start(1)
            fleet.wait_until_stored_and_sent(timeout_s=25)
            assert time.monotonic() - stopped_at < 3 * TOTAL_TIMEOUT_S
        finally:
            fleet.stop()
        fleet.check_stored_once()
        fleet.check_sent_once()


# A one-shot `poll` over one host's feeds, spaced further apart than the test may wait:
# without its own stop the signal either killed it at once (SIGTERM, the feeds left leased)
# or let it sit out the spacing of every feed still queued (SIGINT, ~1 s a feed by default).
SPACED_FEEDS = 6


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_a_one_shot_poll_and_gives_its_feeds_back(
    signum: signal.Signals, code: int, tmp_path: Path
) -> None:
    with FeedServer() as feeds:
        fleet = Fleet(tmp_path, f"sqlite:///{tmp_path / 'dw.db'}", feeds, [], SPACED_FEEDS)
        config = fleet.config.read_text(encoding="utf-8")
        spaced = config.replace("per_host_delay = 0.001", 'per_host_delay = "2m"')
        assert spaced != config
        fleet.config.write_text(spaced, encoding="utf-8")
        proc = subprocess.Popen(
            [sys.executable, "-m", "service", "--config", str(fleet.config), "poll"],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 60
            while not feeds.requests:  # the first feed is fetched; the others wait their turn
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.02)
            time.sleep(0.3)  # its answer stored, the next fetches waiting on the host gate
            proc.send_signal(signum)
            out, err = proc.communicate(timeout=30)  # the spacing alone would take minutes
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == code, err[-3000:]
        assert len(feeds.requests) == 1  # nothing was sent after the signal
        polled = [line for line in out.splitlines() if line.startswith("ok 200")]
        assert len(polled) == 1, out
        not_polled = SPACED_FEEDS - 1
        assert f"stopped by {signum.name} before the end: {not_polled} feeds not polled" in err
        assert fleet.query("SELECT count(*) FROM feeds WHERE lease_until IS NOT NULL") == [(0,)]
        assert fleet.query("SELECT count(*) FROM feeds WHERE last_checked_at IS NULL") == [
            (not_polled,)
        ]
