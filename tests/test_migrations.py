"""Upgrading keeps all data, from every earlier schema, on SQLite and on PostgreSQL.

For each revision before head: an empty database is migrated to that revision, a newsroom's
worth of rows is written into it as that release stored them (feeds with their health, two
sightings of one story and another story, a hit, a subscription and a delivery in the middle
of its retries), then ``migrate`` takes it to head and the service reads every row back
through the storage class. The rows use only the columns of the first schema, which every
later one keeps; what later revisions derive from them (search index, topic and place rows,
near-duplicate keys) is rebuilt by their backfills and checked here through the API.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory

from service.storage import Storage, current_revision, head_revision, make_engine, migrate
from service.storage.engine import MIGRATIONS_DIR, _alembic_config, _revisions
from service.types import HitQuery
from tests.fleet import scratch_database

# Oldest first; head excluded (upgrading it is a no-op, test_storage checks that).
EARLIER = [
    s.revision
    for s in reversed(list(ScriptDirectory(str(MIGRATIONS_DIR)).walk_revisions()))
    if s.revision != head_revision()
]
REPO = Path(__file__).resolve().parents[1]
THEN = datetime(2025, 1, 20, 9, 30, tzinfo=UTC)
SHERIFF = (
    "The Suffolk County sheriff said the jail declined 41 immigration detainer requests from "
    "ICE last year under the Boston Trust Act, releasing people instead of holding them."
)

feeds = sa.table(
    "feeds",
    *(sa.column(c) for c in ("id", "url", "name", "origin", "interval_s", "enabled", "etag")),
    *(sa.column(c) for c in ("last_status", "last_http_status", "last_error", "error_count")),
    sa.column("last_new_items"),
    sa.column("last_checked_at", sa.DateTime(timezone=True)),
    sa.column("next_check_at", sa.DateTime(timezone=True)),
    sa.column("created_at", sa.DateTime(timezone=True)),
)
stories = sa.table(
    "stories",
    *(sa.column(c) for c in ("id", "canonical_url", "content_hash")),
    sa.column("first_seen_at", sa.DateTime(timezone=True)),
)
articles = sa.table(
    "articles",
    *(sa.column(c) for c in ("id", "feed_id", "story_id", "guid", "url", "title", "summary")),
    *(sa.column(c) for c in ("text", "source", "author", "content_hash")),
    sa.column("published_at", sa.DateTime(timezone=True)),
    sa.column("first_seen_at", sa.DateTime(timezone=True)),
)
hits = sa.table(
    "hits",
    *(sa.column(c) for c in ("id", "story_id", "article_id", "title", "url", "source")),
    *(sa.column(c) for c in ("score", "event_type", "ruleset_version")),
    *(sa.column(c, sa.JSON) for c in ("topics", "jurisdictions", "entities", "evidence", "rules")),
    sa.column("published_at", sa.DateTime(timezone=True)),
    sa.column("first_seen_at", sa.DateTime(timezone=True)),
)
subscriptions = sa.table(
    "subscriptions",
    *(sa.column(c) for c in ("id", "url", "name", "origin", "format", "secret", "min_score")),
    sa.column("topics", sa.JSON),
    sa.column("enabled"),
    sa.column("created_at", sa.DateTime(timezone=True)),
)
deliveries = sa.table(
    "deliveries",
    *(sa.column(c) for c in ("id", "hit_id", "subscription_id", "webhook_id", "event_type")),
    *(sa.column(c) for c in ("status", "attempts", "last_http_status", "last_error")),
    sa.column("next_attempt_at", sa.DateTime(timezone=True)),
    sa.column("created_at", sa.DateTime(timezone=True)),
)


def write_old_rows(conn: sa.Connection) -> None:
    conn.execute(
        sa.insert(feeds),
        [
            {
                "id": 1,
                "url": "https://globe.example/rss",
                "name": "The Globe",
                "origin": "config",
                "interval_s": 600.0,
                "enabled": True,
                "etag": '"v7"',
                "last_status": "ok",
                "last_http_status": 200,
                "last_error": None,
                "error_count": 0,
                "last_new_items": 2,
                "last_checked_at": THEN,
                "next_check_at": THEN + timedelta(minutes=10),
                "created_at": THEN - timedelta(days=30),
            },
            {
                "id": 2,
                "url": "https://wire.example/feed",
                "name": None,
                "origin": "user",
                "interval_s": None,
                "enabled": True,
                "etag": None,
                "last_status": "error",
                "last_http_status": 503,
                "last_error": "HTTP 503",
                "error_count": 3,
                "last_new_items": 0,
                "last_checked_at": THEN,
                "next_check_at": THEN + timedelta(hours=1),
                "created_at": THEN - timedelta(days=2),
            },
        ],
    )
    conn.execute(
        sa.insert(stories),
        [
            {"id": 1, "canonical_url": "https://globe.example/sheriff", "content_hash": "h1"},
            {"id": 2, "canonical_url": "https://globe.example/council", "content_hash": "h3"},
        ],
    )
    article = {"author": None, "published_at": THEN, "first_seen_at": THEN, "text": ""}
    conn.execute(
        sa.insert(articles),
        [
            article
            | {
                "id": 1,
                "feed_id": 1,
                "story_id": 1,
                "guid": "globe-1",
                "url": "https://globe.example/sheriff",
                "title": "Sheriff declined 41 ICE detainers",
                "summary": SHERIFF,
                "source": "The Globe",
                "content_hash": "h1",
            },
            article
            | {
                "id": 2,
                "feed_id": 2,
                "story_id": 1,
                "guid": "wire-77",
                "url": "https://wire.example/77",
                "title": "Boston jail turned down detainer requests",
                "summary": SHERIFF,
                "source": "Wire",
                "content_hash": "h2",
            },
            article
            | {
                "id": 3,
                "feed_id": 1,
                "story_id": 2,
                "guid": "globe-2",
                "url": "https://globe.example/council",
                "title": "Council passes the budget",
                "summary": "The city council passed the budget on Tuesday.",
                "source": "The Globe",
                "content_hash": "h3",
            },
        ],
    )
    conn.execute(
        sa.insert(hits),
        {
            "id": 1,
            "story_id": 1,
            "article_id": 1,
            "title": "Sheriff declined 41 ICE detainers",
            "url": "https://globe.example/sheriff",
            "source": "The Globe",
            "score": 0.93,
            "event_type": "detainer_declined",
            "ruleset_version": "2025.1.0",
            "topics": ["detainer", "sanctuary"],
            "jurisdictions": [{"name": "Boston", "kind": "city", "state": "MA"}],
            "entities": [{"type": "agency", "text": "ICE", "canonical": "ICE"}],
            "evidence": [
                {"field": "title", "sentence": "x", "start": 0, "end": 7, "terms": ["sheriff"]}
            ],
            "rules": [],
            "published_at": THEN,
            "first_seen_at": THEN,
        },
    )
    conn.execute(
        sa.insert(subscriptions),
        {
            "id": 1,
            "url": "https://newsroom.example/hook",
            "name": "desk",
            "origin": "config",
            "format": "standard",
            "secret": "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM=",
            "min_score": 0.5,
            "topics": [],
            "enabled": True,
            "created_at": THEN,
        },
    )
    conn.execute(
        sa.insert(deliveries),
        {
            "id": 1,
            "hit_id": 1,
            "subscription_id": 1,
            "webhook_id": "msg_kept_across_the_upgrade",
            "event_type": "hit.created",
            "status": "pending",
            "attempts": 2,
            "last_http_status": 502,
            "last_error": "HTTP 502",
            "next_attempt_at": THEN + timedelta(minutes=4),
            "created_at": THEN,
        },
    )
    if conn.dialect.name == "postgresql":  # explicit ids: move the sequences past them
        for table in ("feeds", "stories", "articles", "hits", "subscriptions", "deliveries"):
            conn.execute(
                sa.text(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT max(id) FROM {table}))"
                )
            )


def check_rows_at_head(store: Storage) -> None:
    globe, wire = store.get_feed("https://globe.example/rss"), store.get_feed("2")
    assert globe is not None and wire is not None
    assert (globe.name, globe.etag, globe.interval_s, globe.last_status) == (
        "The Globe",
        '"v7"',
        600.0,
        "ok",
    )
    assert globe.last_checked_at == THEN and globe.next_check_at == THEN + timedelta(minutes=10)
    assert (wire.last_error, wire.error_count, wire.last_http_status) == ("HTTP 503", 3, 503)
    assert [f.url for f in store.list_feeds()] == [globe.url, wire.url]
    assert store.known_guids(1, ["globe-1", "globe-2", "new"]) == {"globe-1", "globe-2"}
    assert store.known_guids(2, ["wire-77"]) == {"wire-77"}

    hit = store.get_hit(1)
    assert hit is not None
    assert (hit.title, hit.score, hit.event_type, hit.ruleset_version) == (
        "Sheriff declined 41 ICE detainers",
        0.93,
        "detainer_declined",
        "2025.1.0",
    )
    assert hit.topics == ("detainer", "sanctuary")
    assert [(j["name"], j["kind"], j["state"]) for j in hit.jurisdictions] == [
        ("Boston", "city", "MA")
    ]
    assert sorted(a.source for a in hit.articles) == ["The Globe", "Wire"]  # both sightings
    # Derived by later revisions' backfills: full-text search, topic and place filters.
    for query in (HitQuery(q="sheriff"), HitQuery(topic="sanctuary"), HitQuery(state="MA")):
        assert [h.id for h in store.list_hits(query)[0]] == [1], query
    assert store.list_hits(HitQuery(q="budget"))[0] == []  # the story without a hit

    (sub,) = store.list_subscriptions()
    assert (sub.url, sub.name, sub.format, sub.enabled) == (
        "https://newsroom.example/hook",
        "desk",
        "standard",
        True,
    )
    (delivery,) = store.list_deliveries()
    assert (delivery.webhook_id, delivery.status, delivery.attempts) == (
        "msg_kept_across_the_upgrade",
        "pending",
        2,
    )
    assert (delivery.last_error, delivery.next_attempt_at) == (
        "HTTP 502",
        THEN + timedelta(minutes=4),
    )
    # The upgraded database takes new work: the retried delivery is claimed as before.
    (claim,) = store.claim_deliveries(THEN + timedelta(minutes=5))
    assert claim[0].webhook_id == "msg_kept_across_the_upgrade" and claim[2][0].id == 1


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    with scratch_database(request.getfixturevalue("pg_url")) as url:
        yield url


@pytest.mark.parametrize("revision", EARLIER)
def test_upgrade_from_each_earlier_schema_keeps_all_data(database_url: str, revision: str) -> None:
    engine = make_engine(database_url)
    try:
        command.upgrade(_alembic_config(engine), revision)
        with engine.begin() as conn:
            write_old_rows(conn)
        assert migrate(engine) == (revision, head_revision())
        check_rows_at_head(Storage(engine))
    finally:
        engine.dispose()


def test_revisions_read_from_the_files_are_alembics(database_url: str) -> None:
    # engine reads the revision graph and the applied revision without Alembic (to keep it
    # out of memory once the schema is current); Alembic must agree on both.
    from alembic.runtime.migration import MigrationContext

    script = ScriptDirectory(str(MIGRATIONS_DIR))
    assert head_revision() == script.get_current_head()
    assert set(_revisions()) == {s.revision for s in script.walk_revisions()}
    engine = make_engine(database_url)
    try:
        assert current_revision(engine) is None
        for revision in [*EARLIER, head_revision()]:
            command.upgrade(_alembic_config(engine), revision)
            with engine.connect() as conn:
                alembic_says = MigrationContext.configure(conn).get_current_revision()
            assert current_revision(engine) == alembic_says == revision
    finally:
        engine.dispose()


def test_a_current_schema_is_opened_without_loading_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'dw.db'}"
    script = (
        "import sys\n"
        "from service.storage import make_engine, migrate\n"
        f"before, after = migrate(make_engine({url!r}))\n"
        "print(before == after, 'alembic' in sys.modules)\n"
    )
    run = [sys.executable, "-c", script]
    first = subprocess.run(run, capture_output=True, text=True, check=True, cwd=REPO)
    assert first.stdout.split() == ["False", "True"]  # empty database: Alembic upgrades it
    again = subprocess.run(run, capture_output=True, text=True, check=True, cwd=REPO)
    assert again.stdout.split() == ["True", "False"]
