"""Polling discipline against a real HTTP server on 127.0.0.1: lying validators,
Retry-After, cache lifetimes, the adaptive interval, disabling dead feeds, and permanent
redirects (issue 4)."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest

import service.parse_worker
from service.fetch import Fetcher, build_client
from service.match import Matcher
from service.normalize import MAX_FEED_URL_BYTES
from service.pipeline import Poller, PollSettings
from service.storage import Storage
from service.types import FeedRecord, FetchStatus
from tests.conftest import RULES
from tests.seedfeed import other_items, rss
from tests.servers import FeedServer

T0 = datetime(2025, 1, 23, 15, 0, tzinfo=UTC)
INTERVAL = 600.0
JITTER = 0.10


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture(scope="module")
def matcher() -> Matcher:
    return Matcher.load(RULES)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def poller(storage: Storage, matcher: Matcher, clock: Clock) -> Iterator[Poller]:
    client = build_client("detainer-watch-test", 5, 5, 4)
    yield Poller(
        storage,
        Fetcher(client, 1_000_000, 10, clock=clock),
        matcher,
        PollSettings(
            interval_s=INTERVAL,
            min_interval_s=60,
            max_interval_s=3600,
            concurrency=4,
            disable_after_s=2 * 86400,
            disable_after_errors=3,
        ),
        clock,
        random.Random(0),
    )
    client.close()


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer() as srv:
        yield srv


def items(*numbers: int) -> list[dict[str, str]]:
    return [
        {
            "title": f"Parks committee meeting number {i}",
            "link": f"https://example.org/parks-{i}",
            "description": "The parks committee will meet on Tuesday.",
        }
        for i in numbers
    ]


def feed_of(storage: Storage, url: str) -> FeedRecord:
    feed = storage.get_feed(url)
    assert feed is not None
    return feed


def poll_one(poller: Poller, storage: Storage, url: str) -> Any:
    [report] = poller.poll([feed_of(storage, url)])
    return report


def delay_s(feed: FeedRecord, now: datetime) -> float:
    assert feed.next_check_at is not None
    return (feed.next_check_at - now).total_seconds()


# ------------------------------------------------------------ validators that lie


def test_same_etag_with_a_changed_body_is_parsed(
    storage: Storage, poller: Poller, server: FeedServer, clock: Clock
) -> None:
    # The server sends the same ETag whatever the content and ignores If-None-Match.
    server.route("/lying.xml", body=rss(items(1, 2)), headers={"ETag": '"same"'})
    storage.add_feed(server.url("/lying.xml"), T0)
    assert poll_one(poller, storage, server.url("/lying.xml")).new_items == 2

    server.route("/lying.xml", body=rss(items(1, 2, 3)), headers={"ETag": '"same"'})
    clock.advance(INTERVAL)
    report = poll_one(poller, storage, server.url("/lying.xml"))
    assert server.requests[-1][1]["if-none-match"] == '"same"'
    assert report.status is FetchStatus.OK and report.new_items == 1


def test_same_body_with_a_new_etag_is_not_parsed(
    storage: Storage,
    poller: Poller,
    server: FeedServer,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    body = rss(items(1, 2))
    server.route("/churn.xml", body=body, headers={"ETag": '"v1"'})
    storage.add_feed(server.url("/churn.xml"), T0)
    poll_one(poller, storage, server.url("/churn.xml"))

    parsed: list[bytes] = []
    real_parse = service.parse_worker.parse_feed

    def counting_parse(data: bytes, *args: Any) -> Any:
        parsed.append(data)
        return real_parse(data, *args)

    monkeypatch.setattr(service.parse_worker, "parse_feed", counting_parse)
    server.route("/churn.xml", body=body, headers={"ETag": '"v2"'})
    clock.advance(INTERVAL)
    report = poll_one(poller, storage, server.url("/churn.xml"))
    assert report.http_status == 200 and report.new_items == 0
    assert parsed == []
    assert feed_of(storage, server.url("/churn.xml")).etag == '"v2"'


# ------------------------------------------------------------ Retry-After and cache lifetimes


def test_429_retry_after_seconds_sets_the_next_check(
    storage: Storage, poller: Poller, server: FeedServer
) -> None:
    server.route("/busy.xml", status=429, headers={"Retry-After": "7200"})
    storage.add_feed(server.url("/busy.xml"), T0)
    poll_one(poller, storage, server.url("/busy.xml"))
    feed = feed_of(storage, server.url("/busy.xml"))
    assert feed.error_count == 1 and feed.last_http_status == 429
    assert 7200 <= delay_s(feed, T0) <= 7200 * (1 + JITTER)


def test_503_retry_after_http_date_sets_the_next_check(
    storage: Storage, poller: Poller, server: FeedServer
) -> None:
    when = T0 + timedelta(hours=3)
    server.route("/down.xml", status=503, headers={"Retry-After": format_datetime(when, True)})
    storage.add_feed(server.url("/down.xml"), T0)
    poll_one(poller, storage, server.url("/down.xml"))
    assert 3 * 3600 <= delay_s(feed_of(storage, server.url("/down.xml")), T0) <= 3 * 3600 * 1.1


def _expires_in(seconds: int) -> dict[str, str]:
    """An ``Expires`` header ``seconds`` from now (real time: the server's Date is too)."""
    when = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=seconds)
    return {"Expires": format_datetime(when, True)}


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (lambda: {"Cache-Control": "public, max-age=2400"}, 2400.0),
        # Expires is measured from the server's Date (real time here), not our clock (T0);
        # made when the test runs, not at collection, which may be minutes before.
        (lambda: _expires_in(1800), 1800.0),
        (lambda: {"Cache-Control": "max-age=86400"}, 3600.0),  # clamped to max_interval
        (lambda: {"Cache-Control": "max-age=30"}, INTERVAL),  # never shortens
        (lambda: {"Cache-Control": "no-cache, max-age=2400"}, INTERVAL),
    ],
    ids=["max-age", "expires", "max-age-clamped", "max-age-shorter", "no-cache"],
)
def test_cache_lifetime_lengthens_the_interval(
    storage: Storage,
    poller: Poller,
    server: FeedServer,
    headers: Callable[[], dict[str, str]],
    expected: float,
) -> None:
    server.route("/cached.xml", body=rss(items(1)), headers=headers())
    storage.add_feed(server.url("/cached.xml"), T0)
    poll_one(poller, storage, server.url("/cached.xml"))
    seconds = delay_s(feed_of(storage, server.url("/cached.xml")), T0)
    # A second either way: HTTP dates have whole seconds.
    assert (expected - 1) * (1 - JITTER) <= seconds <= (expected + 1) * (1 + JITTER)


def test_rss_ttl_lengthens_the_interval(
    storage: Storage, poller: Poller, server: FeedServer
) -> None:
    body = rss(items(1)).replace(b"<description>test", b"<ttl>45</ttl><description>test")
    server.route("/ttl.xml", body=body)
    storage.add_feed(server.url("/ttl.xml"), T0)
    poll_one(poller, storage, server.url("/ttl.xml"))
    seconds = delay_s(feed_of(storage, server.url("/ttl.xml")), T0)
    assert 2700 * (1 - JITTER) <= seconds <= 2700 * (1 + JITTER)


# ------------------------------------------------------------ adaptive interval


def test_busy_feed_is_polled_more_often_and_quiet_one_less(
    storage: Storage, poller: Poller, server: FeedServer, clock: Clock
) -> None:
    server.route("/busy.xml", body=rss(items(*range(10))))
    server.route("/quiet.xml", body=rss(items(100)), etag='"q"')
    for path in ("/busy.xml", "/quiet.xml"):
        storage.add_feed(server.url(path), T0)
    poller.poll(storage.list_feeds())  # backlog: says nothing about the rate
    assert feed_of(storage, server.url("/busy.xml")).items_per_hour is None

    clock.advance(INTERVAL)
    server.route("/busy.xml", body=rss(items(*range(15))))  # 5 new in 10 minutes = 30/h
    poller.poll(storage.list_feeds())
    busy = feed_of(storage, server.url("/busy.xml"))
    quiet = feed_of(storage, server.url("/quiet.xml"))
    assert busy.items_per_hour == pytest.approx(30.0)
    assert quiet.items_per_hour == 0.0 and quiet.last_status == "not_modified"
    # Two items per check at 30/h: every 4 minutes instead of 10; the quiet one 4x longer.
    assert delay_s(busy, clock.now) <= 240 * (1 + JITTER)
    assert delay_s(quiet, clock.now) >= 2400 * (1 - JITTER)


# ------------------------------------------------------------ never silently dead


def test_410_gone_disables_the_feed_at_once(
    storage: Storage, poller: Poller, server: FeedServer
) -> None:
    server.route("/gone.xml", status=410)
    storage.add_feed(server.url("/gone.xml"), T0)
    poll_one(poller, storage, server.url("/gone.xml"))
    feed = feed_of(storage, server.url("/gone.xml"))
    assert not feed.enabled and feed.next_check_at is None
    assert feed.disabled_reason is not None and "410" in feed.disabled_reason
    assert feed.disabled_at == T0
    assert storage.due_feeds(T0 + timedelta(days=365)) == []


def test_long_failure_disables_only_after_count_and_time(
    storage: Storage, poller: Poller, server: FeedServer, clock: Clock
) -> None:
    server.route("/broken.xml", status=500)
    storage.add_feed(server.url("/broken.xml"), T0)
    for _ in range(5):  # five failures within one day: still enabled (needs two days)
        poll_one(poller, storage, server.url("/broken.xml"))
        clock.advance(3600)
    feed = feed_of(storage, server.url("/broken.xml"))
    assert feed.enabled and feed.error_count == 5 and feed.failing_since == T0

    clock.now = T0 + timedelta(days=2, hours=1)
    poll_one(poller, storage, server.url("/broken.xml"))
    feed = feed_of(storage, server.url("/broken.xml"))
    assert not feed.enabled
    assert feed.disabled_reason is not None
    assert "6 times in a row" in feed.disabled_reason and "HTTP 500" in feed.disabled_reason


def test_a_success_ends_the_failure_run(
    storage: Storage, poller: Poller, server: FeedServer, clock: Clock
) -> None:
    server.route("/flaky.xml", status=500)
    storage.add_feed(server.url("/flaky.xml"), T0)
    poll_one(poller, storage, server.url("/flaky.xml"))
    assert feed_of(storage, server.url("/flaky.xml")).failing_since == T0
    server.route("/flaky.xml", body=rss(items(1)))
    clock.advance(3600)
    poll_one(poller, storage, server.url("/flaky.xml"))
    feed = feed_of(storage, server.url("/flaky.xml"))
    assert feed.failing_since is None and feed.error_count == 0 and feed.enabled


# ------------------------------------------------------------ redirects


@pytest.mark.parametrize(
    ("status", "moves"), [(301, True), (308, True), (302, False), (307, False)]
)
def test_permanent_redirects_update_the_stored_url(
    storage: Storage, poller: Poller, server: FeedServer, status: int, moves: bool
) -> None:
    server.redirect("/old.xml", "/new.xml", status=status)
    server.route("/new.xml", body=rss(items(1)))
    storage.add_feed(server.url("/old.xml"), T0)
    old_id = feed_of(storage, server.url("/old.xml")).id
    report = poll_one(poller, storage, server.url("/old.xml"))
    assert report.new_items == 1
    [feed] = storage.list_feeds()
    assert feed.id == old_id
    assert feed.url == server.url("/new.xml" if moves else "/old.xml")


def test_permanent_redirect_then_temporary_moves_only_the_permanent_hop(
    storage: Storage, poller: Poller, server: FeedServer
) -> None:
    server.redirect("/a.xml", "/b.xml", status=301)
    server.redirect("/b.xml", "/c.xml", status=302)
    server.route("/c.xml", body=rss(items(1)))
    storage.add_feed(server.url("/a.xml"), T0)
    poll_one(poller, storage, server.url("/a.xml"))
    assert [f.url for f in storage.list_feeds()] == [server.url("/b.xml")]


def test_permanent_redirect_onto_a_url_too_long_to_store_moves_only_as_far_as_the_hop_before(
    storage: Storage, poller: Poller, server: FeedServer
) -> None:
    """Feed URLs are indexed (PostgreSQL holds at most 2,704 bytes an index entry): a move
    onto a URL past MAX_FEED_URL_BYTES would make every poll of the feed fail there."""
    long_path = "/long.xml?" + "&".join(f"k{i}=v{i}" for i in range(300))
    server.redirect("/a.xml", "/b.xml", status=301)
    server.redirect("/b.xml", long_path, status=301)
    server.route(long_path, body=rss(items(1)))
    storage.add_feed(server.url("/a.xml"), T0)
    report = poll_one(poller, storage, server.url("/a.xml"))
    assert report.new_items == 1 and len(server.url(long_path)) > MAX_FEED_URL_BYTES
    assert [f.url for f in storage.list_feeds()] == [server.url("/b.xml")]


def test_redirect_onto_a_known_feed_disables_the_duplicate(
    storage: Storage, poller: Poller, server: FeedServer
) -> None:
    server.redirect("/old.xml", "/new.xml", status=301)
    server.route("/new.xml", body=rss(other_items(1)))
    storage.add_feed(server.url("/new.xml"), T0)
    storage.add_feed(server.url("/old.xml"), T0)
    poll_one(poller, storage, server.url("/old.xml"))
    old = feed_of(storage, server.url("/old.xml"))
    assert not old.enabled
    assert old.disabled_reason is not None and server.url("/new.xml") in old.disabled_reason
    assert feed_of(storage, server.url("/new.xml")).enabled
