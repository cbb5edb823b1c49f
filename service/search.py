"""The hit query language and page cursors [pure].

Search syntax (``q``), one language on both databases, in the spirit of FreshRSS and web
search boxes::

    detainer boston            both words (AND is implied)
    "sanctuary city"           a phrase
    ice OR detainer            either
    detainer NOT texas         the first without the second (also: detainer -texas)
    (ice OR cbp) AND jail      grouping
    deport*                    a prefix

Words are matched stemmed (porter on SQLite FTS5, ``english`` on PostgreSQL), case and
accents ignored. Operators are upper-case; a lower-case ``or`` is a word. This module parses a
query into a tree and writes it out as an FTS5 MATCH string or a ``to_tsquery`` string, so no
user text reaches either parser unquoted: only words (letters and digits) survive.

It also encodes page cursors: opaque URL-safe strings carrying the sort and the last row's
keyset ``(id)`` or ``(score, id)``. It does not run queries (``service.storage.hits`` does).
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
from dataclasses import dataclass

from service.errors import QueryError
from service.types import TOPICS

# A search longer than this is not a search someone typed; FTS cost grows with terms.
MAX_QUERY_CHARS = 500
MAX_TERMS = 32
SORTS = ("newest", "score")
# Markers the databases put around matched words in snippets; they cannot occur in stored
# text (normalisation drops control characters), so escaping the rest is safe.
MARK_START, MARK_END = "\x02", "\x03"

_TOKEN = re.compile(r'\s*(?:(")|(\()|(\))|(-)(?=[\w"(])|([^\s"()]+))', re.UNICODE)
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True, slots=True)
class Term:
    words: tuple[str, ...]  # one word, or a phrase
    prefix: bool = False


@dataclass(frozen=True, slots=True)
class Not:
    node: Node


@dataclass(frozen=True, slots=True)
class And:
    nodes: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    nodes: tuple[Node, ...]


Node = Term | Not | And | Or


def _fail(message: str) -> QueryError:
    return QueryError("q", message)


def _tokens(query: str) -> list[tuple[str, str]]:
    """(kind, text) pairs: word, phrase, (, ), -, AND, OR, NOT."""
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(query):
        if query[pos:].strip() == "":
            break
        m = _TOKEN.match(query, pos)
        if m is None:  # pragma: no cover - the pattern matches any non-space character
            raise _fail(f"cannot read the query at character {pos + 1}")
        quote, lparen, rparen, minus, word = m.groups()
        pos = m.end()
        if quote:
            end = query.find('"', pos)
            if end < 0:
                raise _fail('a phrase has no closing quote (")')
            out.append(("phrase", query[pos:end]))
            pos = end + 1
        elif lparen:
            out.append(("(", "("))
        elif rparen:
            out.append((")", ")"))
        elif minus:
            out.append(("-", "-"))
        elif word in ("AND", "OR", "NOT"):
            out.append((word, word))
        else:
            out.append(("word", word))
    return out


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.i = 0
        self.terms = 0

    def peek(self) -> str | None:
        return self.tokens[self.i][0] if self.i < len(self.tokens) else None

    def parse(self) -> Node:
        node = self.or_expr()
        if self.peek() is not None:
            raise _fail("a closing parenthesis has no opening one")
        return node

    def or_expr(self) -> Node:
        nodes = [self.and_expr()]
        while self.peek() == "OR":
            self.i += 1
            nodes.append(self.and_expr())
        return nodes[0] if len(nodes) == 1 else Or(tuple(nodes))

    def and_expr(self) -> Node:
        nodes: list[Node] = []
        while self.peek() not in (None, "OR", ")"):
            if self.peek() == "AND":
                if not nodes:
                    raise _fail("AND needs a word before it")
                self.i += 1
                continue
            nodes.append(self.unary())
        if not nodes:
            raise _fail("OR needs a word on both sides" if self.tokens else "the query is empty")
        if all(isinstance(n, Not) for n in nodes):
            raise _fail("NOT excludes from something: add a word to find, e.g. detainer NOT texas")
        return nodes[0] if len(nodes) == 1 else And(tuple(nodes))

    def unary(self) -> Node:
        kind = self.peek()
        if kind in ("NOT", "-"):
            self.i += 1
            if self.peek() in (None, "OR", "AND", ")", "NOT", "-"):
                raise _fail("NOT needs a word after it")
            return Not(self.unary())
        return self.atom()

    def atom(self) -> Node:
        kind, text = self.tokens[self.i]
        self.i += 1
        if kind == "(":
            node = self.or_expr()
            if self.peek() != ")":
                raise _fail("a parenthesis is not closed")
            self.i += 1
            return node
        if kind == ")":  # pragma: no cover - and_expr stops before ")"
            raise _fail("a closing parenthesis has no opening one")
        words = tuple(w.lower() for w in _WORD.findall(text))
        self.terms += 1
        if self.terms > MAX_TERMS:
            raise _fail(f"at most {MAX_TERMS} words and phrases")
        if not words:
            raise _fail(f"{text!r} has no letters or digits to search for")
        return Term(words, prefix=kind == "word" and text.endswith("*") and len(words) == 1)


def parse_query(query: str) -> Node:
    """The tree of a search, or QueryError (param ``q``) saying what is wrong."""
    if len(query) > MAX_QUERY_CHARS:
        raise _fail(f"at most {MAX_QUERY_CHARS} characters")
    return _Parser(_tokens(query)).parse()


def topic_filter(value: str) -> str:
    """The topic a ``topic`` filter names (any case, spaces around ignored), or QueryError
    naming the three: an unknown topic is a mistake to report, not a filter matching nothing."""
    topic = value.strip().lower()
    if topic not in TOPICS:
        raise QueryError("topic", f"unknown topic {value!r}; use {', '.join(TOPICS)}")
    return topic


# What a ``state`` filter takes: a two-letter code, in any case (the API's parameter pattern
# and ``state_code`` for the CLI and the dashboard).
STATE_CODE = r"[A-Za-z]{2}"


def state_code(param: str, value: str | None) -> str | None:
    """A state filter as given, or a QueryError naming ``param``: the filter takes a
    two-letter code ("Massachusetts" would only match nothing)."""
    if value is None or re.fullmatch(STATE_CODE, value):
        return value
    raise QueryError(param, f"expected a two-letter state code such as MA, not {value!r}")


def event_filter(value: str) -> str:
    """The event type an ``event`` filter names, as the rules write their ids (lower case,
    underscores): "Detainer-Declined" and "detainer declined" are ``detainer_declined``, as
    topics, places and outlets match in any case."""
    return re.sub(r"[\s-]+", "_", value.strip().lower())


def to_fts5(node: Node) -> str:
    """An SQLite FTS5 MATCH expression (every word double-quoted)."""
    if isinstance(node, Term):
        return '"' + " ".join(node.words) + '"' + ("*" if node.prefix else "")
    if isinstance(node, Or):
        return "(" + " OR ".join(to_fts5(n) for n in node.nodes) + ")"
    if isinstance(node, Not):  # pragma: no cover - only inside And (the parser sees to it)
        raise AssertionError("NOT outside AND")
    keep = [to_fts5(n) for n in node.nodes if not isinstance(n, Not)]
    out = "(" + " AND ".join(keep) + ")"
    for n in node.nodes:
        if isinstance(n, Not):
            out = f"({out} NOT {_fts5_operand(n.node)})"
    return out


def _fts5_operand(node: Node) -> str:
    if isinstance(node, Not):  # NOT NOT x: FTS5 has no unary NOT; x itself is wanted
        raise _fail("NOT NOT is not supported; drop both")
    return to_fts5(node)


def to_tsquery(node: Node) -> str:
    """A PostgreSQL ``to_tsquery('english', ...)`` string (every word single-quoted)."""
    if isinstance(node, Term):
        if len(node.words) > 1:
            return "(" + " <-> ".join(f"'{w}'" for w in node.words) + ")"
        return f"'{node.words[0]}'" + (":*" if node.prefix else "")
    if isinstance(node, Not):
        return "!" + to_tsquery(node.node)
    joiner = " | " if isinstance(node, Or) else " & "
    return "(" + joiner.join(to_tsquery(n) for n in node.nodes) + ")"


def marked_snippet(raw: str) -> str:
    """A database snippet with our markers as HTML: text escaped, matches in <mark>."""
    return html.escape(raw).replace(MARK_START, "<mark>").replace(MARK_END, "</mark>")


# ---------------------------------------------------------------- cursors


@dataclass(frozen=True, slots=True)
class Cursor:
    """The last row of a page: the next page starts after it in ``sort`` order."""

    sort: str
    id: int
    score: float | None = None


def encode_cursor(c: Cursor) -> str:
    body = {"s": c.sort, "id": c.id} | ({} if c.score is None else {"sc": c.score})
    raw = json.dumps(body, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(value: str | int, sort: str) -> Cursor:
    """A cursor from a client: ours, or a bare hit id (the first API's cursor)."""
    if isinstance(value, int) or (value.isascii() and value.isdigit()):
        if sort != "newest":
            raise QueryError("cursor", "a numeric cursor only pages the newest sort")
        return Cursor("newest", int(value))
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        body = json.loads(raw)
        c = Cursor(str(body["s"]), int(body["id"]), None if "sc" not in body else float(body["sc"]))
    except (ValueError, TypeError, KeyError, RecursionError) as e:  # RecursionError: "[[[["
        raise QueryError("cursor", "not a cursor this API gave out; use next_cursor") from e
    if c.sort != sort:
        raise QueryError("cursor", f"this cursor pages sort={c.sort}, not sort={sort}")
    if c.sort == "score" and (c.score is None or not math.isfinite(c.score)):
        raise QueryError("cursor", "not a cursor this API gave out; use next_cursor")
    return c
