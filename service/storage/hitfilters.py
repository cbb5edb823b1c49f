"""SQL for a ``HitQuery``: the filters, the full-text match, the keyset order and snippets.

Works on SQLite (FTS5 table ``hits_fts``) and PostgreSQL (``hits.search_vector``), both from
migration 0005. Topics and places are matched on the side tables ``hit_topics`` and
``hit_places`` (exact, indexed), not on the JSON columns. It builds statements; ``HitStore``
runs them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    bindparam,
    column,
    func,
    table,
    text,
    tuple_,
)
from sqlalchemy import select as sa_select
from sqlalchemy.orm import Session
from sqlmodel import col, select
from sqlmodel.sql.expression import SelectOfScalar

from service.search import (
    MARK_END,
    MARK_START,
    Cursor,
    event_filter,
    parse_query,
    to_fts5,
    to_tsquery,
    topic_filter,
)
from service.storage.tables import (
    ArticleRow,
    FeedRow,
    HitPlaceRow,
    HitRow,
    HitTopicRow,
    feed_named,
)
from service.types import HitQuery

# Words of context either side of a match in a snippet.
SNIPPET_WORDS = 24
# A PostgreSQL search matching fewer hits than this is paged from its matches (GIN bitmap,
# then a sort); with more, walking the id (or score) index finds a page of them sooner. The
# planner cannot tell the two apart for rare words (it guesses ~0.3% of rows for a word
# outside its statistics) and walked all 100,000 hits for a word that matched one: 37 ms,
# against 1 ms from the matches; counting up to this many costs 1-4 ms (bench_query.py).
FEW_MATCHES = 1000


def search_expression(q: str, dialect: str) -> str:
    """The database's query string for a search (QueryError when the syntax is wrong)."""
    node = parse_query(q)
    return to_fts5(node) if dialect == "sqlite" else to_tsquery(node)


def hit_time() -> ColumnElement[Any]:
    """When a hit happened: published, else first seen."""
    return func.coalesce(HitRow.published_at, HitRow.first_seen_at)


def where_clauses(q: HitQuery, dialect: str) -> list[Any]:
    """The WHERE conditions of every filter in ``q`` (no cursor, no order)."""
    out: list[Any] = []
    hit_id = col(HitRow.id)
    # Correlated EXISTS, not IN (subquery): the planner walks hits in page order and probes
    # the side table's (key, hit_id) index per row, stopping at a page; IN would first
    # collect every matching id (16 ms against 0.7 ms at 100,000 hits, bench_query.py).
    if q.topic:
        out.append(
            select(HitTopicRow.hit_id)
            .where(HitTopicRow.hit_id == HitRow.id, HitTopicRow.topic == topic_filter(q.topic))
            .exists()
        )
    if q.event:
        out.append(col(HitRow.event_type) == event_filter(q.event))
    if q.state:
        out.append(
            select(HitPlaceRow.hit_id)
            .where(HitPlaceRow.hit_id == HitRow.id, HitPlaceRow.state == q.state.upper())
            .exists()
        )
    if q.jurisdiction:
        name, _, state = q.jurisdiction.partition(",")
        places = select(HitPlaceRow.hit_id).where(
            HitPlaceRow.hit_id == HitRow.id, func.lower(HitPlaceRow.name) == name.strip().lower()
        )
        if state.strip():
            places = places.where(HitPlaceRow.state == state.strip().upper())
        out.append(places.exists())
    if q.source:
        out.append(func.lower(HitRow.source) == q.source.lower())
    if q.min_score is not None:
        out.append(col(HitRow.score) >= q.min_score)
    if q.since is not None:
        out.append(hit_time() >= q.since.astimezone(UTC))
    if q.until is not None:
        out.append(hit_time() < q.until.astimezone(UTC))
    if q.feed:
        feed_ids = select(FeedRow.id).where(feed_named(q.feed))
        out.append(
            col(HitRow.story_id).in_(
                select(ArticleRow.story_id).where(col(ArticleRow.feed_id).in_(feed_ids))
            )
        )
    if q.q:
        expr = search_expression(q.q, dialect)
        if dialect == "sqlite":
            out.append(
                hit_id.in_(
                    text("SELECT rowid FROM hits_fts WHERE hits_fts MATCH :fts")
                    .bindparams(fts=expr)
                    .columns(rowid=Integer)
                )
            )
        else:
            out.append(
                text("hits.search_vector @@ to_tsquery('english', :tsq)").bindparams(tsq=expr)
            )
    return out


def page_statement(
    q: HitQuery, dialect: str, after: Cursor | None, size: int, from_matches: bool = False
) -> SelectOfScalar[HitRow]:
    """One keyset page of hit rows in the query's sort, starting after ``after``.

    ``from_matches`` (PostgreSQL searches with few matches, ``FEW_MATCHES``): sort on
    expressions no index provides, so that the planner collects the matches through the GIN
    index and sorts them, instead of walking the id or score index through every hit.
    """
    if dialect == "sqlite" and q.q:
        # Join the FTS5 table and page on its rowid: FTS5 yields matches in rowid order and
        # stops after a page, instead of collecting every match first (0.3 ms against 12 ms
        # for a common phrase at 100,000 hits, bench_query.py).
        fts = table("hits_fts", column("rowid", Integer))
        stmt = (
            select(HitRow)
            .join(fts, fts.c.rowid == HitRow.id)
            .where(text("hits_fts MATCH :fts").bindparams(fts=search_expression(q.q, dialect)))
            .where(*where_clauses(replace(q, q=None), dialect))
        )
        if q.sort != "score":
            stmt = stmt.order_by(fts.c.rowid.desc())
            if after is not None:
                stmt = stmt.where(fts.c.rowid < after.id)
            return stmt.limit(size)
    else:
        stmt = select(HitRow).where(*where_clauses(q, dialect))
    stmt = stmt.where(*after_clauses(q.sort, after))
    hit_id, score = col(HitRow.id), col(HitRow.score)
    if q.sort == "score":
        return stmt.order_by((score + 0 if from_matches else score).desc(), hit_id.desc()).limit(
            size
        )
    return stmt.order_by((hit_id + 0 if from_matches else hit_id).desc()).limit(size)


def after_clauses(sort: str, after: Cursor | None) -> list[Any]:
    """The keyset condition: rows after the cursor in the sort's order."""
    if after is None:
        return []
    if sort == "score":
        return [tuple_(col(HitRow.score), col(HitRow.id)) < (after.score, after.id)]
    return [col(HitRow.id) < after.id]


def match_count_statement(q: HitQuery, dialect: str, after: Cursor | None, cap: int) -> Select[int]:
    """How many hits after the cursor the query matches, counting no further than ``cap``."""
    matches = (
        select(HitRow.id)
        .where(*where_clauses(q, dialect), *after_clauses(q.sort, after))
        .limit(cap)
        .subquery()
    )
    return sa_select(func.count()).select_from(matches)


def snippets(s: Session, q: str, dialect: str, hit_ids: Sequence[int]) -> dict[int, str]:
    """Raw snippets (with ``MARK_START``/``MARK_END`` around matches) for these hits."""
    if not hit_ids:
        return {}
    expr = search_expression(q, dialect)
    if dialect == "sqlite":
        stmt = text(
            "SELECT rowid, snippet(hits_fts, -1, :start, :end, '…', :words) FROM hits_fts "
            "WHERE hits_fts MATCH :fts AND rowid IN :ids"
        )
    else:
        stmt = text(
            "SELECT h.id, ts_headline('english', h.title || ' — ' || a.summary || ' ' || a.text, "
            "to_tsquery('english', :fts), 'StartSel=' || :start || ', StopSel=' || :end || "
            "', MaxWords=' || :words || ', MinWords=10, MaxFragments=2, "
            'FragmentDelimiter=" … "\') '
            "FROM hits h JOIN articles a ON a.id = h.article_id WHERE h.id IN :ids"
        )
    stmt = stmt.bindparams(bindparam("ids", expanding=True))
    rows = (
        s.connection()
        .execute(
            stmt,
            {
                "fts": expr,
                "start": MARK_START,
                "end": MARK_END,
                "words": SNIPPET_WORDS,
                "ids": list(hit_ids),
            },
        )
        .all()
    )
    return {int(r[0]): str(r[1]) for r in rows if r[1] is not None}


def matched_ids(q: HitQuery, dialect: str) -> SelectOfScalar[int | None]:
    """The ids of every hit the query's filters match (for counts)."""
    return select(col(HitRow.id)).where(*where_clauses(q, dialect))
