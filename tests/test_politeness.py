"""Per-host politeness against real servers on 127.0.0.1: concurrency and spacing per host,
hosts independent of each other, waits that end when the poller is told to stop (issue 4)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from service.fetch import Fetcher, build_client, utc_now
from service.match import Matcher
from service.pipeline import Poller, PollSettings
from service.politeness import HostGate, Stopped, host_key
from service.storage import Storage
from service.types import FeedForUpdate, FetchStatus, PollReport
from tests.conftest import RULES
from tests.seedfeed import other_items, rss
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


# ------------------------------------------------------------ stopping while waiting

# A wait no test may sit out: were a stop not to end it, the test's join would time out.
LONG_WAIT_S = 120.0
JOIN_S = 15.0


def fetch_or_stop(fetcher: Fetcher, url: str, stop: threading.Event, said: list[str]) -> None:
    """Fetch ``url`` (a thread's target), saying in ``said`` whether it was fetched or
    stopped while it waited for its host."""
    try:
        fetcher.fetch(FeedForUpdate(2, url), stop)
        said.append("fetched")
    except Stopped:
        said.append("stopped")


def test_a_stop_ends_the_wait_for_the_hosts_turn(client: httpx.Client) -> None:
    with FeedServer() as srv:
        srv.route("/a.xml", body=b"<rss/>")
        srv.route("/b.xml", body=b"<rss/>")
        fetcher = Fetcher(client, 100_000, 5, host_gate=HostGate(2, LONG_WAIT_S))
        stop = threading.Event()
        assert fetcher.fetch(FeedForUpdate(1, srv.url("/a.xml")), stop).status is FetchStatus.OK
        outcome: list[str] = []
        waiting = threading.Thread(
            target=fetch_or_stop, args=(fetcher, srv.url("/b.xml"), stop, outcome), daemon=True
        )
        waiting.start()
        time.sleep(0.1)  # into its wait for /b.xml's turn, two minutes after /a.xml
        stop.set()
        waiting.join(JOIN_S)
        assert not waiting.is_alive() and outcome == ["stopped"]
        assert srv.count("/b.xml") == 0  # nothing was sent


def test_a_stop_ends_the_wait_for_a_busy_hosts_slot_and_not_the_request_holding_it(
    client: httpx.Client,
) -> None:
    with FeedServer() as srv:
        srv.route("/slow.xml", body=b"<rss/>", delay_s=1.5)
        srv.route("/b.xml", body=b"<rss/>")
        fetcher = Fetcher(client, 100_000, 10, host_gate=HostGate(1, 0.0))
        stop = threading.Event()
        events: list[str] = []

        def slow() -> None:
            result = fetcher.fetch(FeedForUpdate(1, srv.url("/slow.xml")), stop)
            events.append(f"slow answered {result.status.value}")

        threads = [
            threading.Thread(target=slow, daemon=True),
            threading.Thread(
                target=fetch_or_stop, args=(fetcher, srv.url("/b.xml"), stop, events), daemon=True
            ),
        ]
        threads[0].start()
        time.sleep(0.2)  # /slow.xml holds the host's one slot
        threads[1].start()
        time.sleep(0.1)
        stop.set()
        for t in threads:
            t.join(JOIN_S)
        assert events == ["stopped", f"slow answered {FetchStatus.OK.value}"]
        assert srv.count("/b.xml") == 0


def test_a_stop_set_before_the_turn_sends_nothing(client: httpx.Client) -> None:
    with FeedServer() as srv:
        srv.route("/a.xml", body=b"<rss/>")
        fetcher = Fetcher(client, 100_000, 5, host_gate=HostGate(1, 0.0))
        stop = threading.Event()
        stop.set()
        with pytest.raises(Stopped):
            fetcher.fetch(FeedForUpdate(1, srv.url("/a.xml")), stop)
        assert srv.count("/a.xml") == 0
        # Without a stop event the gate only ever delays.
        assert fetcher.fetch(FeedForUpdate(1, srv.url("/a.xml"))).status is FetchStatus.OK


def test_a_poller_told_to_stop_gives_back_the_feeds_waiting_for_their_host(
    storage: Storage, client: httpx.Client
) -> None:
    """SIGTERM during a pass over one host's feeds, spaced two minutes apart: the pass ends
    without sitting out the spacing, stores the feed it fetched, and records nothing on the
    feeds it did not fetch, whose leases go back for the next worker."""
    with FeedServer() as srv:
        urls = [srv.url(f"/f{i}.xml") for i in range(4)]
        for i, url in enumerate(urls):
            srv.route(f"/f{i}.xml", body=rss(other_items(2), title=f"Feed {i}"))
            storage.add_feed(url, utc_now())
        poller = Poller(
            storage,
            Fetcher(client, 1_000_000, 10, host_gate=HostGate(1, LONG_WAIT_S)),
            Matcher.load(RULES),
            PollSettings(
                interval_s=600,
                min_interval_s=60,
                max_interval_s=3600,
                concurrency=4,
                disable_after_s=86400,
                disable_after_errors=3,
            ),
            utc_now,
            random.Random(0),
            worker_id="stopping-worker",
        )
        reports: list[PollReport] = []
        polling = threading.Thread(target=lambda: reports.extend(poller.poll()), daemon=True)
        polling.start()
        deadline = time.monotonic() + JOIN_S
        while not any(f.last_checked_at for f in storage.list_feeds()):
            assert time.monotonic() < deadline, "the first feed was never stored"
            time.sleep(0.02)
        poller.stopping.set()
        polling.join(JOIN_S)
        assert not polling.is_alive()

        assert len(srv.requests) == 1
        [stored] = [f for f in storage.list_feeds() if f.last_checked_at]
        assert [r.feed_url for r in reports] == [stored.url]
        assert reports[0].error is None and reports[0].new_items == 2
        waiting = [f for f in storage.list_feeds() if f.url != stored.url]
        assert len(waiting) == 3
        assert all(f.error_count == 0 and f.last_error is None for f in waiting)
        assert storage.release_feeds("stopping-worker") == 3
