"""Webhook benchmark: deliveries per second, and feed-item-to-webhook latency.

    .venv/bin/python bench/bench_webhooks.py [--hits 2000] [--latency-rounds 5]

1. Throughput: N hits with one pending delivery each in a SQLite database, one sender (one
   process, one thread, as the service runs it) draining the outbox into a receiver on
   127.0.0.1 that answers 200 at once. Prints deliveries/s.
2. Latency: the real service (`detainer-watch run`, a subprocess) polls a local feed every
   `interval`; the bench publishes a new detainer story on that feed and times its arrival
   at the receiver. Prints median and max against the poll interval.
Prints markdown tables for the README.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from service.alerts.sender import WebhookSender, build_webhook_client  # noqa: E402
from service.config import WebhookConfig  # noqa: E402
from service.storage import Storage, make_engine, migrate  # noqa: E402
from service.types import (  # noqa: E402
    Article,
    Evidence,
    FeedUpdate,
    FetchStatus,
    Jurisdiction,
    MatchResult,
    NewArticle,
)
from tests.conftest import free_port  # noqa: E402
from tests.receiver import WebhookReceiver  # noqa: E402
from tests.seedfeed import rss  # noqa: E402
from tests.servers import FeedServer  # noqa: E402

FILLER = (
    "harbor lantern orchard velvet granite meadow copper thistle lagoon saffron quartz "
    "bramble cinder willow falcon juniper marble nectar pebble raven sorrel tundra ember "
    "glacier hazel ivory jasper kelp lilac mosaic prairie canyon"
).split()
SECRET = "whsec_" + base64.b64encode(b"bench-secret-0123456789abcdef").decode()


RECEIVER = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


class ExternalReceiver:
    """A receiver in its own process, so its CPU does not count against the sender's."""

    def __enter__(self) -> ExternalReceiver:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}/hook"
        self.proc = subprocess.Popen([sys.executable, "-c", RECEIVER, str(port)])
        deadline = time.monotonic() + 10
        import socket

        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise SystemExit("receiver did not start")

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def throughput(n: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp, ExternalReceiver() as rec:
        engine = make_engine(f"sqlite:///{tmp}/b.db")
        migrate(engine)
        storage = Storage(engine)
        now = datetime.now(UTC)
        storage.sync_config_webhooks([WebhookConfig(url=rec.url, secret=SECRET)], now)
        feed, _ = storage.add_feed("https://bench.example/rss", now)
        m = MatchResult(
            True,
            0.9,
            ("detainer",),
            "detainer_declined",
            (Jurisdiction("Boston", "city", "MA"),),
            (),
            (Evidence("title", "x", 0, 1, ()),),
            "bench",
        )
        items = [
            NewArticle(
                Article(
                    url=f"https://bench.example/{i}",
                    guid=str(i),
                    title=f"Story {i}",
                    summary="s " * 60,
                    text="",
                    published_at=now,
                    source="Bench",
                    content_hash=f"h{i}",
                ),
                m,
            )
            for i in range(n)
        ]
        upd = FeedUpdate(
            feed_id=feed.id,
            checked_at=now,
            status=FetchStatus.OK,
            http_status=200,
            error=None,
            error_count=0,
            next_check_at=now,
        )
        storage.record_poll(upd, items, now)
        client = build_webhook_client(10, "bench")
        sender = WebhookSender(
            storage, client, 10, lambda: datetime.now(UTC), random.Random(0), batch=100
        )
        t0 = time.perf_counter()
        cpu0 = time.process_time()
        sent = 0
        while sent < n:
            sent += sender.tick().delivered
        wall = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        client.close()
        storage.close()
        assert len(storage.list_deliveries("delivered", limit=n + 1)) == n
        return n / wall, cpu / n * 1000


def latency(rounds: int, interval: float) -> list[float]:
    out = []
    with FeedServer() as feeds, WebhookReceiver() as rec, tempfile.TemporaryDirectory() as tmp:
        items: list[dict[str, str]] = []
        feeds.route("/feed.xml", body=rss(items))
        config = Path(tmp) / "c.toml"
        config.write_text(f"""
[database]
url = "sqlite:///{tmp}/l.db"
[http]
port = {free_port()}
[polling]
interval = {interval}
min_interval = {interval}
max_interval = {interval}
tick = 0.5
per_host_delay = 0.01
[network]
allow_private_addresses = true
[matcher]
rules = "{REPO / "config/rules/detainer-sanctuary.toml"}"
[delivery]
tick = "1s"
[logging]
level = "INFO"
[[feeds]]
url = "{feeds.url("/feed.xml")}"
[[webhooks]]
url = "{rec.url}"
secret = "{SECRET}"
""")
        proc = subprocess.Popen(
            [sys.executable, "-m", "service", "--config", str(config), "run"],
            cwd=REPO,
            stdout=open(Path(tmp) / "log", "wb"),
            stderr=subprocess.STDOUT,
            env={**os.environ},
        )
        try:
            time.sleep(3)
            for i in range(rounds):
                items.append(
                    {
                        "title": f"Sheriff in county {i} declines {i + 2} ICE detainer requests",
                        "link": f"https://lat.example/{i}",
                        # Unrelated filler keeps rounds from being near-duplicates of each other.
                        "description": "The jail released people despite immigration detainers "
                        "under the sanctuary policy. " + " ".join(random.sample(FILLER, 25)),
                    }
                )
                feeds.route("/feed.xml", body=rss(items))
                t0 = time.monotonic()
                while len(rec.delivered()) <= i:
                    time.sleep(0.01)
                    if time.monotonic() - t0 > interval * 3 + 10:
                        raise SystemExit(
                            "no webhook arrived:\n" + (Path(tmp) / "log").read_text()[-3000:]
                        )
                out.append(time.monotonic() - t0)
                time.sleep(random.uniform(0, interval))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        assert [json.loads(b)["data"]["url"] for _, b in rec.delivered()] == [
            it["link"] for it in items
        ]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hits", type=int, default=2000)
    ap.add_argument("--latency-rounds", type=int, default=5)
    ap.add_argument("--interval", type=float, default=5.0)
    args = ap.parse_args()
    rate, cpu_ms = throughput(args.hits)
    print("| measure | value | target |\n|---|---|---|")
    print(f"| deliveries/s, one sender, {args.hits} hits | {rate:.0f} | ≥ 200 |")
    print(f"| sender CPU per delivery | {cpu_ms:.2f} ms | |")
    lat = latency(args.latency_rounds, args.interval)
    print(
        f"| item-to-webhook latency, median (poll interval {args.interval:.0f} s) | "
        f"{statistics.median(lat):.2f} s | ≤ interval + 2 s |"
    )
    print(f"| item-to-webhook latency, max | {max(lat):.2f} s | ≤ {args.interval + 2:.0f} s |")
    threading.Event().wait(0)


if __name__ == "__main__":
    main()
