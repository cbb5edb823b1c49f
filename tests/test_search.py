"""Search syntax, cursors, and the hit query contract of storage on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import math
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import text

from service.errors import QueryError
from service.search import (
    Cursor,
    decode_cursor,
    encode_cursor,
    marked_snippet,
    parse_query,
    to_fts5,
    to_tsquery,
)
from service.storage import Storage, make_engine, migrate
from service.storage.engine import _alembic_config
from service.types import Article, HitQuery, Jurisdiction, NewArticle
from tests.test_storage import NOW, match, poll_update

# ---------------------------------------------------------------- syntax (pure)


@pytest.mark.parametrize(
    ("query", "fts5", "tsquery"),
    [
        ("detainer", '"detainer"', "'detainer'"),
        ("ICE detainer", '("ice" AND "detainer")', "('ice' & 'detainer')"),
        ('"sanctuary city"', '"sanctuary city"', "('sanctuary' <-> 'city')"),
        ("ice OR cbp", '("ice" OR "cbp")', "('ice' | 'cbp')"),
        ("detainer NOT texas", '(("detainer") NOT "texas")', "('detainer' & !'texas')"),
        ("detainer -texas", '(("detainer") NOT "texas")', "('detainer' & !'texas')"),
        ("(ice OR cbp) AND jail", '(("ice" OR "cbp") AND "jail")', "(('ice' | 'cbp') & 'jail')"),
        ("deport*", '"deport"*', "'deport':*"),
        ("287(g)", '("287" AND "g")', "('287' & 'g')"),
        ("O'Brien's", '"o brien s"', "('o' <-> 'brien' <-> 's')"),
    ],
)
def test_queries_render_for_both_databases(query: str, fts5: str, tsquery: str) -> None:
    node = parse_query(query)
    assert to_fts5(node) == fts5
    assert to_tsquery(node) == tsquery


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ('"unclosed', "closing quote"),
        ("(ice OR cbp", "not closed"),
        ("ice)", "no opening"),
        ("NOT texas", "NOT excludes"),
        ("ice OR", "OR needs"),
        ("AND ice", "AND needs"),
        ("ice NOT", "NOT needs"),
        ("", "empty"),
        ("!!!", "no letters"),
        ("x" * 501, "at most"),
    ],
)
def test_bad_queries_say_what_is_wrong(query: str, says: str) -> None:
    with pytest.raises(QueryError, match=says) as e:
        parse_query(query)
    assert e.value.param == "q"


def test_cursors_round_trip_and_old_integer_cursors_still_work() -> None:
    c = Cursor("score", 42, 0.8123456789)
    assert decode_cursor(encode_cursor(c), "score") == c
    assert decode_cursor("17", "newest") == Cursor("newest", 17)
    assert decode_cursor(17, "newest") == Cursor("newest", 17)
    forged = [  # made up, not given out: deep nesting raised RecursionError, NaN paged
        (base64.urlsafe_b64encode(b"[" * 100_000).decode(), "newest"),
        (encode_cursor(Cursor("score", 1, math.nan)), "score"),
        ("\u00b9", "newest"),  # str.isdigit() is true, int() raised
    ]
    for bad, sort in (
        ("garbage!", "newest"),
        (encode_cursor(c), "newest"),
        ("17", "score"),
        *forged,
    ):
        with pytest.raises(QueryError) as e:
            decode_cursor(bad, sort)
        assert e.value.param == "cursor"


def test_snippets_are_escaped_html() -> None:
    assert marked_snippet("<b>\x02ICE\x03</b>") == "&lt;b&gt;<mark>ICE</mark>&lt;/b&gt;"


# ---------------------------------------------------------------- storage contract

TEXTS = [
    ("Boston declines ICE detainer", "The sheriff declined a detainer request.", "MA", "Boston"),
    (
        "Sanctuary city vote in Chicago",
        "Aldermen voted on the sanctuary ordinance.",
        "IL",
        "Chicago",
    ),
    (
        "Texas jail honors detainers",
        "The county jail honored ICE detainers.",
        "TX",
        "Harris County",
    ),
    ("Deportation flights resume", "Flights deporting people resumed from Boston.", "MA", "Boston"),
]


def _article(n: int, title: str, summary: str, source: str = "Example News") -> Article:
    return Article(
        url=f"https://news.example/s{n}",
        guid=f"s{n}",
        title=title,
        summary=summary,
        # Distinct words per story, so that near-duplicate grouping keeps them apart.
        text=f"{' '.join(f'w{n}x{i}' for i in range(40))} alert if 5 < 6 & 287(g) program.",
        published_at=NOW - timedelta(days=n),
        source=source,
        content_hash=f"h{n}",
    )


def _seed(store: Storage) -> list[int]:
    feed, _ = store.add_feed("https://a.example/rss", NOW)
    ids: list[int] = []
    for n, (title, summary, state, place) in enumerate(TEXTS):
        m = replace(
            match(0.5 + n / 10, ("sanctuary",) if "anctuary" in title else ("detainer", "287g")),
            jurisdictions=(Jurisdiction(place, "city", state), Jurisdiction(state, "state", state)),
            event_type="vote" if "vote" in title else "detainer_declined",
        )
        ids += store.record_poll(
            poll_update(feed.id),
            [NewArticle(_article(n, title, summary, "Globe" if n % 2 else "Herald"), m)],
            NOW,
        )
    return ids


def _titles(store: Storage, **kw: object) -> list[str]:
    return [h.title for h in store.list_hits(HitQuery(limit=50, **kw))[0]]  # type: ignore[arg-type]


def test_full_text_search_with_operators_and_snippets(store: Storage) -> None:
    _seed(store)
    assert _titles(store, q="detainer") == [
        "Texas jail honors detainers",
        "Boston declines ICE detainer",
    ]
    assert _titles(store, q="detainer", sort="score", state="TX") == ["Texas jail honors detainers"]
    page, cursor = store.list_hits(HitQuery(q="detainer OR deport*", limit=1))
    assert [h.title for h in page] == ["Deportation flights resume"] and cursor
    rest = store.list_hits(HitQuery(q="detainer OR deport*", limit=5, cursor=cursor))[0]
    assert [h.title for h in rest] == [
        "Texas jail honors detainers",
        "Boston declines ICE detainer",
    ]
    assert _titles(store, q='"sanctuary ordinance"') == ["Sanctuary city vote in Chicago"]
    assert _titles(store, q='"ordinance sanctuary"') == []
    assert _titles(store, q="detainer NOT texas") == ["Boston declines ICE detainer"]
    assert _titles(store, q="chicago OR flights") == [
        "Deportation flights resume",
        "Sanctuary city vote in Chicago",
    ]
    assert _titles(store, q="deport*") == ["Deportation flights resume"]
    assert len(_titles(store, q="287 program")) == 4  # the text is indexed too
    hit = store.list_hits(HitQuery(q="sheriff"))[0][0]
    assert hit.snippet is not None and "<mark>sheriff</mark>" in hit.snippet.lower()
    script = store.list_hits(HitQuery(q="alert"))[0][0].snippet
    assert script is not None and "5 &lt; 6 &amp; 287" in script
    assert store.list_hits(HitQuery(topic="sanctuary"))[0][0].snippet is None
    with pytest.raises(QueryError):
        store.list_hits(HitQuery(q='"open'))


def test_filters_on_topic_place_source_and_time(store: Storage) -> None:
    _seed(store)
    assert _titles(store, topic="287G") == [
        "Deportation flights resume",
        "Texas jail honors detainers",
        "Boston declines ICE detainer",
    ]
    assert _titles(store, state="ma") == [
        "Deportation flights resume",
        "Boston declines ICE detainer",
    ]
    assert _titles(store, jurisdiction="harris county") == ["Texas jail honors detainers"]
    assert _titles(store, jurisdiction="Boston, MA") == _titles(store, state="ma")
    assert _titles(store, jurisdiction="Bost") == []  # exact names, not prefixes
    assert _titles(store, source="globe") == [
        "Deportation flights resume",
        "Sanctuary city vote in Chicago",
    ]
    assert _titles(store, event="vote", state="IL") == ["Sanctuary city vote in Chicago"]
    assert _titles(store, since=NOW - timedelta(days=1, hours=1)) == [
        "Sanctuary city vote in Chicago",
        "Boston declines ICE detainer",
    ]
    assert _titles(store, until=NOW - timedelta(days=2)) == ["Deportation flights resume"]


def test_score_sort_pages_stay_stable_while_hits_arrive(store: Storage) -> None:
    _seed(store)
    page1, cursor = store.list_hits(HitQuery(sort="score", limit=2))
    assert [h.score for h in page1] == [0.8, 0.7] and cursor is not None
    feed = store.list_feeds()[0]
    # A new hit that sorts before the cursor and one tying with the next row: neither shifts.
    for n, score in ((10, 0.95), (11, 0.6)):
        store.record_poll(
            poll_update(feed.id), [NewArticle(_article(n, f"New {n}", "x"), match(score))], NOW
        )
    page2, cursor2 = store.list_hits(HitQuery(sort="score", limit=2, cursor=cursor))
    # New 11 ties on score with the Chicago hit and has the larger id: it is after the
    # cursor, so it appears here, once; New 10 sorts before the cursor and never does.
    assert [h.title for h in page2] == ["New 11", "Sanctuary city vote in Chicago"]
    page3, cursor3 = store.list_hits(HitQuery(sort="score", limit=2, cursor=cursor2))
    assert [h.title for h in page3] == ["Boston declines ICE detainer"] and cursor3 is None
    every = list(store.iter_hits(HitQuery(sort="score")))
    assert [h.score for h in every] == sorted((h.score for h in every), reverse=True)
    assert len(every) == 6 and len(list(store.iter_hits(HitQuery(), total=4))) == 4


def test_stats_and_jurisdictions_count_any_filter(store: Storage) -> None:
    ids = _seed(store)
    stats = store.hit_stats(HitQuery())
    assert stats.total == 4
    assert [d for d, _ in stats.by_day] == [
        (NOW - timedelta(days=n)).date().isoformat() for n in (3, 2, 1, 0)
    ]
    assert dict(stats.by_topic) == {"detainer": 3, "287g": 3, "sanctuary": 1}
    assert dict(stats.by_state) == {"MA": 2, "IL": 1, "TX": 1}
    assert ("Boston", "city", "MA", 2) in stats.by_jurisdiction
    assert store.hit_stats(HitQuery(state="MA", q="flights")).total == 1
    places = {(p.name, p.kind): p for p in store.jurisdictions(HitQuery())}
    boston = places[("Boston", "city")]
    assert boston.hits == 2 and boston.latest_hit_id == ids[3]
    assert boston.latest_title == "Deportation flights resume"
    assert [p.name for p in store.jurisdictions(HitQuery(topic="sanctuary"))] == ["Chicago", "IL"]
    counts = store.metric_counts()
    assert counts["hits"] == {"": 4} and counts["deliveries"] == {}


def test_search_index_is_backfilled_and_kept_by_triggers_at_head(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    command.upgrade(_alembic_config(engine), "0004")
    with engine.begin() as conn:  # a hit written by 0004-era code
        conn.execute(
            text(
                "INSERT INTO feeds (url, origin, enabled, error_count, "
                "last_new_items) VALUES ('https://a.example/rss', 'user', 1, 0, 0)"
            )
        )
        conn.execute(text("INSERT INTO stories (content_hash) VALUES ('h')"))
        conn.execute(
            text(
                "INSERT INTO articles (feed_id, story_id, guid, url, title, summary, text, "
                "source, content_hash) VALUES (:f, 1, 'g', 'u', 't', 'Old sheriff story', '', "
                "'s', 'h')"
            ),
            {"f": 1},
        )
        conn.execute(
            text(
                "INSERT INTO hits (story_id, article_id, title, url, source, score, topics, "
                "jurisdictions, entities, evidence, rules, ruleset_version) VALUES (1, 1, "
                "'Old hit', 'u', 's', 0.9, '[\"detainer\"]', "
                '\'[{"name": "Boston", "kind": "city", "state": "ma"}]\', \'[]\', \'[]\', '
                "'[]', 'v')"
            )
        )
    migrate(engine)
    old = Storage(engine)
    assert _titles(old, q="sheriff") == ["Old hit"]
    assert _titles(old, state="MA", topic="detainer") == ["Old hit"]
    with engine.connect() as conn:
        triggers = {
            r[0] for r in conn.execute(text("SELECT name FROM sqlite_master WHERE type='trigger'"))
        }
    assert {"hits_search_insert", "hits_search_delete"} <= triggers
    old.close()


def test_migration_0005_downgrades_cleanly(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'down.db'}")
    migrate(engine)
    command.downgrade(_alembic_config(engine), "0004")
    with engine.connect() as conn:
        names = {r[0] for r in conn.execute(text("SELECT name FROM sqlite_master"))}
    assert not {"hits_fts", "hit_topics", "hit_places", "hits_search_doc"} & names
    engine.dispose()


def test_search_pages_are_the_same_from_the_index_or_from_the_matches(store: Storage) -> None:
    """PostgreSQL pages a search with few matches (``few_matches``) from its matches, sorted,
    and one with many by walking the id or score index; both give the same pages. SQLite
    always pages on the FTS5 rowids, so there the threshold changes nothing."""
    _seed(store)
    feed = store.list_feeds()[0]
    for n in range(10, 40):
        store.record_poll(
            poll_update(feed.id),
            [
                NewArticle(
                    _article(n, f"County detainer story {n}", "A detainer request."),
                    match(round(0.5 + (n % 7) / 20, 2)),  # ties on score, ordered by id
                )
            ],
            NOW,
        )
    if store.engine.dialect.name == "postgresql":
        store.few_matches = 5
        with store._session() as s:
            assert store._few_matches(s, HitQuery(q="flights"), None)
            assert not store._few_matches(s, HitQuery(q="detainer"), None)
            # Counted after the cursor: near the end of the list, few are left.
            assert store._few_matches(s, HitQuery(q="detainer"), Cursor("newest", 4, None))

    def walk(q: HitQuery) -> list[int]:
        ids: list[int] = []
        cursor = None
        while True:
            page, cursor = store.list_hits(replace(q, cursor=cursor, limit=4))
            ids += [h.id for h in page]
            if cursor is None:
                return ids

    for words in ("detainer", "flights", "detainer OR deport*", "detainer NOT texas", "zzz"):
        for sort in ("newest", "score"):
            q = HitQuery(q=words, sort=sort)
            store.few_matches = 0  # never few: down the index
            by_index = walk(q)
            store.few_matches = 10**6  # always few: from the matches
            assert walk(q) == by_index, (words, sort)
            every = list(store.iter_hits(q))
            assert [h.id for h in every] == by_index
            if sort == "score":
                assert by_index == [h.id for h in sorted(every, key=lambda h: (-h.score, -h.id))]
            else:
                assert by_index == sorted(by_index, reverse=True)
            assert len(set(by_index)) == len(by_index)
    assert len(walk(HitQuery(q="detainer"))) == 32
