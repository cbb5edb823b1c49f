"""``GET /metrics`` of a running service: ``detainer-watch run`` as a subprocess polls real
feeds from a FeedServer, sends a webhook to a WebhookReceiver, and the counters its scheduler
fed show up beside the database gauges in the Prometheus text the app serves."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from service.metrics import ServiceMetrics
from service.types import FetchStatus, PollReport
from tests.conftest import REPO, RULES, free_port
from tests.receiver import WebhookReceiver
from tests.seedfeed import seed_feed
from tests.servers import FeedServer
from tests.test_cli import dw
from tests.test_e2e import wait_for

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    """Every sample of a Prometheus text page, by (name, labels)."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(page: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels`` (a PromQL selector)."""
    want = set(labels.items())
    return sum(v for (n, ls), v in page.items() if n == name and want <= ls)


@pytest.fixture(params=["run", "worker"])
def service(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[str, FeedServer, subprocess.Popen[bytes]]]:
    # run: /metrics of its API; worker (no API): its own http.worker_metrics_port.
    command: str = request.param
    with FeedServer() as feeds, WebhookReceiver() as hooks:
        feeds.route("/seed.xml", body=seed_feed(), headers={"content-type": "application/rss+xml"})
        feeds.route("/broken-500.xml", status=500, body=b"oops")
        feeds.drop("/no-answer.xml")
        port = free_port()
        feed_tables = "".join(
            f'[[feeds]]\nurl = "{feeds.url(p)}"\ninterval = "2s"\n\n'
            for p in ("/seed.xml", "/broken-500.xml", "/no-answer.xml")
        )
        config = tmp_path / "detainer-watch.toml"
        config.write_text(
            f"""
[database]
url = "sqlite:///{tmp_path / "dw.db"}"
[http]
host = "127.0.0.1"
port = {port if command == "run" else free_port()}
worker_metrics_port = {port if command == "worker" else 0}
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

{feed_tables}
[[webhooks]]
url = "{hooks.url}"
secret = "whsec_bWV0cmljcy10ZXN0LXNlY3JldC0wMTIzNDU2"
""",
            encoding="utf-8",
        )
        env = {k: v for k, v in os.environ.items() if k not in ("DW_API_TOKEN", "DW_CONFIG")}
        with (tmp_path / "service.log").open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "service", "--config", str(config), command],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                yield f"http://127.0.0.1:{port}", feeds, proc
            finally:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()


def scrape(api: str) -> Samples | None:
    try:
        r = httpx.get(f"{api}/metrics", timeout=5)
    except httpx.HTTPError:
        return None
    return samples(r.text) if r.status_code == 200 else None


@pytest.mark.e2e
def test_metrics_of_a_running_service_count_its_polls_hits_and_deliveries(
    service: tuple[str, FeedServer, subprocess.Popen[bytes]],
) -> None:
    api, feeds, proc = service

    def delivered() -> Samples | None:
        page = scrape(api)
        ok = page and value(page, "dw_delivery_attempts_total", result="delivered") >= 1
        return page if ok else None

    wait_for("a delivered webhook counted on /metrics", delivered, proc=proc)
    # Each feed has been polled, the failing ones too (their counts come with the same pass).
    wait_for(
        "every feed polled",
        lambda: all(feeds.count(p) for p in ("/seed.xml", "/broken-500.xml", "/no-answer.xml")),
        proc=proc,
    )
    page = wait_for(
        "the failing polls counted",
        lambda: (p := scrape(api)) and value(p, "dw_poll_errors_total") >= 2 and p,
        proc=proc,
    )

    assert value(page, "dw_polls_total", status="200") >= 1
    assert value(page, "dw_polls_total", status="200", result="ok") >= 1
    assert value(page, "dw_polls_total", status="500", result="error") >= 1
    assert value(page, "dw_polls_total", status="none", result="error") >= 1
    assert value(page, "dw_new_articles_total") > 0
    assert value(page, "dw_hits_created_total") >= 1
    assert value(page, "dw_delivery_attempts_total", result="delivered") >= 1
    assert value(page, "dw_poll_duration_seconds_count") >= 3
    assert value(page, "dw_poll_duration_seconds_sum") > 0
    assert value(page, "dw_delivery_duration_seconds_count") >= 1
    if proc.args[-1] == "worker":  # type: ignore[index]
        # A worker serves its own counters only; the database gauges are the API's.
        assert not any(name == "dw_hits" for name, _ in page)
        return
    # The database gauges beside them, counted at scrape time.
    assert value(page, "dw_hits") >= 1 and value(page, "dw_articles") >= 1
    assert value(page, "dw_deliveries", status="delivered") >= 1
    assert value(page, "dw_feeds") == 3


def test_polls_count_by_http_status_and_result() -> None:
    metrics = ServiceMetrics()
    metrics.observe_polls(
        [
            PollReport("https://a.example/rss", FetchStatus.OK, 200, 4, 2, None, 0.2),
            PollReport("https://a.example/rss", FetchStatus.NOT_MODIFIED, 304, 0, 0, None, 0.01),
            PollReport("https://b.example/rss", FetchStatus.ERROR, 200, 0, 0, "malformed", 0.1),
            PollReport("https://c.example/rss", FetchStatus.ERROR, None, 0, 0, "timeout", 30.0),
        ]
    )
    metrics.observe_deliveries(2, 1, 0, [0.02, 0.03, 4.0])
    page = samples(generate_latest(metrics.registry).decode())
    assert value(page, "dw_polls_total", status="200", result="ok") == 1
    assert value(page, "dw_polls_total", status="200", result="error") == 1
    assert value(page, "dw_polls_total", status="304", result="not_modified") == 1
    assert value(page, "dw_polls_total", status="none", result="error") == 1
    assert value(page, "dw_poll_errors_total") == 2
    assert value(page, "dw_new_articles_total") == 4 and value(page, "dw_hits_created_total") == 2
    assert value(page, "dw_poll_duration_seconds_bucket", le="0.05") == 1
    assert value(page, "dw_poll_duration_seconds_bucket", le="+Inf") == 4
    assert value(page, "dw_delivery_attempts_total", result="delivered") == 2
    assert value(page, "dw_delivery_attempts_total", result="retried") == 1
    assert value(page, "dw_delivery_duration_seconds_count") == 3
    assert value(page, "dw_delivery_duration_seconds_bucket", le="0.025") == 1
    assert value(page, "dw_delivery_duration_seconds_bucket", le="2.5") == 2


def test_worker_metrics_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "detainer-watch.toml"
        config.write_text(
            f'[database]\nurl = "sqlite:///{tmp_path / "dw.db"}"\n'
            f'[http]\nhost = "127.0.0.1"\nworker_metrics_port = {port}\n'
            f'[matcher]\nrules = "{RULES}"\n',
            encoding="utf-8",
        )
        done = dw("worker", config=config)
    assert done.returncode == 1
    assert f"http.worker_metrics_port: cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "choose a free port" in done.stderr
