"""kill -9 the running service mid-poll and mid-delivery; after a restart nothing is lost.

Every hit is delivered at least once, a webhook-id never stands for two hits, and a hit
never arrives under two different ids.
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
from collections import defaultdict
from pathlib import Path

import pytest

from tests.conftest import REPO, RULES, free_port
from tests.receiver import WebhookReceiver
from tests.seedfeed import rss
from tests.servers import FeedServer

pytestmark = pytest.mark.e2e

SECRET = "whsec_" + base64.b64encode(b"crash-test-secret-0123456789").decode()
CITIES = [
    "Boston",
    "Chicago",
    "Denver",
    "Seattle",
    "Newark",
    "Philadelphia",
    "Austin",
    "Minneapolis",
    "Portland",
    "Oakland",
    "Baltimore",
    "Milwaukee",
]
FILLER = (
    "harbor lantern orchard velvet granite meadow copper thistle lagoon saffron quartz "
    "bramble cinder willow falcon juniper marble nectar pebble raven sorrel tundra ember "
    "glacier hazel ivory jasper kelp lilac mosaic"
).split()


def story(n: int, city: str) -> dict[str, str]:
    """A distinct detainer story per city, with unrelated filler so no two are near-copies."""
    rng = random.Random(n)
    filler = " ".join(rng.sample(FILLER, 20))
    return {
        "title": f"{city} police declined {n + 3} immigration detainer requests from ICE",
        "link": f"https://news{n}.example/{city.lower()}-detainers",
        "description": f"The {city} police department said it did not honor ICE detainer "
        f"requests last year under the city's sanctuary ordinance. {filler}.",
    }


def start(config: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CRASH_SECRET": SECRET}
    env.pop("DW_API_TOKEN", None)
    with log.open("ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "service", "--config", str(config), "run"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def test_kill_9_mid_poll_and_mid_delivery_loses_nothing(tmp_path: Path) -> None:
    with FeedServer() as feeds, WebhookReceiver(delay_s=0.3) as hooks:
        for i, city in enumerate(CITIES):
            feeds.route(f"/f{i}.xml", body=rss([story(i, city)]), delay_s=0.05 * i)
        tables = "".join(
            f'[[feeds]]\nurl = "{feeds.url(f"/f{i}.xml")}"\n\n' for i in range(len(CITIES))
        )
        config = tmp_path / "c.toml"
        config.write_text(
            f"""
[database]
url = "sqlite:///{tmp_path / "dw.db"}"
[http]
port = {free_port()}
[polling]
tick = "1s"
concurrency = 2
per_host_delay = 0.01
per_host_concurrency = 2
# Feed leases last 3 x total_timeout: a killed process's feeds are polled again after 15 s.
total_timeout = "5s"
[network]
allow_private_addresses = true
[matcher]
rules = "{RULES}"
[delivery]
tick = "1s"
timeout = "2s"
{tables}
[[webhooks]]
url = "{hooks.url}"
secret_env = "CRASH_SECRET"
""",
            encoding="utf-8",
        )
        log = tmp_path / "service.log"
        proc = start(config, log)
        try:
            deadline = time.monotonic() + 60
            while len(hooks.received) < 2:  # deliveries are flowing (and some are in flight)
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                assert proc.poll() is None, log.read_text()[-3000:]
                time.sleep(0.05)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            before = len(hooks.received)
            proc = start(config, log)
            deadline = time.monotonic() + 90
            while len({json.loads(b)["data"]["title"] for _, b in hooks.delivered()}) < len(CITIES):
                assert time.monotonic() < deadline, log.read_text()[-4000:]
                assert proc.poll() is None, log.read_text()[-3000:]
                time.sleep(0.2)
            time.sleep(2)  # let any duplicate in flight arrive before we count
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()

        ids_by_title: dict[str, set[str]] = defaultdict(set)
        titles_by_id: dict[str, set[str]] = defaultdict(set)
        for headers, body in hooks.delivered():
            title = json.loads(body)["data"]["title"]
            ids_by_title[title].add(headers["webhook-id"])
            titles_by_id[headers["webhook-id"]].add(title)
    assert before >= 2
    assert len(ids_by_title) == len(CITIES)  # every hit delivered at least once
    assert all(len(ids) == 1 for ids in ids_by_title.values())  # one id per hit
    assert all(len(titles) == 1 for titles in titles_by_id.values())  # one hit per id
