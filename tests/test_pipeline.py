"""The poll pass in-process: real local feeds, real SQLite, the real matcher and rules."""

from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from service.errors import StorageError
from service.fetch import Fetcher, build_client
from service.match import Matcher
from service.pipeline import Poller, PollSettings, malformed_warning
from service.storage import Storage, make_engine, migrate
from service.stories import StoryPolicy
from service.types import (
    Article,
    FeedRecord,
    FeedUpdate,
    FetchStatus,
    MatchResult,
    NewArticle,
    PollReport,
    RawEntry,
)
from tests.conftest import RULES
from tests.fleet import scratch_database
from tests.seedfeed import SEED_URL, other_items, rss, seed_feed, seed_parts
from tests.servers import FeedServer
from tests.test_rematch import seed_article

T0 = datetime(2025, 1, 23, 15, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(scope="module")
def matcher() -> Matcher:
    return Matcher.load(RULES)


@pytest.fixture
def poller(storage: Storage, matcher: Matcher) -> Iterator[tuple[Poller, Clock]]:
    client = build_client("detainer-watch-test", 5, 5, 4)
    clock = Clock()
    p = Poller(
        storage,
        Fetcher(client, 1_000_000, 10),
        matcher,
        PollSettings(interval_s=600, min_interval_s=60, max_interval_s=3600, concurrency=4),
        clock,
        random.Random(0),
    )
    yield p, clock
    client.close()


def test_one_bad_feed_does_not_stop_the_pass(
    storage: Storage, poller: tuple[Poller, Clock]
) -> None:
    p, clock = poller
    with FeedServer() as srv:
        srv.route("/seed.xml", body=seed_feed(), etag='"1"')
        srv.drop("/dead.xml")
        srv.route("/gone.xml", status=404)
        srv.route("/other.xml", body=rss(other_items()))
        for path in ("/seed.xml", "/dead.xml", "/gone.xml", "/other.xml"):
            storage.add_feed(srv.url(path), T0)
        reports = _by_file(p.poll())
    assert reports["seed.xml"].hits == 1 and reports["seed.xml"].status is FetchStatus.OK
    assert reports["other.xml"].new_items == 3 and reports["other.xml"].hits == 0
    assert reports["dead.xml"].status is FetchStatus.ERROR and reports["dead.xml"].error
    assert "404" in (reports["gone.xml"].error or "")
    feeds = {f.url.rsplit("/", 1)[1]: f for f in storage.list_feeds()}
    assert feeds["dead.xml"].error_count == 1
    assert feeds["dead.xml"].next_check_at is not None
    assert feeds["dead.xml"].next_check_at > clock.now
    # Only the failed feeds are due again soon; nothing is due right now.
    assert storage.due_feeds(clock.now) == []


# A site's page given where its feed's URL belongs (the usual mistake), and a page that
# announces no feed (a login or bot-check page served at a feed's URL).
SITE_PAGE = (
    b'<!doctype html><html><head><title>News</title><link rel="alternate" '
    b'type="application/rss+xml" title="RSS" href="/feeds/all.xml"></head><body>Hi</body></html>'
)
CHALLENGE_PAGE = b"<!doctype html><html><head><title>Just a moment...</title></head></html>"


def test_an_html_page_for_a_feed_says_which_feed_it_announces(
    storage: Storage, poller: tuple[Poller, Clock]
) -> None:
    p, _ = poller
    html = {"Content-Type": "text/html; charset=utf-8"}
    with FeedServer() as srv:
        srv.route("/site/", body=SITE_PAGE, headers=html)
        srv.route("/check.xml", body=CHALLENGE_PAGE, headers=html)
        srv.route("/seed.xml", body=seed_feed())
        # The same page, its server calling it a feed: still a page.
        srv.route("/labelled.xml", body=SITE_PAGE, headers={"Content-Type": "application/rss+xml"})
        for path in ("/site/", "/check.xml", "/seed.xml", "/labelled.xml"):
            storage.add_feed(srv.url(path), T0)
        reports = {r.feed_url: r for r in p.poll()}
        site, check = reports[srv.url("/site/")], reports[srv.url("/check.xml")]
        assert reports[srv.url("/seed.xml")].hits == 1
        announced = srv.url("/feeds/all.xml")
    assert site.status is FetchStatus.ERROR and check.status is FetchStatus.ERROR
    hint = f"an HTML page, not a feed: it announces the feed {announced}; add that URL instead"
    assert (site.error or "").startswith(hint)
    assert (reports[srv.url("/labelled.xml")].error or "").startswith(hint)
    assert "announces no feed" in (check.error or "") and "bot-check" in (check.error or "")
    feeds = {f.url: f for f in storage.list_feeds()}
    assert feeds[srv.url("/site/")].last_error == site.error  # what feeds list and the API show
    assert feeds[srv.url("/site/")].error_count == 1


def _poison(title: str) -> None:
    if "Poison pill" in title:
        raise RuntimeError("a bug met on this feed's input")


POISON_FEED = rss([{"title": "Poison pill", "link": "https://p.example/1"}])


def _serve_poison_among_others(
    srv: FeedServer, storage: Storage, poison: bytes = POISON_FEED
) -> None:
    """Serve and add three feeds: the seed story's (one hit), ``poison`` and three general
    items; poll reports come back named by file (``_by_file``), feeds by ``_feeds_by_file``."""
    srv.route("/seed.xml", body=seed_feed())
    srv.route("/poison.xml", body=poison)
    srv.route("/other.xml", body=rss(other_items()))
    for path in ("/seed.xml", "/poison.xml", "/other.xml"):
        storage.add_feed(srv.url(path), T0)


def _by_file(reports: Sequence[PollReport]) -> dict[str, PollReport]:
    return {r.feed_url.rsplit("/", 1)[1]: r for r in reports}


def _poll_poison_among_others(
    p: Poller,
    srv: FeedServer,
    storage: Storage,
    caplog: pytest.LogCaptureFixture,
    poison: bytes = POISON_FEED,
) -> PollReport:
    """Serve the three feeds (``_serve_poison_among_others``) and poll them, logging the
    pipeline's errors into ``caplog``; the other two are stored whatever the poison does.
    Returns the poison feed's report."""
    _serve_poison_among_others(srv, storage, poison)
    with caplog.at_level(logging.ERROR, logger="service.pipeline"):
        reports = _by_file(p.poll())
    assert reports["seed.xml"].hits == 1 and reports["other.xml"].new_items == 3
    return reports["poison.xml"]


def _feeds_by_file(storage: Storage) -> dict[str, FeedRecord]:
    return {f.url.rsplit("/", 1)[1]: f for f in storage.list_feeds()}


def test_a_bug_met_while_parsing_one_feed_costs_only_that_feed(
    storage: Storage,
    poller: tuple[Poller, Clock],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An exception our own code raises on one document (here from normalising its entry)
    is that feed's error; the pass goes on and stores the other feeds of its batch."""
    import service.parse_worker

    real = service.parse_worker.normalize_entry

    def normalize_entry(entry: RawEntry, feed_title: str | None, url: str) -> Article:
        _poison(entry.title)
        return real(entry, feed_title, url)

    monkeypatch.setattr(service.parse_worker, "normalize_entry", normalize_entry)
    p, _ = poller
    with FeedServer() as srv:
        poisoned = _poll_poison_among_others(p, srv, storage, caplog)
    assert poisoned.status is FetchStatus.ERROR
    assert (poisoned.error or "").startswith("internal error while reading this feed (RuntimeError")
    assert "internal error while fetching or parsing" in caplog.text
    assert "Traceback" in caplog.text  # the log keeps what a bug report needs
    feeds = _feeds_by_file(storage)
    assert feeds["poison.xml"].error_count == 1 and feeds["seed.xml"].error_count == 0


def test_a_bug_met_while_matching_one_feed_costs_only_that_feed(
    storage: Storage,
    poller: tuple[Poller, Clock],
    matcher: Matcher,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The same for an exception from matching (on the storing thread): the feed's error,
    and the rest of the batch stored in its transaction."""
    real = matcher.classify

    def classify(title: str, summary: str = "", text: str = "") -> MatchResult:
        _poison(title)
        return real(title, summary, text)

    monkeypatch.setattr(matcher, "classify", classify)
    title, summary, _ = seed_parts()
    poison = rss([{"title": f"Poison pill: {title}", "link": "https://p.example/1",
                   "description": summary}])  # fmt: skip
    p, _ = poller
    with FeedServer() as srv:
        poisoned = _poll_poison_among_others(p, srv, storage, caplog, poison)
    assert poisoned.status is FetchStatus.ERROR and poisoned.new_items == 0
    assert (poisoned.error or "").startswith("internal error while reading this feed (RuntimeError")
    assert "internal error while matching the articles of" in caplog.text
    assert _feeds_by_file(storage)["poison.xml"].error_count == 1


def _refuse_poison(storage: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    """The database refuses to store any poll holding a "Poison pill" article."""
    real = storage.record_polls

    def record_polls(
        polls: Sequence[tuple[FeedUpdate, Sequence[NewArticle]]],
        now: datetime,
        policy: StoryPolicy | None = None,
    ) -> list[list[int]]:
        if any("Poison pill" in i.article.title for _, items in polls for i in items):
            raise StorageError("the database refused a value: poisoned")
        return real(polls, now, policy)

    monkeypatch.setattr(storage, "record_polls", record_polls)


def test_articles_the_database_refuses_cost_only_their_feed(
    storage: Storage,
    poller: tuple[Poller, Clock],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A feed whose articles the database will not store fails alone: its batch is stored
    feed by feed, it gets the error, and its next poll reads the articles again."""
    _refuse_poison(storage, monkeypatch)
    p, clock = poller
    with FeedServer() as srv:
        poisoned = _poll_poison_among_others(p, srv, storage, caplog)
        assert poisoned.status is FetchStatus.ERROR and poisoned.new_items == 0
        assert poisoned.error == (
            "the database could not store this feed's articles: "
            "the database refused a value: poisoned"
        )
        feeds = _feeds_by_file(storage)
        assert feeds["poison.xml"].error_count == 1
        assert feeds["poison.xml"].last_error == poisoned.error
        # Once the database takes it, the next poll stores the article it could not.
        monkeypatch.undo()
        clock.now = feeds["poison.xml"].next_check_at or T0
        (again,) = p.poll([f for f in storage.list_feeds() if f.url.endswith("/poison.xml")])
    assert again.status is FetchStatus.OK and again.new_items == 1


def test_a_bug_met_while_storing_one_feed_costs_only_that_feed(
    storage: Storage,
    poller: tuple[Poller, Clock],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The same for an exception from storage code that is not the database's (here from
    grouping the articles into stories): the feed's error, logged with its traceback, and
    the rest of its batch stored."""
    import service.storage.articles

    real = service.storage.articles.assign_stories

    def assign_stories(articles: Sequence[Article], *args: object) -> object:
        _poison(" ".join(a.title for a in articles))
        return real(articles, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(service.storage.articles, "assign_stories", assign_stories)
    p, _ = poller
    with FeedServer() as srv:
        poisoned = _poll_poison_among_others(p, srv, storage, caplog)
    assert poisoned.status is FetchStatus.ERROR and poisoned.new_items == 0
    assert (poisoned.error or "").startswith("internal error while reading this feed (RuntimeError")
    assert "internal error while storing the articles of" in caplog.text
    assert "Traceback" in caplog.text


def test_a_database_that_refuses_everything_still_ends_the_pass(
    storage: Storage, poller: tuple[Poller, Clock], monkeypatch: pytest.MonkeyPatch
) -> None:
    """When even a feed's error cannot be stored, the database itself is failing: the pass
    ends with the error (the scheduler tries again at its next tick) instead of going on."""

    def record_polls(*args: object, **kwargs: object) -> list[list[int]]:
        raise StorageError("database error: the server went away")

    monkeypatch.setattr(storage, "record_polls", record_polls)
    p, _ = poller
    with FeedServer() as srv:
        for name in ("a", "b"):
            srv.route(f"/{name}.xml", body=rss(other_items()))
            storage.add_feed(srv.url(f"/{name}.xml"), T0)
        with pytest.raises(StorageError, match="server went away"):
            p.poll()


@pytest.mark.postgres
def test_odd_entries_are_stored_on_postgresql(pg_url: str, matcher: Matcher) -> None:
    """What PostgreSQL refuses used to make every poll of the feed fail there, and stop the
    pass: text holding NUL (a raw byte or "&#0;" in a broken feed) and index entries past
    2,704 bytes (a 5,000-character entry id or link), and a hit's search vector past 1 MB
    (1.8 MB of distinct words). Parsing drops the NULs, and normalising hashes the long id,
    drops the long link and cuts the text to 200,000 characters, so both articles, and the
    hit, are stored."""
    title, summary, _ = seed_parts()
    long_link = "https://n.example/long?" + "&".join(f"k{i}=v{i}" for i in range(600))
    odd = rss(
        [
            {"title": title[:10] + "\x00" + title[10:], "link": "https://n.example/a\x00b",
             "guid": "g\x001", "description": summary.replace(" ", " \x00", 3),
             "content": " ".join(f"word{i:x}" for i in range(200_000))},
            {"title": "Long keys", "link": long_link, "guid": "x" * 5_000},
        ],
        title="Feed\x00 title",
    ).replace(b"Feed", b"F&#0;eed")  # fmt: skip
    with scratch_database(pg_url) as url:
        store = Storage(make_engine(url))
        migrate(store.engine)
        client = build_client("detainer-watch-test", 5, 5, 4)
        settings = PollSettings(
            interval_s=600, min_interval_s=60, max_interval_s=3600, concurrency=4
        )
        p = Poller(
            store, Fetcher(client, 5_000_000, 10), matcher, settings, Clock(), random.Random(0)
        )
        try:
            with FeedServer() as srv:
                srv.route("/odd.xml", body=odd)
                srv.route("/other.xml", body=rss(other_items()))
                for path in ("/odd.xml", "/other.xml"):
                    store.add_feed(srv.url(path), T0)
                reports = _by_file(p.poll())
            # Stored, with the document's fault as a warning.
            assert reports["odd.xml"].status is FetchStatus.OK, reports["odd.xml"].error
            assert "invalid character" in (reports["odd.xml"].error or "")
            assert reports["odd.xml"].new_items == 2 and reports["odd.xml"].hits == 1
            assert reports["other.xml"].new_items == 3
            with store.engine.connect() as conn:
                rows = [
                    tuple(r) for r in conn.execute(text("SELECT title, url, guid FROM articles"))
                ]
            assert (title, "https://n.example/ab", "g1") in rows
            with store.engine.connect() as conn:
                (length,) = conn.execute(text("SELECT max(length(text)) FROM articles")).one()
            assert length == 200_000
            long_guid = "sha256:" + hashlib.sha256(b"x" * 5_000).hexdigest()
            assert ("Long keys", "", long_guid) in rows
        finally:
            client.close()
            store.close()


def test_known_articles_are_not_matched_twice(
    storage: Storage,
    poller: tuple[Poller, Clock],
    matcher: Matcher,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    p, clock = poller
    calls: list[str] = []
    real = matcher.classify

    def counting(title: str, summary: str = "", text: str = "") -> object:
        calls.append(title)
        return real(title, summary, text)

    monkeypatch.setattr(p.matcher, "classify", counting)
    with FeedServer() as srv:
        srv.route("/a.xml", body=seed_feed())  # no validators: the server always sends 200
        feed, _ = storage.add_feed(srv.url("/a.xml"), T0)
        p.poll()
        assert len(calls) == 1
        # Same bytes again: skipped by the body hash before parsing.
        clock.now += timedelta(hours=1)
        assert p.poll()[0].new_items == 0
        # A changed document with the same entry plus a new one: only the new one is matched
        # (it holds an anchor, "ice", so the parse step sends it to the matcher).
        srv.route(
            "/a.xml",
            body=rss(
                [
                    {
                        "title": seed_parts()[0],
                        "link": SEED_URL,
                    },
                    {
                        "title": "Ice storm closes county schools",
                        "link": "https://example.org/ice-storm",
                        "description": "Freezing rain coated roads across the county.",
                    },
                ]
            ),
        )
        clock.now += timedelta(hours=1)
        report = p.poll()[0]
    assert report.new_items == 1
    assert len(calls) == 2
    assert storage.count_hits() == 1


def test_syndicated_copy_joins_the_story_without_a_new_hit(
    storage: Storage, poller: tuple[Poller, Clock]
) -> None:
    p, _ = poller
    with FeedServer() as srv:
        srv.route("/fox.xml", body=seed_feed())
        # The same wire copy on another outlet, under its own URL, with tracking params.
        srv.route(
            "/mirror.xml",
            body=seed_feed(
                link="https://mirror.example/boston-detainers?utm_source=rss", title="Mirror"
            ),
        )
        storage.add_feed(srv.url("/fox.xml"), T0)
        storage.add_feed(srv.url("/mirror.xml"), T0)
        reports = p.poll()
    assert sum(r.hits for r in reports) == 1
    assert sum(r.new_items for r in reports) == 2
    hits, _ = storage.list_hits(__import__("service.types").types.HitQuery())
    assert len(hits) == 1
    assert {a.url for a in hits[0].articles} == {
        SEED_URL,
        "https://mirror.example/boston-detainers",
    }


class _CountingMatcher(Matcher):
    """The real matcher, counting the items it is asked to classify."""

    calls = 0

    def classify(self, title: str, summary: str = "", text: str = "") -> MatchResult:
        self.calls += 1
        return super().classify(title, summary, text)


def test_recent_matches_give_a_verbatim_copy_the_first_ones_result() -> None:
    """The storing thread matches an item that reaches it verbatim from several feeds once:
    the same answer as the matcher's own, recomputed for any other text (case counts: the
    matcher's senses read it), for a reloaded matcher, and past the memo's size."""
    from service.pipeline import _RecentMatches

    rules = Matcher.load(RULES)
    counting = _CountingMatcher.load(RULES)
    memo = _RecentMatches(size=2)
    seed = seed_article()
    first = memo.classify(counting, seed)
    assert first == rules.classify(seed.title, seed.summary, seed.text) and first.flagged
    assert memo.classify(counting, seed_article()) is first  # equal text, new strings
    assert counting.calls == 1
    storm = replace(
        seed,
        title=seed.title.replace("ICE", "ice"),
        summary=seed.summary.replace("ICE", "ice"),
        text=seed.text.replace("ICE", "ice"),
    )
    assert memo.classify(counting, storm) == rules.classify(storm.title, storm.summary, storm.text)
    assert counting.calls == 2
    # The field an item's words sit in counts too: title and summary swapped.
    moved = replace(seed, title=seed.summary, summary=seed.title)
    assert memo.classify(counting, moved) == rules.classify(seed.summary, seed.title, seed.text)
    assert counting.calls == 3  # and the seed, least recently used, is gone
    assert memo.classify(counting, seed) == first
    assert counting.calls == 4
    reloaded = _CountingMatcher.load(RULES)
    assert memo.classify(reloaded, seed) == first
    assert (counting.calls, reloaded.calls) == (4, 1)


@pytest.mark.parametrize(
    ("recovered", "expected"),
    [
        (0, "malformed feed (0 entries recovered): no element found"),
        (1, "malformed feed (1 entry recovered): no element found"),
        (2, "malformed feed (2 entries recovered): no element found"),
    ],
)
def test_malformed_warning_counts_entries(recovered: int, expected: str) -> None:
    assert malformed_warning(recovered, "no element found") == expected
