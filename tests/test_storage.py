"""Storage contract: one transaction per poll, one story once, outbox, leases, pagination.

Runs on real SQLite; the same suite runs on PostgreSQL when DW_TEST_POSTGRES_URL is set.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.engine import Engine

from service.config import (
    DEFAULT_SQLITE_CACHE_MB,
    DEFAULT_SQLITE_CHECKPOINT_MB,
    MAX_SQLITE_MB,
    FeedConfig,
    WebhookConfig,
    load_config,
)
from service.errors import StorageError
from service.storage import Storage, engine_for, make_engine, migrate
from service.storage.engine import _alembic_config
from service.stories import StoryPolicy, article_fingerprint
from service.types import (
    Article,
    Evidence,
    FeedUpdate,
    FetchStatus,
    HitQuery,
    Jurisdiction,
    MatchResult,
    NewArticle,
)
from tests.test_cli import config

NOW = datetime(2025, 1, 23, 15, 0, tzinfo=UTC)
SECRET = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM="


def article(n: int, url: str | None = None, body: str | None = None) -> Article:
    return Article(
        url=url if url is not None else f"https://news.example/{n}",
        guid=f"g{n}",
        title=f"Story {n}",
        summary=body or f"summary {n}",
        text="",
        published_at=NOW,
        source="Example News",
        content_hash=f"hash-{body or n}",
    )


def match(
    score: float = 0.9, topics: tuple[str, ...] = ("detainer",), state: str = "MA"
) -> MatchResult:
    return MatchResult(
        flagged=True,
        score=score,
        topics=topics,
        event_type="detainer_declined",
        jurisdictions=(Jurisdiction("Boston", "city", state),),
        entities=(),
        evidence=(Evidence("title", "Story", 0, 5, ()),),
        ruleset_version="test",
    )


def poll_update(feed_id: int, new: int = 0) -> FeedUpdate:
    return FeedUpdate(
        feed_id=feed_id,
        checked_at=NOW,
        status=FetchStatus.OK,
        http_status=200,
        error=None,
        error_count=0,
        next_check_at=NOW + timedelta(minutes=15),
        etag='"e1"',
        new_items=new,
    )


def test_record_poll_writes_hit_and_pending_delivery_together(store: Storage) -> None:
    store.sync_config_webhooks([WebhookConfig(url="https://h.example/x", secret=SECRET)], NOW)
    feed, created = store.add_feed("https://feed.example/rss", NOW)
    assert created
    hit_ids = store.record_poll(
        poll_update(feed.id, 2),
        [NewArticle(article(1), match()), NewArticle(article(2), None)],
        NOW,
    )
    assert len(hit_ids) == 1
    hit = store.get_hit(hit_ids[0])
    assert hit is not None and hit.topics == ("detainer",) and hit.articles[0].url.endswith("/1")
    pending = store.list_deliveries("pending")
    assert [d.hit_id for d in pending] == hit_ids
    assert pending[0].webhook_id.startswith("msg_")
    f = store.get_feed(str(feed.id))
    assert f is not None and f.etag == '"e1"' and f.last_status == "ok"


def test_a_value_the_database_refuses_is_a_storage_error(store: Storage) -> None:
    """PostgreSQL will not hold NUL in text (parsing drops it, but storage must not let a
    driver's own exception out, which ended poll passes); SQLite stores it as it is."""
    feed, _ = store.add_feed("https://feed.example/rss", NOW)
    nul = replace(article(1), title="Story\x00 1", guid="g\x001")
    if store.engine.dialect.name == "postgresql":
        with pytest.raises(StorageError, match="the database refused a value: .*NUL"):
            store.record_poll(poll_update(feed.id, 1), [NewArticle(nul, None)], NOW)
        assert store.record_poll(poll_update(feed.id, 1), [NewArticle(article(1), None)], NOW) == []
    else:
        store.record_poll(poll_update(feed.id, 1), [NewArticle(nul, None)], NOW)
        assert store.known_guids(feed.id, ["g\x001"]) == {"g\x001"}


def test_known_guid_and_story_are_not_stored_or_alerted_twice(store: Storage) -> None:
    a, _ = store.add_feed("https://a.example/rss", NOW)
    b, _ = store.add_feed("https://b.example/rss", NOW)
    first = store.record_poll(poll_update(a.id), [NewArticle(article(1), match())], NOW)
    assert store.known_guids(a.id, ["g1", "g9"]) == {"g1"}
    again = store.record_poll(poll_update(a.id), [NewArticle(article(1), match())], NOW)
    assert again == []
    # The same story (same canonical URL) from another outlet is a sighting, not a new hit.
    copy = Article(
        url="https://news.example/1",
        guid="other-guid",
        title="Story 1 (copy)",
        summary="s",
        text="",
        published_at=NOW,
        source="Other Outlet",
        content_hash="different",
    )
    assert store.record_poll(poll_update(b.id), [NewArticle(copy, match())], NOW) == []
    hit = store.get_hit(first[0])
    assert hit is not None
    assert [s.source for s in hit.articles] == ["Example News", "Other Outlet"]
    # Same text under another URL (wire copy) joins the story too.
    wire = article(7, url="https://elsewhere.example/7", body="1")
    assert store.record_poll(poll_update(b.id), [NewArticle(wire, match())], NOW) == []
    assert store.count_hits() == 1


def test_one_feed_however_its_url_is_spelled(store: Storage) -> None:
    # Scheme and host in any case, the default port, a fragment: one feed, polled once.
    feed, created = store.add_feed("http://example.org/rss", NOW)
    assert created
    spellings = (
        "HTTP://Example.ORG:80/rss",
        "http://example.org/rss#top",
        " http://EXAMPLE.org/rss ",
    )
    for spelling in spellings:
        again, created = store.add_feed(spelling, NOW)
        assert (again.id, created) == (feed.id, False), spelling
    found = store.get_feed("HTTP://EXAMPLE.ORG/rss")
    assert found is not None and found.id == feed.id
    removed = store.remove_feed("http://Example.org:80/rss")
    assert removed is not None and removed.id == feed.id
    assert [f.url for f in store.list_feeds(include_removed=True)] == ["http://example.org/rss"]


def test_feeds_stored_before_normalising_are_found_and_not_doubled(store: Storage) -> None:
    # A row written as typed by an earlier release: named, re-added and synced from the
    # config in either spelling, it stays the one feed.
    with store._session() as s:  # the old form can only be written past add_feed
        s.execute(
            text(
                "INSERT INTO feeds (url, origin, enabled, error_count, last_new_items) "
                "VALUES ('HTTP://Old.example/rss', 'user', true, 0, 0)"
            )
        )
    (old,) = store.list_feeds()
    assert store.get_feed("HTTP://Old.example/rss") is not None
    again, created = store.add_feed("HTTP://Old.example/rss", NOW)
    assert (again.id, created) == (old.id, False)
    store.sync_config_feeds([FeedConfig(url="http://old.example/rss")], NOW)
    assert [f.id for f in store.list_feeds()] == [old.id]


def test_error_poll_keeps_validators_and_counts(store: Storage) -> None:
    feed, _ = store.add_feed("https://a.example/rss", NOW)
    store.record_poll(poll_update(feed.id), [], NOW)
    store.update_feed(
        FeedUpdate(
            feed_id=feed.id,
            checked_at=NOW,
            status=FetchStatus.ERROR,
            http_status=500,
            error="HTTP 500",
            error_count=1,
            next_check_at=NOW + timedelta(hours=1),
        )
    )
    f = store.get_feed(feed.url)
    assert f is not None
    assert (f.etag, f.last_error, f.error_count, f.last_http_status) == ('"e1"', "HTTP 500", 1, 500)
    assert store.due_feeds(NOW) == []
    assert [x.id for x in store.due_feeds(NOW + timedelta(hours=2))] == [feed.id]


def test_delivery_lease_is_exclusive_and_expires(store: Storage) -> None:
    store.sync_config_webhooks([WebhookConfig(url="https://h.example/x", secret=SECRET)], NOW)
    feed, _ = store.add_feed("https://a.example/rss", NOW)
    store.record_poll(poll_update(feed.id), [NewArticle(article(1), match())], NOW)
    first = store.claim_deliveries(NOW)
    assert len(first) == 1
    assert store.claim_deliveries(NOW + timedelta(seconds=15)) == []  # leased
    later = store.claim_deliveries(NOW + timedelta(minutes=5))  # lease expired: crash case
    assert [d.webhook_id for d, _, _ in later] == [first[0][0].webhook_id]
    store.mark_attempt_failed(later[0][0].id, "HTTP 500", 500, None)
    failed = store.list_deliveries("failed")
    assert len(failed) == 1 and failed[0].attempts == 1
    retried = store.retry_delivery(failed[0].id, NOW)
    assert retried is not None and retried.status == "pending"
    store.mark_delivered(failed[0].id, NOW, 200)
    assert store.list_deliveries("delivered")[0].webhook_id == first[0][0].webhook_id


def test_subscription_filters_route_hits(store: Storage) -> None:
    store.sync_config_webhooks(
        [
            WebhookConfig(url="https://h.example/all", secret=SECRET),
            WebhookConfig(url="https://h.example/287g", secret=SECRET, topics=("287g",)),
            WebhookConfig(url="https://h.example/high", secret=SECRET, min_score=0.95),
        ],
        NOW,
    )
    feed, _ = store.add_feed("https://a.example/rss", NOW)
    store.record_poll(poll_update(feed.id), [NewArticle(article(1), match(0.9))], NOW)
    subs = {s.id: s.url for s in store.list_subscriptions()}
    assert [subs[d.subscription_id] for d in store.list_deliveries()] == ["https://h.example/all"]


def test_list_hits_filters_and_stable_cursor(store: Storage) -> None:
    feed, _ = store.add_feed("https://a.example/rss", NOW)
    for n in range(5):
        store.record_poll(
            poll_update(feed.id),
            [
                NewArticle(
                    article(n),
                    match(
                        0.5 + n / 10,
                        ("sanctuary",) if n % 2 else ("detainer",),
                        "MA" if n < 3 else "IL",
                    ),
                )
            ],
            NOW,
        )
    page1, cursor = store.list_hits(HitQuery(limit=2))
    assert [h.title for h in page1] == ["Story 4", "Story 3"] and cursor is not None
    # A new hit arriving between pages shifts nothing.
    store.record_poll(poll_update(feed.id), [NewArticle(article(99), match())], NOW)
    page2, cursor2 = store.list_hits(HitQuery(limit=2, cursor=cursor))
    assert [h.title for h in page2] == ["Story 2", "Story 1"]
    page3, cursor3 = store.list_hits(HitQuery(limit=2, cursor=cursor2))
    assert [h.title for h in page3] == ["Story 0"] and cursor3 is None
    assert {h.title for h in store.list_hits(HitQuery(topic="sanctuary"))[0]} == {
        "Story 1",
        "Story 3",
    }
    assert {h.title for h in store.list_hits(HitQuery(state="il"))[0]} == {"Story 3", "Story 4"}
    assert {h.title for h in store.list_hits(HitQuery(min_score=0.85))[0]} == {
        "Story 4",
        "Story 99",
    }
    assert {h.title for h in store.list_hits(HitQuery(q="summary 2"))[0]} == {"Story 2"}
    assert {h.title for h in store.list_hits(HitQuery(jurisdiction="boston", limit=10))[0]} == {
        f"Story {n}" for n in (0, 1, 2, 3, 4, 99)
    }
    assert store.list_hits(HitQuery(feed="https://nowhere.example/rss"))[0] == []


def test_migrate_is_idempotent(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'sub' / 'x.db'}")
    before, after = migrate(engine)
    assert before is None and after
    assert migrate(engine) == (after, after)
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA cache_size")).scalar() == -DEFAULT_SQLITE_CACHE_MB * 1024
        page = conn.execute(text("PRAGMA page_size")).scalar()
        pages = conn.execute(text("PRAGMA wal_autocheckpoint")).scalar()
        assert pages == DEFAULT_SQLITE_CHECKPOINT_MB * 2**20 // page
    engine.dispose()


@pytest.mark.parametrize(
    ("checkpoint_mb", "wal_mb_at_most", "wal_mb_at_least"), [(1, 3, 0), (64, 64, 7)]
)
def test_the_write_ahead_log_is_checkpointed_at_its_configured_size(
    tmp_path: Path, checkpoint_mb: int, wal_mb_at_most: int, wal_mb_at_least: int
) -> None:
    """Eight 1 MB commits: a 1 MB log is copied into the database (and reused) after each
    commit that passes 1 MB, while a 64 MB one keeps every commit until it is that long."""
    db = tmp_path / "x.db"
    engine = make_engine(f"sqlite:///{db}", sqlite_checkpoint_mb=checkpoint_mb)
    with engine.connect() as conn:
        conn.execute(text("CREATE TABLE blobs (b BLOB)"))
        conn.commit()
        for _ in range(8):
            conn.execute(text("INSERT INTO blobs VALUES (randomblob(1048576))"))
            conn.commit()
        wal_mb = (tmp_path / "x.db-wal").stat().st_size / 2**20
        assert wal_mb_at_least <= wal_mb <= wal_mb_at_most, wal_mb
    engine.dispose()


def test_the_largest_checkpoint_size_still_checkpoints(tmp_path: Path) -> None:
    """1 TB of 512-byte pages is 2^31 pages, which SQLite would take as 0 (never)."""
    db = tmp_path / "small-pages.db"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA page_size=512")
        conn.execute("CREATE TABLE t (x)")
    engine = make_engine(f"sqlite:///{db}", sqlite_checkpoint_mb=MAX_SQLITE_MB)
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA page_size")).scalar() == 512
        assert conn.execute(text("PRAGMA wal_autocheckpoint")).scalar() == 2**31 - 1
    engine.dispose()


def test_the_engine_takes_the_database_settings_of_the_config(tmp_path: Path) -> None:
    path = config(tmp_path, database="sqlite_cache_mb = 3\nsqlite_checkpoint_mb = 2\n")
    engine = engine_for(load_config(path, env={}))
    with engine.connect() as conn:
        page = conn.execute(text("PRAGMA page_size")).scalar()
        assert conn.execute(text("PRAGMA cache_size")).scalar() == -3 * 1024
        assert conn.execute(text("PRAGMA wal_autocheckpoint")).scalar() == 2 * 2**20 // page
    engine.dispose()


def test_sqlite_cache_size_comes_from_the_config(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}", sqlite_cache_mb=5)
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA cache_size")).scalar() == -5 * 1024
    engine.dispose()


# Indexes that migration 0008 dropped: no query needs them, and each stored article wrote
# into each of them.
DROPPED_INDEXES = {"ix_stories_canonical_url", "ix_stories_content_hash", "ix_articles_feed_id"}

# Look-ups by feed (the poll's known-entry query, the hits filter by feed, a count): each
# must search the articles by the (feed_id, guid) unique index (SQLite names it
# sqlite_autoindex_articles_1), not scan the table.
FEED_LOOKUPS = [
    "SELECT guid FROM articles WHERE guid IN ('a', 'b') AND feed_id = 1",
    "SELECT story_id FROM articles WHERE feed_id IN (1, 2)",
    "SELECT count(*) FROM articles WHERE feed_id = 3",
]
FEED_GUID_INDEX = "sqlite_autoindex_articles_1"


def _sqlite_indexes(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return {
            r[0] for r in conn.execute(text("SELECT name FROM sqlite_master WHERE type='index'"))
        }


@pytest.mark.parametrize("sql", FEED_LOOKUPS)
def test_lookups_by_feed_search_the_feed_guid_index(tmp_path: Path, sql: str) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'plan.db'}")
    migrate(engine)
    with engine.connect() as conn:
        # The plan first: it loads the schema, which PRAGMA index_info does not.
        plan = " | ".join(str(r[-1]) for r in conn.execute(text(f"EXPLAIN QUERY PLAN {sql}")))
        unique = conn.execute(text(f"PRAGMA index_info({FEED_GUID_INDEX})")).all()
    engine.dispose()
    assert [r[2] for r in unique] == ["feed_id", "guid"]
    assert plan.startswith("SEARCH articles USING"), plan
    assert f"INDEX {FEED_GUID_INDEX} (feed_id=?" in plan, plan


def test_migration_0008_drops_the_indexes_and_its_downgrade_restores_them(
    tmp_path: Path,
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'down.db'}")
    migrate(engine)
    assert not DROPPED_INDEXES & _sqlite_indexes(engine)
    command.downgrade(_alembic_config(engine), "0007")
    assert DROPPED_INDEXES <= _sqlite_indexes(engine)
    engine.dispose()


# ---------------------------------------------------------------- near-duplicate stories

POLICY = StoryPolicy()
WIRE_SUMMARY = (
    "The sheriff in Tennessee's largest city says his office will stop contracting to house "
    "detained immigrants for U.S. Immigration and Customs Enforcement on Dec. 1, calling "
    "the issue a distraction."
)


def wire(n: int, title: str, when: datetime = NOW, extra: str = "") -> Article:
    """The same AP story as outlet ``n`` runs it: own URL, headline and boilerplate."""
    return Article(
        url=f"https://outlet{n}.example/nashville-ice",
        guid=f"wire-{n}",
        title=title,
        summary=WIRE_SUMMARY + extra,
        text="",
        published_at=when,
        source=f"Outlet {n}",
        content_hash=f"wire-hash-{n}",
    )


def test_near_duplicates_join_one_story_within_the_window(store: Storage) -> None:
    store.sync_config_webhooks([WebhookConfig(url="https://h.example/x", secret=SECRET)], NOW)
    a, _ = store.add_feed("https://a.example/rss", NOW)
    b, _ = store.add_feed("https://b.example/rss", NOW)
    first = store.record_poll(
        poll_update(a.id), [NewArticle(wire(1, "Nashville to end ICE contract"), match())], NOW
    )
    assert len(first) == 1
    # Another outlet, another headline, boilerplate added: a sighting, no hit, no delivery.
    copy = wire(2, "Davidson County sheriff drops ICE deal", extra=" Copyright 2019 AP.")
    assert store.record_poll(poll_update(b.id), [NewArticle(copy, match())], NOW) == []
    # Two more copies in one poll: both join the same story.
    batch = [
        NewArticle(wire(3, "Sheriff: ICE housing a distraction", NOW + timedelta(days=2)), match()),
        NewArticle(wire(4, "Nashville jail stops holding ICE detainees"), match()),
    ]
    assert store.record_poll(poll_update(b.id), batch, NOW) == []
    hit = store.get_hit(first[0])
    assert hit is not None
    assert [s.source for s in hit.articles] == [f"Outlet {n}" for n in (1, 2, 3, 4)]
    assert len(store.list_deliveries()) == 1
    # The same text ten days later is a new story (an anniversary piece, a recycled copy).
    later = wire(5, "Nashville to end ICE contract", NOW + timedelta(days=10))
    assert len(store.record_poll(poll_update(b.id), [NewArticle(later, match())], NOW)) == 1
    assert store.count_hits() == 2


def test_a_story_gets_its_hit_from_its_first_flagged_sighting(store: Storage) -> None:
    a, _ = store.add_feed("https://a.example/rss", NOW)
    quiet = dataclasses.replace(match(), flagged=False)
    assert (
        store.record_poll(poll_update(a.id), [NewArticle(wire(1, "Jail news"), quiet)], NOW) == []
    )
    fp = store.story_candidates([wire(2, "x")], [article_fingerprint(wire(2, "x"))], POLICY, NOW)
    assert [(c.story_id, c.has_hit) for c in fp] == [(fp[0].story_id, False)]
    batch = [
        NewArticle(wire(2, "Nashville sheriff ends ICE deal"), match()),
        NewArticle(wire(3, "ICE deal ends in Nashville"), match()),
    ]
    hit_ids = store.record_poll(poll_update(a.id), batch, NOW)
    assert len(hit_ids) == 1
    hit = store.get_hit(hit_ids[0])
    assert hit is not None and len(hit.articles) == 3


def test_statements_on_the_driver_share_the_transaction_and_its_errors(store: Storage) -> None:
    """``driver_execute`` (the poll's widest statements, bypassing SQLAlchemy's execution
    layer) runs in the session's own transaction and raises SQLAlchemy's error classes, on
    which storing's conflict retries and StorageError rest."""
    from sqlalchemy.exc import IntegrityError

    from service.storage.stories import _mark, driver_execute

    a, _ = store.add_feed("https://a.example/rss", NOW)
    store.record_poll(poll_update(a.id), [NewArticle(wire(1, "Jail news"), None)], NOW)
    count = "SELECT COUNT(*) FROM story_bands WHERE seen_at = 7"

    class Undone(Exception):
        pass

    with pytest.raises(Undone), store._session() as s:
        conn = s.connection()
        (article_id,) = driver_execute(conn, "SELECT id FROM articles")[0]
        q = _mark(conn)
        rows = [(key, article_id, 7) for key in (11, 12, 13)]
        insert = f"INSERT INTO story_bands (band_key, article_id, seen_at) VALUES ({q}, {q}, {q})"
        assert driver_execute(conn, insert, rows, many=True) == []
        assert driver_execute(conn, count) == [(3,)]
        assert conn.exec_driver_sql(count).scalar() == 3  # the same transaction
        raise Undone
    with store._session() as s:
        assert driver_execute(s.connection(), count) == [(0,)]  # rolled back with the session
    with pytest.raises(IntegrityError), store._session() as s:
        twice = [(11, article_id, 7), (11, article_id, 7)]
        driver_execute(s.connection(), insert, twice, many=True)
    with store._session() as s:
        assert driver_execute(s.connection(), count) == [(0,)]


@pytest.mark.parametrize(
    "outcome",
    [
        {},  # a plain 200 with an ETag
        {"status": FetchStatus.NOT_MODIFIED, "http_status": 304, "items_per_hour": 0.25},
        {
            "status": FetchStatus.ERROR,
            "http_status": 503,
            "error": 'HTTP 503 Service Unavailable; O\'Brien said "later"',
            "error_count": 3,
            "failing_since": NOW - timedelta(days=2, microseconds=7),
            "etag": None,
        },
        {"last_modified": "Sat, 05 Dec 2026 10:00:00 GMT", "body_hash": "ab" * 32},
    ],
)
def test_feed_updates_on_the_driver_write_what_the_orm_writes(
    store: Storage, outcome: dict[str, object]
) -> None:
    """``write_feed_updates`` (one executemany on the driver per set of columns, the 304
    poll's path) leaves a feed row as setting the same values through the ORM does
    (``_apply_feed_update``, the path of moves and disablings), on both databases."""
    from sqlmodel import select

    from service.storage.feeds import write_feed_updates
    from service.storage.tables import FeedRow

    ours, _ = store.add_feed("https://a.example/rss", NOW)
    theirs, _ = store.add_feed("https://b.example/rss", NOW)
    update_ = replace(
        poll_update(ours.id),
        checked_at=NOW + timedelta(microseconds=123),
        next_check_at=NOW + timedelta(minutes=17, microseconds=5),
        **outcome,  # type: ignore[arg-type]
    )
    with store._session() as s:
        write_feed_updates(s, [update_])
        row = s.get(FeedRow, theirs.id)
        assert row is not None
        store._apply_feed_update(row, replace(update_, feed_id=theirs.id))
    with store._session() as s:
        rows = {r.id: r.model_dump() for r in s.exec(select(FeedRow)).all()}
    differ = {"id", "url"}  # the two feeds' own
    written = {k: v for k, v in rows[ours.id].items() if k not in differ}
    expected = {k: v for k, v in rows[theirs.id].items() if k not in differ}
    assert written == expected
    assert written["last_checked_at"] is not None and written["lease_until"] is None


def test_poll_outcome_moves_disables_and_tracks_failures(store: Storage) -> None:
    """Polling state of migration 0002: rate, failure run, permanent moves, disabling."""
    old, _ = store.add_feed("https://a.example/old", NOW)
    taken, _ = store.add_feed("https://a.example/taken", NOW)
    later = NOW + timedelta(hours=1)
    store.update_feed(
        replace(
            poll_update(old.id),
            items_per_hour=2.5,
            moved_to="https://a.example/new",
        )
    )
    moved = store.get_feed(str(old.id))
    assert moved is not None and moved.url == "https://a.example/new"
    # A move to the URL it has, spelled otherwise, is no move.
    store.update_feed(replace(poll_update(old.id), moved_to="https://A.EXAMPLE/new#x"))
    assert (store.get_feed(str(old.id)) or moved).url == "https://a.example/new"
    assert moved.items_per_hour == 2.5 and moved.failing_since is None
    failing = replace(
        poll_update(old.id),
        status=FetchStatus.ERROR,
        error="HTTP 500",
        error_count=1,
        failing_since=later,
    )
    store.update_feed(failing)
    assert (store.get_feed(str(old.id)) or moved).failing_since == later
    # A move onto a URL another feed has (in any spelling) disables the duplicate instead.
    store.update_feed(replace(poll_update(old.id), moved_to="HTTPS://A.example:443/taken"))
    duplicate = store.get_feed(str(old.id))
    assert duplicate is not None and not duplicate.enabled
    assert duplicate.url == "https://a.example/new"
    assert duplicate.disabled_reason is not None and f"feed {taken.id}" in duplicate.disabled_reason
    assert duplicate.next_check_at is None and duplicate.disabled_at is not None
    assert [f.id for f in store.due_feeds(NOW + timedelta(days=30))] == [taken.id]


def test_a_batch_of_polls_updates_each_feed_and_names_a_vanished_one(store: Storage) -> None:
    """record_polls loads the batch's feed rows together: each gets its own outcome."""
    feeds = [store.add_feed(f"https://b.example/{n}", NOW)[0] for n in range(3)]
    store.record_polls(
        [
            (replace(poll_update(feeds[0].id), status=FetchStatus.NOT_MODIFIED, etag='"x"'), []),
            (poll_update(feeds[1].id, 1), [NewArticle(article(7), None)]),
            (replace(poll_update(feeds[2].id), status=FetchStatus.ERROR, error_count=2), []),
        ],
        NOW,
    )
    after = [store.get_feed(str(f.id)) for f in feeds]
    assert [f.last_status if f else None for f in after] == ["not_modified", "ok", "error"]
    assert [f.etag if f else None for f in after] == ['"x"', '"e1"', None]
    assert [f.error_count if f else None for f in after] == [0, 0, 2]
    with pytest.raises(StorageError, match="feed 999999 vanished"):
        store.record_polls([(poll_update(feeds[1].id), []), (poll_update(999_999), [])], NOW)
    # The batch is one transaction: the other feed's outcome was not stored either.
    assert (store.get_feed(str(feeds[1].id)) or feeds[1]).etag == '"e1"'
    assert (store.get_feed(str(feeds[1].id)) or feeds[1]).last_new_items == 1
