"""End to end: ``detainer-watch run`` as a real subprocess against real local servers.

A FeedServer on 127.0.0.1 serves the seed story, real feeds from ../shared/feeds (when
present), a feed answering 500 and one with malformed XML; a WebhookReceiver verifies the
signed webhook with the ``standardwebhooks`` package; the API is read over HTTP.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from service.cpus import allowed_cpus
from tests.conftest import REPO, RULES, SHARED, free_port
from tests.procs import descendants
from tests.receiver import WebhookReceiver
from tests.seedfeed import SEED_URL, seed_feed, seed_parts
from tests.servers import FeedServer

pytestmark = pytest.mark.e2e

SECRET = "whsec_" + base64.b64encode(b"e2e-test-secret-0123456789").decode()
SHARED_FEEDS = (
    "npr-news-2023-11-24.xml",
    "bbc-news-frontpage-2023-11-24.xml",
    "nytimes-homepage-2017-01-07.xml",
)
# Truncated mid-item: feedparser recovers the item, and the feed shows the problem.
TRUNCATED = (
    b'<?xml version="1.0"?><rss version="2.0"><channel><title>Cut</title><item>'
    b"<title>half an item</title><description>text & more <b>unclosed"
)
# Not XML at all: nothing to recover, an error on the feed with backoff.
MALFORMED = b"<rss><<<>>>not xml at all &&&"


def wait_for(
    what: str,
    check: Callable[[], Any],
    timeout: float = 40.0,
    proc: subprocess.Popen[bytes] | None = None,
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"service exited ({proc.returncode}) while waiting for {what}")
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def world(tmp_path: Path) -> Iterator[dict[str, Any]]:
    with FeedServer() as feeds, WebhookReceiver() as hooks:
        feeds.route(
            "/seed.xml",
            body=seed_feed(),
            etag='"seed-v1"',
            last_modified="Thu, 23 Jan 2025 16:00:00 GMT",
            headers={"content-type": "application/rss+xml"},
        )
        feeds.route("/broken-500.xml", status=500, body=b"oops")
        feeds.route("/malformed.xml", body=MALFORMED, headers={"content-type": "application/xml"})
        feeds.route("/truncated.xml", body=TRUNCATED, headers={"content-type": "application/xml"})
        paths = ["/seed.xml", "/broken-500.xml", "/malformed.xml", "/truncated.xml"]
        for name in SHARED_FEEDS:
            path = SHARED / "feeds" / name
            if path.exists():
                feeds.route(
                    f"/shared/{name}",
                    body=path.read_bytes(),
                    etag=f'"{name}"',
                    headers={"content-type": "application/rss+xml"},
                )
                paths.append(f"/shared/{name}")
        port = free_port()
        feed_tables = "".join(
            f'[[feeds]]\nurl = "{feeds.url(p)}"\ninterval = "2s"\n\n' for p in paths
        )
        config = tmp_path / "detainer-watch.toml"
        config.write_text(
            f"""
[database]
url = "sqlite:///{tmp_path / "dw.db"}"
[http]
host = "127.0.0.1"
port = {port}
[polling]
interval = "2s"
min_interval = "1s"
max_interval = "3s"
tick = "1s"
[network]
allow_private_addresses = true
[matcher]
rules = "{RULES}"
[delivery]
tick = "1s"
[logging]
level = "INFO"

{feed_tables}
[[webhooks]]
url = "{hooks.url}"
secret_env = "E2E_WEBHOOK_SECRET"
""",
            encoding="utf-8",
        )
        env = {**os.environ, "E2E_WEBHOOK_SECRET": SECRET}
        env.pop("DW_API_TOKEN", None)
        log = (tmp_path / "service.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "service", "--config", str(config), "run"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield {
                "proc": proc,
                "feeds": feeds,
                "hooks": hooks,
                "paths": paths,
                "api": f"http://127.0.0.1:{port}",
                "log": tmp_path / "service.log",
            }
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
            log.close()


def _get(url: str) -> Any:
    try:
        r = httpx.get(url, timeout=5)
    except httpx.HTTPError:
        return None
    return r.json() if r.status_code == 200 else None


def _check_cpus(pid: int) -> None:
    """``polling.pin_poller`` (on by default): every thread of the service on one CPU, its
    parse processes (the processes below it) on every CPU this test may use."""
    allowed = allowed_cpus() or frozenset()
    if len(allowed) < 2 or not Path(f"/proc/{pid}/task").is_dir():
        return  # nothing is pinned with one CPU, nor off Linux
    threads = {frozenset(os.sched_getaffinity(int(t))) for t in os.listdir(f"/proc/{pid}/task")}
    assert len(threads) == 1 and len(next(iter(threads))) == 1, threads
    workers = descendants(pid)
    assert workers, "no parse worker started"
    assert all(os.sched_getaffinity(w) == allowed for w in workers)


def test_run_polls_flags_stores_signs_and_serves(world: dict[str, Any]) -> None:
    proc, feeds, hooks, api = world["proc"], world["feeds"], world["hooks"], world["api"]
    try:
        wait_for("/healthz", lambda: _get(f"{api}/healthz"), proc=proc)

        # One signed webhook for the seed story, verified by the standardwebhooks package.
        delivered = wait_for("a webhook", hooks.delivered, proc=proc)
        headers, body = delivered[0]
        payload = Webhook(SECRET).verify(body, headers)
        assert payload["type"] == "hit.created"
        hit = payload["data"]
        title, _, _ = seed_parts()
        assert hit["title"] == title
        assert hit["url"] == SEED_URL

        _check_cpus(proc.pid)

        # The API serves the same hit, with evidence.
        hits = _get(f"{api}/api/v1/hits")
        seed_hits = [h for h in hits["items"] if h["url"] == SEED_URL]
        assert len(seed_hits) == 1
        served = seed_hits[0]
        assert served["id"] == hit["id"]
        assert {"detainer", "sanctuary"} <= set(served["topics"])
        assert any(j["name"] == "Boston" and j["state"] == "MA" for j in served["jurisdictions"])
        assert served["evidence"] and all(e["sentence"] for e in served["evidence"])
        assert _get(f"{api}/api/v1/hits/{hit['id']}")["title"] == title

        # The next polls of the unchanged feeds are conditional and answered 304.
        wait_for(
            "a 304 for the seed feed", lambda: feeds.count("/seed.xml", status=304) >= 1, proc=proc
        )
        for path in world["paths"]:
            if path.startswith("/shared/"):
                wait_for(
                    f"a 304 for {path}", lambda p=path: feeds.count(p, status=304) >= 1, proc=proc
                )

        # Broken feeds are recorded as errors; the others were processed.
        by_url = {f["url"]: f for f in _get(f"{api}/api/v1/feeds")["items"]}
        broken = by_url[feeds.url("/broken-500.xml")]
        assert broken["error_count"] >= 1 and "500" in broken["last_error"]
        assert broken["next_check_at"]
        malformed = by_url[feeds.url("/malformed.xml")]
        assert malformed["error_count"] >= 1 and "malformed" in malformed["last_error"]
        truncated = by_url[feeds.url("/truncated.xml")]
        assert truncated["error_count"] == 0 and "1 entry recovered" in truncated["last_error"]
        for path in world["paths"]:
            if path == "/seed.xml" or path.startswith("/shared/"):
                f = by_url[feeds.url(path)]
                assert f["last_error"] is None and f["error_count"] == 0, f

        # Still exactly one hit and one delivery for the seed story after more polls.
        assert len([h for h in _get(f"{api}/api/v1/hits")["items"] if h["url"] == SEED_URL]) == 1
        assert len(hooks.delivered()) == 1
    except AssertionError:
        sys.stderr.write(world["log"].read_text(errors="replace")[-5000:])
        raise

    # SIGHUP reloads the rules without a restart.
    proc.send_signal(signal.SIGHUP)
    wait_for("the rules reload", lambda: "rules reloaded" in world["log"].read_text(), proc=proc)

    # Ctrl-C stops it cleanly.
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0
    assert "stopped" in world["log"].read_text()


def test_cli_poll_and_hits_against_local_feed(tmp_path: Path) -> None:
    """`poll` then `hits --format json` from the command line, as a user's script would."""
    with FeedServer() as feeds:
        feeds.route("/seed.xml", body=seed_feed(), etag='"v1"')
        config = tmp_path / "c.toml"
        config.write_text(
            f"""
[database]
url = "sqlite:///{tmp_path / "dw.db"}"
[network]
allow_private_addresses = true
[matcher]
rules = "{RULES}"
[[feeds]]
url = "{feeds.url("/seed.xml")}"
""",
            encoding="utf-8",
        )
        run = [sys.executable, "-m", "service", "--config", str(config)]
        out = subprocess.run(
            [*run, "poll"], capture_output=True, text=True, cwd=REPO, check=True, timeout=60
        )
        assert "1 feeds polled" in out.stdout and "hits=1" in out.stdout, out
        again = subprocess.run(
            [*run, "poll", "--all"],
            capture_output=True,
            text=True,
            cwd=REPO,
            check=True,
            timeout=60,
        )
        assert "not_modified 304" in again.stdout, again.stdout
        hits = subprocess.run(
            [*run, "hits", "--format", "json"],
            capture_output=True,
            text=True,
            cwd=REPO,
            check=True,
            timeout=60,
        )
        rows = [json.loads(line) for line in hits.stdout.splitlines()]
        assert len(rows) == 1 and rows[0]["url"] == SEED_URL
