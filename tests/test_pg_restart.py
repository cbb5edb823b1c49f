"""PostgreSQL restarted mid-run: the workers reconnect and carry on; nothing is lost.

The server restarted is a private one this test starts (initdb into a temporary folder, its
own port on 127.0.0.1), so the restart is real (``pg_ctl stop``, then ``start`` once a worker
has met the outage: every connection is cut, the server is down for a moment) without
touching the shared server other tests use. A plain ``pg_ctl restart`` could fall between
two ticks, so that no worker saw it and the test proved nothing (it failed so once in CI).
Skipped with the reason where PostgreSQL's server binaries are not installed.
``tests/test_scaleout.py`` covers connections killed with ``pg_terminate_backend``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.fleet import Fleet
from tests.receiver import WebhookReceiver
from tests.servers import FeedServer

pytestmark = pytest.mark.e2e

FEEDS = 60


class PrivatePostgres:
    """A throwaway PostgreSQL server: trust auth, no fsync, one port on 127.0.0.1."""

    def __init__(self, bin_dir: Path, root: Path) -> None:
        self.bin_dir, self.root = bin_dir, root
        self.data, self.log = root / "data", root / "server.log"
        self.port = free_port()
        # initdb and the server refuse to run as root: use the postgres account then.
        self.as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def run(self, *args: str) -> None:
        done = subprocess.run(
            [*self.as_owner, str(self.bin_dir / args[0]), *args[1:]],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"{args[0]} failed: {done.stdout}{done.stderr}\n{log[-2000:]}")

    def pg_ctl(self, action: str) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off"
        self.run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w",
                 "-m", "fast", action)  # fmt: skip

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if not found:
        pytest.skip("PostgreSQL's server binaries (pg_ctl, initdb) are not installed")
    if os.geteuid() == 0 and not shutil.which("runuser"):
        pytest.skip("running as root without runuser: cannot start a PostgreSQL server")
    root = Path(tempfile.mkdtemp(prefix="dw-pg-"))  # not under pytest's 0700 folder
    root.chmod(0o777)
    server = PrivatePostgres(found[-1].parent, root)
    try:
        server.run("initdb", "-D", str(server.data), "-A", "trust", "-U", "postgres",
                   "-E", "UTF8", "--no-sync")  # fmt: skip
        server.pg_ctl("start")
        yield server
    finally:
        if server.data.exists():
            subprocess.run(
                [*server.as_owner, str(server.bin_dir / "pg_ctl"), "-D", str(server.data),
                 "-m", "immediate", "stop"],
                capture_output=True,
                check=False,
            )  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)


def _database_errors(fleet: Fleet) -> int:
    """How many times the workers have logged a database error so far."""
    return sum(p.read_text().count("database error") for p in fleet.logs if p.exists())


def test_workers_carry_on_after_postgresql_restarts(
    private_postgres: PrivatePostgres, tmp_path: Path
) -> None:
    with FeedServer() as feeds, WebhookReceiver() as hook:
        fleet = Fleet(tmp_path, private_postgres.url, feeds, [hook], FEEDS)
        fleet.start(3)
        try:
            fleet.wait_until_stored_and_sent(timeout_s=60)
            for round_ in range(2):
                for i in range(round_, FEEDS, 2):
                    fleet.add_items(i, 1)
                time.sleep(0.4)  # polls and deliveries of the new items are under way
                seen = _database_errors(fleet)
                private_postgres.pg_ctl("stop")
                # Down until a worker has met the outage (a tick logs "database error").
                deadline = time.monotonic() + 30
                while _database_errors(fleet) == seen:
                    assert time.monotonic() < deadline, "no worker noticed the server was down"
                    time.sleep(0.1)
                private_postgres.pg_ctl("start")
                fleet.assert_alive()
            # Leases held across the restart run out (feeds: 9 s here; deliveries: 10 s plus
            # the receiver timeout per place in the batch) and the work is done again.
            fleet.wait_until_stored_and_sent(timeout_s=90)
            time.sleep(1.5)  # a duplicate in flight would arrive now
            fleet.assert_alive()
        finally:
            fleet.stop()
        assert all(p.returncode == 0 for p in fleet.procs), fleet.logs_tail()
        fleet.check_stored_once()
        fleet.check_sent_once()
        assert _database_errors(fleet) > 0  # the workers did see the server go away
