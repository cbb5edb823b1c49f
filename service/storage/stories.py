"""Story lookup for the poll transaction: candidates by URL, content hash and LSH band key.

Storage only looks candidates up and writes band keys; which story an article joins is
decided by the pure ``service.stories.assign_stories``. ``lock_stories`` serialises story
assignment between workers on PostgreSQL, so two workers storing copies of one story at
the same moment cannot both start it (SQLite has one writer at a time anyway).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, col, select

from service.storage.base import _utc
from service.storage.tables import ArticleRow, HitRow
from service.stories import StoryPolicy, candidate_window, seen_at
from service.types import Article, Fingerprint, StoryCandidate

# Rows per IN (...) list: far below SQLite's 32,766 bound parameters and PostgreSQL's 65,535.
IN_CHUNK = 500
# Articles sharing a band key that one lookup returns at most. Band keys of copies are
# shared by a handful of articles; a key shared by hundreds is a stock phrase, and the
# exact comparison of each candidate costs a fingerprint (~0.15 ms), so this bounds a poll.
MAX_BAND_CANDIDATES = 500
# Key of the PostgreSQL transaction-level advisory lock taken around story assignment
# (any constant unique within the database; "dw-story" in ASCII).
STORY_LOCK_KEY = 0x64772D73746F7279


def _chunks(values: Iterable[Any]) -> Iterable[list[Any]]:
    items = list(values)
    for i in range(0, len(items), IN_CHUNK):
        yield items[i : i + IN_CHUNK]


def _mark(conn: Any) -> str:
    """The driver's positional placeholder: ``?`` (sqlite3) or ``%s`` (psycopg)."""
    return "?" if conn.dialect.paramstyle == "qmark" else "%s"


def driver_execute(
    conn: Connection, statement: str, params: Any = (), many: bool = False
) -> list[Any]:
    """Run ``statement`` on the DBAPI connection under ``conn`` (a session's connection: in
    its transaction) and return its rows; ``many``: ``executemany`` over ``params``, no rows.

    For the poll's widest statements, whose SQL is written here for the driver (~10 a
    feed): SQLAlchemy's ``exec_driver_sql`` builds an execution context and a result's
    metadata for each, about a fifth of ``record_polls``' time in py-spy of bench_poll's
    first poll. Driver errors are raised as SQLAlchemy's own classes (``IntegrityError``,
    ``OperationalError``, ...), as ``exec_driver_sql`` raises them."""
    error = conn.dialect.loaded_dbapi.Error
    cursor = conn.connection.cursor()
    try:
        if many:
            cursor.executemany(statement, params)
            return []
        cursor.execute(statement, params)
        return list(cursor.fetchall()) if cursor.description is not None else []
    except error as e:
        raise DBAPIError.instance(statement, params, e, error) from e
    finally:
        cursor.close()


def lock_stories(s: Session) -> None:
    """Hold the story-assignment lock until this transaction ends (PostgreSQL only)."""
    bind = s.get_bind()
    if bind.dialect.name == "postgresql":
        s.connection().execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": STORY_LOCK_KEY})


def _in_rows(s: Session, sql: str, values: Iterable[Any], *after: Any) -> list[Any]:
    """Run ``sql`` with ``{in}`` replaced by a placeholder list, once per IN_CHUNK values,
    straight on the driver; ``after`` are the parameters that follow the list.

    The poll's look-ups take hundreds of values (32 band keys per article); SQLAlchemy's
    per-value coercion and expansion of ``in_()`` lists cost more than the queries
    themselves (bench/bench_poll.py), and these few statements need nothing else of it.
    """
    conn = s.connection()
    mark = _mark(conn)
    rows: list[Any] = []
    for chunk in _chunks(values):
        marks = ", ".join([mark] * len(chunk))
        statement = sql.replace("{in}", marks).replace("{?}", mark)
        rows.extend(driver_execute(conn, statement, (*chunk, *after)))
    return rows


def story_candidates(
    s: Session,
    articles: Sequence[Article],
    fingerprints: Sequence[Fingerprint],
    policy: StoryPolicy,
    now: datetime,
) -> list[StoryCandidate]:
    """Stored sightings the articles might join: same canonical URL or content hash (any
    time), or a shared band key within the window around the articles' times."""
    if not articles:
        return []
    ids: set[int] = set()
    urls = {a.url for a in articles if a.url}
    ids.update(r[0] for r in _in_rows(s, "SELECT id FROM articles WHERE url IN ({in})", urls))
    hashes = {a.content_hash for a in articles}
    ids.update(
        r[0] for r in _in_rows(s, "SELECT id FROM articles WHERE content_hash IN ({in})", hashes)
    )
    keys = {k for fp in fingerprints for k in fp.band_keys}
    if keys:
        since, until = candidate_window((seen_at(a, now) for a in articles), policy)
        found: set[int] = set()
        for chunk in _chunks(keys):
            found.update(
                r[0]
                for r in _in_rows(
                    s,
                    "SELECT DISTINCT article_id FROM story_bands WHERE band_key IN ({in}) "
                    "AND seen_at >= {?} AND seen_at <= {?} LIMIT {?}",
                    chunk,
                    _epoch(since),
                    _epoch(until),
                    MAX_BAND_CANDIDATES - len(found),
                )
            )
            if len(found) >= MAX_BAND_CANDIDATES:
                break
        ids |= found
    if not ids:
        return []
    rows: list[ArticleRow] = []
    for chunk in _chunks(sorted(ids)):
        rows.extend(s.exec(select(ArticleRow).where(col(ArticleRow.id).in_(chunk))).all())
    with_hit: set[int] = set()
    for chunk in _chunks({r.story_id for r in rows}):
        with_hit.update(s.exec(select(HitRow.story_id).where(col(HitRow.story_id).in_(chunk))))
    return [
        StoryCandidate(
            story_id=r.story_id,
            url=r.url,
            content_hash=r.content_hash,
            title=r.title,
            summary=r.summary,
            text=r.text,
            seen_at=_utc(r.published_at) or _utc(r.first_seen_at) or now,
            has_hit=r.story_id in with_hit,
        )
        for r in sorted(rows, key=lambda r: r.id or 0)
    ]


def known_guids(s: Session, feed_id: int, guids: Iterable[str]) -> set[str]:
    """Which of these entry ids the feed has already stored (one query per IN_CHUNK)."""
    rows = _in_rows(
        s, "SELECT guid FROM articles WHERE guid IN ({in}) AND feed_id = {?}", set(guids), feed_id
    )
    return {r[0] for r in rows}


def bind_processors(conn: Connection, table: Any, names: Sequence[str]) -> list[Any]:
    """SQLAlchemy's bind processing of these columns of ``table``, in order (``None`` where
    a value goes to the driver as it is), for the statements written here for the driver,
    which would otherwise skip it."""
    dialect = conn.dialect
    return [table.c[n].type.dialect_impl(dialect).bind_processor(dialect) for n in names]


def insert_returning_ids(
    s: Session, model: Any, rows: Sequence[dict[str, Any]], key: str
) -> list[int]:
    """Insert rows of an integer-keyed table and return their new ids in the order given.

    One multi-row INSERT ... RETURNING per IN_CHUNK rows (SQLite >= 3.35, PostgreSQL),
    written here and run on the driver with each column type's own bind processing:
    SQLAlchemy either runs one statement per row for ordered RETURNING on SQLite or
    compiles a multi-row VALUES anew each time at ~20 us a value (bench/bench_poll.py).
    Neither database promises RETURNING in VALUES order, so ids are matched back to rows
    by ``key``, a column whose values are distinct among ``rows``."""
    if not rows:
        return []
    table = model.__table__
    conn = s.connection()
    names = list(rows[0])
    process = bind_processors(conn, table, names)
    mark = _mark(conn)
    quote = conn.dialect.identifier_preparer.quote
    head = f"INSERT INTO {quote(table.name)} ({', '.join(quote(n) for n in names)}) VALUES "
    row_marks = "(" + ", ".join([mark] * len(names)) + ")"
    tail = f" RETURNING {quote('id')}, {quote(key)}"
    id_of: dict[Any, int] = {}
    for chunk in _chunks(rows):
        params = [
            value if proc is None else proc(value)
            for row in chunk
            for value, proc in zip((row[n] for n in names), process, strict=True)
        ]
        statement = head + ", ".join([row_marks] * len(chunk)) + tail
        for new_id, value in driver_execute(conn, statement, tuple(params)):
            id_of[value] = new_id
    if len(id_of) != len(rows):
        raise ValueError(f"insert_returning_ids: {key} is not distinct among the rows")
    return [id_of[row[key]] for row in rows]


def _epoch(moment: datetime) -> int:
    """Whole seconds since 1970 (``story_bands.seen_at``); naive times are UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def add_story_keys(s: Session, articles: Iterable[tuple[int, Fingerprint, datetime]]) -> None:
    """Index stored articles' band keys for later near-duplicate lookups; ``articles`` are
    (article id, fingerprint, seen at).

    Straight to the driver, bypassing SQLAlchemy's per-row parameter processing: 32 rows
    per article make this the widest insert of a poll. SQLite: one executemany (in-process,
    cheap per row). PostgreSQL: one statement over three arrays (``unnest``), not one
    statement per row, which cost the server ~0.9 ms CPU per article
    (bench/bench_workers.py)."""
    rows = [
        (key, article_id, epoch)
        for article_id, fp, at in articles
        for epoch in (_epoch(at),)
        for key in fp.band_keys
    ]
    if not rows:
        return
    conn = s.connection()
    if conn.dialect.name == "postgresql":
        keys, article_ids, epochs = (list(column) for column in zip(*rows, strict=True))
        driver_execute(
            conn,
            "INSERT INTO story_bands (band_key, article_id, seen_at) "
            "SELECT * FROM unnest(%s::bigint[], %s::integer[], %s::bigint[])",
            (keys, article_ids, epochs),
        )
        return
    driver_execute(
        conn,
        "INSERT INTO story_bands (band_key, article_id, seen_at) VALUES (?, ?, ?)",
        rows,
        many=True,
    )
