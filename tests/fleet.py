"""A fleet of real ``detainer-watch worker`` processes on one fresh PostgreSQL database.

    with scratch_database(pg_url) as db_url, FeedServer() as feeds, WebhookReceiver() as hook:
        fleet = Fleet(tmp_path, db_url, feeds, [hook], n_feeds=120)
        fleet.start(3)
        fleet.wait_until_stored(timeout_s=60)

Each feed serves distinct detainer stories (so each is a hit); ``add_items`` publishes more
while the workers run. ``check_polls_apart`` reads the feed server's request log: a feed
never polled by two workers in the same interval.
"""

from __future__ import annotations

import base64
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.conftest import REPO, RULES, free_port
from tests.receiver import WebhookReceiver
from tests.seedfeed import rss
from tests.servers import FeedServer

SECRET = "whsec_" + base64.b64encode(b"fleet-test-secret-0123456789").decode()
CITIES = ["Boston", "Chicago", "Denver", "Seattle", "Newark", "Austin", "Oakland", "Portland"]
# A vocabulary of made-up words: random picks make every story's text distinct, so no two
# items are near-duplicates (each is its own story and its own hit).
VOCAB = [f"{a}{b}{c}" for a in ("ka", "lo", "mi", "ne", "su") for b in "rtvz" for c in "aeiouy"]
# Shortest gap between two polls of one feed we accept: the feeds' interval is 1 s with
# ±10 % jitter, so two polls closer than this were two workers polling at once.
MIN_POLL_GAP_S = 0.5


@contextmanager
def scratch_database(pg_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database for one test, dropped afterwards."""
    name = f"dw_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(pg_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def story(n: int) -> dict[str, str]:
    rng = random.Random(n)
    city = CITIES[n % len(CITIES)]
    filler = " ".join(rng.sample(VOCAB, 30))
    return {
        "title": f"{city} jail declined {n} immigration detainer requests from ICE",
        "link": f"https://news{n}.example/{city.lower()}-detainers-{n}",
        "guid": f"story-{n}",
        "description": f"The {city} sheriff said the jail did not honor ICE detainer requests "
        f"under the county's sanctuary policy. {filler}.",
    }


class Fleet:
    def __init__(
        self,
        tmp: Path,
        db_url: str,
        feeds: FeedServer,
        hooks: list[WebhookReceiver],
        n_feeds: int,
        total_timeout_s: float = 3.0,
        feed_delay_s: float = 0.0,
    ) -> None:
        """``feed_delay_s``: how long the feed server takes to answer each feed (slow feeds
        keep a worker's leases held for a while, so a test can catch it holding some)."""
        self.tmp, self.db_url, self.feeds, self.hooks = tmp, db_url, feeds, hooks
        self.feed_delay_s = feed_delay_s
        self.items: dict[int, list[dict[str, str]]] = {}
        self.next_story = 0
        for i in range(n_feeds):
            self.items[i] = []
            self.add_items(i, 1)
        feed_tables = "".join(
            f'[[feeds]]\nurl = "{feeds.url(f"/f{i}.xml")}"\n\n' for i in range(n_feeds)
        )
        hook_tables = "".join(
            f'[[webhooks]]\nurl = "{h.url}"\nsecret_env = "FLEET_SECRET"\n\n' for h in hooks
        )
        self.config = tmp / "fleet.toml"
        self.config.write_text(
            f"""
[database]
url = "{db_url}"
[polling]
tick = "1s"
interval = "1s"
min_interval = "1s"
concurrency = 4
per_host_concurrency = 4
per_host_delay = 0.001
total_timeout = "{total_timeout_s}s"
[network]
allow_private_addresses = true
[matcher]
rules = "{RULES}"
[delivery]
tick = "1s"
timeout = "2s"
{feed_tables}
{hook_tables}
""",
            encoding="utf-8",
        )
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []

    # ------------------------------------------------------------ feeds

    def add_items(self, feed: int, count: int) -> None:
        for _ in range(count):
            self.items[feed].append(story(self.next_story))
            self.next_story += 1
        self.feeds.route(f"/f{feed}.xml", body=rss(self.items[feed]), delay_s=self.feed_delay_s)

    @property
    def item_count(self) -> int:
        return sum(len(v) for v in self.items.values())

    # ------------------------------------------------------------ processes

    def start(self, n: int, command: str = "worker") -> None:
        """Start ``n`` processes of ``command``: ``worker``, or ``run`` (scheduler and API in
        one, each on a free port of 127.0.0.1)."""
        for _ in range(n):
            log = self.tmp / f"{command}{len(self.procs)}.log"
            env = {**os.environ, "FLEET_SECRET": SECRET}
            if command == "run":
                env["DW_HTTP_PORT"] = str(free_port())
            with log.open("ab") as out:
                self.procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "service", "--config", str(self.config), command],
                        cwd=REPO,
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )
            self.logs.append(log)

    def logs_tail(self, chars: int = 3000) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-chars:]}" for p in self.logs)

    def assert_alive(self) -> None:
        for proc, log in zip(self.procs, self.logs, strict=True):
            if proc.returncode is None and proc.poll() is not None:
                raise AssertionError(f"{log.name} exited {proc.returncode}:\n{self.logs_tail()}")

    def kill_9(self, index: int) -> None:
        proc = self.procs[index]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    # ------------------------------------------------------------ the database

    def query(self, sql: str, **params: object) -> list[tuple[object, ...]]:
        engine = create_engine(self.db_url)
        try:
            with engine.connect() as conn:
                return [tuple(r) for r in conn.execute(text(sql), params)]
        finally:
            engine.dispose()

    def counts(self) -> tuple[int, int]:
        """(articles, hits) stored; zero before the workers created the schema."""
        try:
            (row,) = self.query(
                "SELECT (SELECT count(*) FROM articles), (SELECT count(*) FROM hits)"
            )
        except Exception:  # the schema is not there yet
            return 0, 0
        return int(str(row[0])), int(str(row[1]))

    def wait_until_stored_and_sent(self, timeout_s: float) -> None:
        """Until every served item is an article and a hit, and every hit reached every
        receiver."""
        deadline = time.monotonic() + timeout_s
        while True:
            self.assert_alive()
            articles, hits = self.counts()
            sent = [len(hits_by_receiver(h)) for h in self.hooks]
            if articles >= self.item_count and hits >= self.item_count and min(sent) >= hits:
                return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"articles {articles}, hits {hits}, sent {sent} of {self.item_count}\n"
                    + self.logs_tail()
                )
            time.sleep(0.25)

    # ------------------------------------------------------------ invariants

    def check_stored_once(self) -> None:
        guids = [str(r[0]) for r in self.query("SELECT guid FROM articles")]
        assert sorted(guids) == sorted(i["guid"] for v in self.items.values() for i in v)
        (row,) = self.query("SELECT count(*), count(DISTINCT story_id) FROM hits")
        assert row[0] == row[1] == self.item_count

    def check_sent_once(self) -> None:
        """Each hit reached each receiver under one webhook-id, and an id means one hit."""
        stored = {int(str(r[0])) for r in self.query("SELECT id FROM hits")}
        for hook in self.hooks:
            by_hit = hits_by_receiver(hook)
            assert set(by_hit) == stored
            assert all(len(ids) == 1 for ids in by_hit.values()), "a hit sent under two ids"
            ids = [next(iter(v)) for v in by_hit.values()]
            assert len(ids) == len(set(ids)), "one webhook-id for two hits"
        (row,) = self.query("SELECT count(*) FROM deliveries WHERE status = 'delivered'")
        assert row[0] == len(stored) * len(self.hooks)

    def check_polls_apart(self) -> None:
        """No feed was fetched twice within MIN_POLL_GAP_S: never by two workers at once."""
        starts: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for path, started, finished in list(self.feeds.timings):
            starts[path].append((started, finished))
        close = []
        for path, spans in starts.items():
            spans.sort()
            for (s1, f1), (s2, _) in zip(spans, spans[1:], strict=False):
                if s2 - s1 < MIN_POLL_GAP_S or s2 < f1:
                    close.append((path, round(s2 - s1, 3)))
        assert not close, f"feeds polled twice at once: {close[:10]}"


def hits_by_receiver(hook: WebhookReceiver) -> dict[int, set[str]]:
    out: dict[int, set[str]] = defaultdict(set)
    for headers, body in hook.delivered():
        out[int(json.loads(body)["data"]["id"])].add(headers["webhook-id"])
    return out
