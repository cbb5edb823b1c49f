"""Per-host politeness against real servers on 127.0.0.1: concurrency and spacing per host,
hosts independent of each other (issue 4)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from service.fetch import Fetcher, build_client
from service.politeness import HostGate, host_key
from service.types import FeedForUpdate, FetchStatus
from tests.servers import FeedServer

# Scheduling noise allowed on a loaded test machine (threads wake a little late, never early).
SLACK_S = 0.02


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    c = build_client("detainer-watch-test", 5, 5, 16)
    yield c
    c.close()


def fetch_all(fetcher: Fetcher, urls: list[str]) -> None:
    with ThreadPoolExecutor(max_workers=len(urls)) as pool:
        results = list(
            pool.map(lambda iu: fetcher.fetch(FeedForUpdate(iu[0], iu[1])), enumerate(urls))
        )
    assert all(r.status is FetchStatus.OK for r in results)


def max_overlap(timings: list[tuple[str, float, float]]) -> int:
    events = sorted([(s, 1) for _, s, _ in timings] + [(e, -1) for _, _, e in timings])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def test_per_host_concurrency_is_enforced(client: httpx.Client) -> None:
    with FeedServer() as srv:
        for i in range(6):
            srv.route(f"/f{i}.xml", body=b"<rss/>", delay_s=0.2)
        fetcher = Fetcher(client, 100_000, 5, host_gate=HostGate(2, 0.0))
        fetch_all(fetcher, [srv.url(f"/f{i}.xml") for i in range(6)])
        timings = srv.settled_timings(6)
        assert len(timings) == 6
        assert max_overlap(timings) == 2


def test_per_host_delay_spaces_request_starts(client: httpx.Client) -> None:
    delay = 0.15
    with FeedServer() as srv:
        for i in range(4):
            srv.route(f"/f{i}.xml", body=b"<rss/>")
        fetcher = Fetcher(client, 100_000, 5, host_gate=HostGate(4, delay))
        fetch_all(fetcher, [srv.url(f"/f{i}.xml") for i in range(4)])
        starts = sorted(started for _, started, _ in srv.settled_timings(4))
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert len(gaps) == 3 and min(gaps) >= delay - SLACK_S


def test_hosts_do_not_wait_for_each_other(client: httpx.Client) -> None:
    delay = 0.5
    with FeedServer() as one, FeedServer() as two:
        one.route("/a.xml", body=b"<rss/>")
        two.route("/b.xml", body=b"<rss/>")
        fetcher = Fetcher(client, 100_000, 5, host_gate=HostGate(1, delay))
        fetch_all(fetcher, [one.url("/a.xml"), two.url("/b.xml")])
        [(_, a, _)] = one.settled_timings(1)
        [(_, b, _)] = two.settled_timings(1)
    assert abs(a - b) < delay  # different host:port, so neither waited the delay


def test_host_key_includes_port_and_ignores_case() -> None:
    assert host_key("https://Example.ORG/feed") == "example.org"
    assert host_key("http://127.0.0.1:8080/a") == "127.0.0.1:8080"


def test_gate_rejects_bad_limits() -> None:
    with pytest.raises(ValueError, match="concurrency"):
        HostGate(0, 1.0)
    with pytest.raises(ValueError, match="delay_s"):
        HostGate(1, -1.0)
