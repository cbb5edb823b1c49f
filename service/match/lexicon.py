"""The rules file: load, validate and compile ``config/rules/*.toml`` into a frozen ``Lexicon``.

Owns: the schema of the rules file (every key, its type and range), turning terms into
compiled regular expressions, and checking that the prefilter anchors cover every concept
term, so the fast path can never drop an item a concept would have matched.

Does not: match anything (``senses``/``scoring``/``entities`` do) nor read any other file.
Every problem raises ``ConfigError(file, key, problem, fix)``.
"""

from __future__ import annotations

import functools
import itertools
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.errors import ConfigError
from service.types import TOPICS

from .gazetteer import GazetteerRules
from .text import (
    GateIndex,
    TermError,
    TermGate,
    gate_index,
    prefix_lengths,
    term_gate,
    term_positions,
    term_regex,
)

FIELDS = ("title", "summary", "text")
ACTOR_KINDS = ("local", "federal")
REQUIREMENTS = ("local", "federal", "place")
# A sense's term lists, in ``Sense``'s order; ``extends`` inherits all three.
SENSE_LISTS = ("negative_near", "negative_item", "require_item")


@dataclass(frozen=True, slots=True)
class Sense:
    id: str
    window: int
    negative_near: re.Pattern[str] | None
    negative_item: re.Pattern[str] | None
    require_item: re.Pattern[str] | None


@dataclass(frozen=True, slots=True)
class Concept:
    id: str
    topics: tuple[str, ...]
    weight: float
    sense: str | None
    requires_any: frozenset[str]
    # One expression per term, in the order written; a concept's matches are those of the
    # terms joined as one alternation (``text.leftmost_matches``).
    terms: tuple[re.Pattern[str], ...]
    # One gate per term (``text.term_gate``): a term's expression runs on a sentence only
    # when its gate is open (a gate without literal positions always is).
    gates: tuple[TermGate, ...]


@dataclass(frozen=True, slots=True)
class Actor:
    id: str
    kind: str
    regex: re.Pattern[str]


@dataclass(frozen=True, slots=True)
class EventRule:
    id: str
    topics: frozenset[str]
    weight: float
    # One pattern per cue, not one alternation: at a given start an alternation stops at the
    # first cue that matches, so "require" would hide "require jails to honor", and the
    # longest-cue rule of ``events.choose_event`` needs every cue's own match.
    cues: tuple[re.Pattern[str], ...]
    # Derived (``__post_init__``): all the cues in one alternation. One search tells whether
    # a sentence holds any of them, so the cues one by one run only where one is (most
    # events have none in a sentence).
    any_cue: re.Pattern[str] = field(init=False)

    def __post_init__(self) -> None:
        either = "|".join(f"(?:{c.pattern})" for c in self.cues)
        object.__setattr__(self, "any_cue", re.compile(either, re.IGNORECASE))


@dataclass(frozen=True, slots=True)
class Scoring:
    field_weights: Mapping[str, float]
    local_actor_bonus: float
    federal_actor_bonus: float
    place_bonus: float
    topic_min: float
    max_evidence: int


@dataclass(frozen=True, slots=True)
class NamedRule:
    """A fixed agency or law: canonical name, pattern, optional sense guard."""

    canonical: str
    sense: str | None
    place_prefix: bool
    regex: re.Pattern[str]


@dataclass(frozen=True, slots=True)
class EntityRules:
    official_titles: tuple[str, ...]
    agency_suffixes: Mapping[str, str]
    local_body_suffixes: tuple[str, ...]
    local_body_regex: re.Pattern[str] | None
    agencies: tuple[NamedRule, ...]
    laws: tuple[NamedRule, ...]
    counts: tuple[tuple[str, str], ...]  # (unit, regex source of its terms)


@dataclass(frozen=True, slots=True)
class Lexicon:
    version: str
    path: str
    scoring: Scoring
    anchors: tuple[tuple[str, bool], ...]  # (lower-case anchor, is prefix)
    senses: Mapping[str, Sense]
    concepts: tuple[Concept, ...]
    actors: tuple[Actor, ...]
    events: tuple[EventRule, ...]
    # Phrases that describe a place instead of telling what happened ("cities that refuse to
    # honor detainers"), one pattern per phrase: an event cue overlapping a longer one does not
    # count.
    event_masks: tuple[re.Pattern[str], ...]
    # A title that opens with one of these labels ("Opinion:", "Letter |") is commentary, not
    # news of an event: its event type is "other". None: no labels.
    commentary: re.Pattern[str] | None
    entities: EntityRules
    gazetteer: GazetteerRules
    # Derived from ``concepts`` (``__post_init__``), not given:
    # the prefix lengths the concepts' gates hold (``text.sentence_words`` makes only those);
    gate_lengths: frozenset[int] = field(init=False)
    # every concept's terms in one numbering, concept by concept, in order: (the concept's
    # index, the term's expression, its gate); and the index that finds the terms a
    # sentence could open.
    all_terms: tuple[tuple[int, re.Pattern[str], TermGate], ...] = field(init=False)
    term_index: GateIndex = field(init=False)

    def __post_init__(self) -> None:
        all_terms = tuple(
            (ci, term, gate)
            for ci, c in enumerate(self.concepts)
            for term, gate in zip(c.terms, c.gates, strict=True)
        )
        object.__setattr__(self, "gate_lengths", prefix_lengths(g for _, _, g in all_terms))
        object.__setattr__(self, "all_terms", all_terms)
        object.__setattr__(self, "term_index", gate_index([g for _, _, g in all_terms]))


_VERSION = re.compile(r"^\d{4}\.\d{1,2}\.\d+$")
_ID = re.compile(r"^[a-z0-9_]+(?:\.[a-z0-9_]+)*$")


class _Reader:
    """Typed access to one TOML table with errors that name the file and the key path."""

    def __init__(self, file: str, table: Mapping[str, Any], where: str) -> None:
        self.file, self.table, self.where = file, table, where

    def key(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def fail(self, name: str, problem: str, fix: str = "") -> ConfigError:
        return ConfigError(self.file, self.key(name), problem, fix)

    def only(self, *allowed: str) -> None:
        for k in self.table:
            if k not in allowed:
                raise self.fail(k, "unknown key", f"use one of: {', '.join(allowed)}")

    def get(self, name: str, kind: type, default: Any = ..., fix: str = "") -> Any:
        if name not in self.table:
            if default is ...:
                raise self.fail(name, "missing", fix or f"add {name} = ...")
            return default
        value = self.table[name]
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            raise self.fail(name, f"expected {kind.__name__}, got {type(value).__name__}", fix)
        return value

    def unit(self, name: str, default: Any = ...) -> float:
        v: float = self.get(name, float, default)
        if not 0.0 <= v <= 1.0:
            raise self.fail(name, f"{v} is outside 0..1", "use a number between 0 and 1")
        return v

    def strings(self, name: str, default: Any = ...) -> list[str]:
        v = self.get(name, list, default)
        for i, s in enumerate(v):
            if not isinstance(s, str) or not s.strip():
                raise self.fail(f"{name}[{i}]", "expected a non-empty string")
        return list(v)

    def sub(self, name: str, default: Any = ...) -> _Reader:
        return _Reader(self.file, self.get(name, dict, default), self.key(name))

    def subs(self, name: str) -> list[_Reader]:
        items = self.get(name, list, [])
        out = []
        for i, t in enumerate(items):
            if not isinstance(t, dict):
                raise self.fail(f"{name}[{i}]", "expected a table", f"write [[{name}]]")
            out.append(_Reader(self.file, t, f"{self.key(name)}[{i}]"))
        return out


def load_lexicon(path: Path) -> Lexicon:
    """Read and compile a rules file; raise ``ConfigError`` on any problem."""
    file = str(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ConfigError(file, "", "rules file not found", "check [matcher].rules") from e
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(file, "", f"cannot read rules file: {e}") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(file, "", f"not valid TOML: {e}", "fix the syntax") from e
    r = _Reader(file, raw, "")
    r.only(
        "ruleset_version",
        "scoring",
        "prefilter",
        "macros",
        "senses",
        "concepts",
        "actors",
        "events",
        "event_descriptions",
        "entities",
        "gazetteer",
    )
    version = r.get("ruleset_version", str)
    if not _VERSION.match(version):
        raise r.fail("ruleset_version", f"{version!r} is not YYYY.MM.N", 'e.g. "2026.11.1"')

    macros_r = r.sub("macros", {})
    macros: dict[str, str] = {}
    for name in macros_r.table:
        src = macros_r.get(name, str)
        _compile(macros_r, name, src)
        macros[name] = src

    def term_source(rd: _Reader, name: str, term: str) -> str:
        """A term's regular expression; a syntax error names the term's key."""
        try:
            return term_regex(term, macros)
        except TermError as e:
            raise rd.fail(name, f"{term!r}: {e}", "see the term syntax at the top") from e

    def compile_terms(rd: _Reader, name: str, terms: list[str]) -> re.Pattern[str]:
        parts = [term_source(rd, f"{name}[{i}]", t) for i, t in enumerate(terms)]
        return _compile(rd, name, "|".join(parts))

    def compile_term(rd: _Reader, name: str, term: str) -> re.Pattern[str]:
        """One term's expression. A term that can match empty text is an error: a concept's
        matches are found one term at a time (``text.leftmost_matches``), and an empty match
        would not move the search on."""
        pattern = _compile(rd, name, term_source(rd, name, term))
        if pattern.fullmatch("") is not None:
            raise rd.fail(name, f"{term!r} matches empty text", "give the term a word")
        return pattern

    def opt_terms(rd: _Reader, name: str) -> re.Pattern[str] | None:
        terms = rd.strings(name, [])
        return compile_terms(rd, name, terms) if terms else None

    scoring = _scoring(r.sub("scoring"))
    pre = r.sub("prefilter")
    pre.only("anchors", "anchored_macros")
    anchors = tuple((a.rstrip("*").lower(), a.endswith("*")) for a in pre.strings("anchors"))
    anchored_macros = frozenset(pre.strings("anchored_macros", []))
    for m in anchored_macros:
        if m not in macros:
            raise pre.fail("anchored_macros", f"unknown macro {m!r}", "define it in [macros]")

    senses_r = r.sub("senses", {})
    sense_readers = {sid: senses_r.sub(sid) for sid in senses_r.table}
    own_lists: dict[str, dict[str, list[str]]] = {}
    for sid, s in sense_readers.items():
        s.only("extends", "window", *SENSE_LISTS)
        own_lists[sid] = {name: s.strings(name, []) for name in SENSE_LISTS}

    def sense_lists(sid: str, below: tuple[str, ...] = ()) -> dict[str, list[str]]:
        """A sense's term lists: those of the sense it ``extends`` (and of the one that one
        extends ...), then its own."""
        s = sense_readers[sid]
        parent: str | None = s.get("extends", str, None)
        if parent is None:
            return own_lists[sid]
        if parent not in sense_readers:
            raise s.fail("extends", f"unknown sense {parent!r}", f"define [senses.{parent}]")
        if parent in (*below, sid):
            raise s.fail("extends", f"{parent!r} extends {sid!r} in turn", "break the cycle")
        inherited = sense_lists(parent, (*below, sid))
        return {name: inherited[name] + own_lists[sid][name] for name in SENSE_LISTS}

    senses: dict[str, Sense] = {}
    for sid, s in sense_readers.items():
        window = s.get("window", int)
        if not 0 <= window <= 500:
            raise s.fail("window", f"{window} is outside 0..500", "use a character count")
        lists = sense_lists(sid)
        compiled = [
            compile_terms(s, name, lists[name]) if lists[name] else None for name in SENSE_LISTS
        ]
        senses[sid] = Sense(sid, window, *compiled)

    def sense_of(rd: _Reader) -> str | None:
        sense: str | None = rd.get("sense", str, None)
        if sense is not None and sense not in senses:
            raise rd.fail("sense", f"unknown sense {sense!r}", f"define [senses.{sense}]")
        return sense

    concepts: list[Concept] = []
    for c in r.subs("concepts"):
        c.only("id", "topics", "weight", "sense", "requires_any", "terms")
        cid = _ident(c)
        topics = tuple(c.strings("topics"))
        for t in topics:
            if t not in TOPICS:
                raise c.fail("topics", f"unknown topic {t!r}", f"use {', '.join(TOPICS)}")
        req = frozenset(c.strings("requires_any", []))
        if not req <= set(REQUIREMENTS):
            raise c.fail("requires_any", f"{sorted(req)}", f"use {', '.join(REQUIREMENTS)}")
        terms = c.strings("terms")
        for i, t in enumerate(terms):
            if not _anchored(t, anchors, anchored_macros):
                raise c.fail(
                    f"terms[{i}]",
                    f"{t!r} contains no prefilter anchor",
                    "add an anchor to [prefilter].anchors or reword the term",
                )
        concepts.append(
            Concept(
                cid,
                topics,
                c.unit("weight"),
                sense_of(c),
                req,
                tuple(compile_term(c, f"terms[{i}]", t) for i, t in enumerate(terms)),
                tuple(term_gate(t) for t in terms),
            )
        )
    if not concepts:
        raise r.fail("concepts", "no concepts", "add at least one [[concepts]] table")
    _unique(r, "concepts", [c.id for c in concepts])

    actors: list[Actor] = []
    for a in r.subs("actors"):
        a.only("id", "kind", "terms")
        kind = a.get("kind", str)
        if kind not in ACTOR_KINDS:
            raise a.fail("kind", f"unknown kind {kind!r}", f"use {', '.join(ACTOR_KINDS)}")
        actors.append(Actor(_ident(a), kind, compile_terms(a, "terms", a.strings("terms"))))

    events: list[EventRule] = []
    for ev in r.subs("events"):
        ev.only("id", "topics", "weight", "cues")
        topics_e = frozenset(ev.strings("topics"))
        if not topics_e <= set(TOPICS):
            raise ev.fail("topics", f"{sorted(topics_e)}", f"use {', '.join(TOPICS)}")
        cues = tuple(compile_term(ev, f"cues[{i}]", t) for i, t in enumerate(ev.strings("cues")))
        events.append(EventRule(_ident(ev), topics_e, ev.unit("weight"), cues))
    _unique(r, "events", [e.id for e in events])
    descriptions = r.sub("event_descriptions", {})
    descriptions.only("terms", "commentary_labels")
    labels = descriptions.strings("commentary_labels", [])
    commentary = (
        _compile(
            descriptions,
            "commentary_labels",
            r"\W*(?:"
            + "|".join(r"\s+".join(map(re.escape, lb.split())) for lb in labels)
            + r")\s*[:|]",
        )
        if labels
        else None
    )
    event_masks = tuple(
        compile_term(descriptions, f"terms[{i}]", t)
        for i, t in enumerate(descriptions.strings("terms", []))
    )

    ent = r.sub("entities")
    ent.only(
        "official_titles",
        "agency_suffixes",
        "local_body_suffixes",
        "local_body_terms",
        "agencies",
        "laws",
        "counts",
    )
    suffixes = ent.sub("agency_suffixes", {})
    agency_suffixes = {k: suffixes.get(k, str) for k in suffixes.table}

    def named(rd: _Reader) -> NamedRule:
        rd.only("canonical", "sense", "place_prefix", "terms")
        return NamedRule(
            rd.get("canonical", str),
            sense_of(rd),
            rd.get("place_prefix", bool, False),
            compile_terms(rd, "terms", rd.strings("terms")),
        )

    counts: list[tuple[str, str]] = []
    for cr in ent.subs("counts"):
        cr.only("unit", "terms")
        pattern = compile_terms(cr, "terms", cr.strings("terms"))
        counts.append((cr.get("unit", str), pattern.pattern))
    entities = EntityRules(
        official_titles=tuple(ent.strings("official_titles", [])),
        agency_suffixes=agency_suffixes,
        local_body_suffixes=tuple(ent.strings("local_body_suffixes", [])),
        local_body_regex=opt_terms(ent, "local_body_terms"),
        agencies=tuple(named(a) for a in ent.subs("agencies")),
        laws=tuple(named(a) for a in ent.subs("laws")),
        counts=tuple(counts),
    )
    return Lexicon(
        version=version,
        path=file,
        scoring=scoring,
        anchors=anchors,
        senses=senses,
        concepts=tuple(concepts),
        actors=tuple(actors),
        events=tuple(events),
        event_masks=event_masks,
        commentary=commentary,
        entities=entities,
        gazetteer=_gazetteer(r.sub("gazetteer", {})),
    )


def _scoring(s: _Reader) -> Scoring:
    s.only(
        "field_weights",
        "local_actor_bonus",
        "federal_actor_bonus",
        "place_bonus",
        "topic_min",
        "max_evidence",
    )
    fw = s.sub("field_weights")
    fw.only(*FIELDS)
    weights = {f: fw.unit(f) for f in FIELDS}
    max_evidence = s.get("max_evidence", int, 5)
    if not 1 <= max_evidence <= 50:
        raise s.fail("max_evidence", f"{max_evidence} is outside 1..50")
    return Scoring(
        field_weights=weights,
        local_actor_bonus=s.unit("local_actor_bonus"),
        federal_actor_bonus=s.unit("federal_actor_bonus"),
        place_bonus=s.unit("place_bonus"),
        topic_min=s.unit("topic_min"),
        max_evidence=max_evidence,
    )


def _gazetteer(g: _Reader) -> GazetteerRules:
    g.only("ignore", "aliases", "state_abbreviations", "min_bare_city_population", "datelines")
    aliases = g.sub("aliases", {})
    abbrevs = g.sub("state_abbreviations", {})
    datelines = g.sub("datelines", {})
    return GazetteerRules(
        ignore=frozenset(g.strings("ignore", [])),
        aliases={k: aliases.get(k, str) for k in aliases.table},
        state_abbreviations={k: abbrevs.get(k, str) for k in abbrevs.table},
        min_bare_city_population=g.get("min_bare_city_population", int, 100_000),
        datelines={k: datelines.get(k, str) for k in datelines.table},
    )


def _compile(rd: _Reader, name: str, source: str) -> re.Pattern[str]:
    try:
        return re.compile(source, re.IGNORECASE)
    except re.error as e:
        raise rd.fail(name, f"bad regular expression: {e}", "fix the pattern") from e


def _ident(rd: _Reader) -> str:
    ident: str = rd.get("id", str)
    if not _ID.match(ident):
        raise rd.fail("id", f"{ident!r} is not a dotted lower-case id", 'e.g. "detainer.request"')
    return ident


def _unique(rd: _Reader, name: str, ids: list[str]) -> None:
    seen: set[str] = set()
    for i in ids:
        if i in seen:
            raise rd.fail(name, f"duplicate id {i!r}", "give every rule its own id")
        seen.add(i)


def _anchored(term: str, anchors: tuple[tuple[str, bool], ...], macros: frozenset[str]) -> bool:
    """True if every text the term matches contains a prefilter anchor at a word edge.

    A position whose every alternative contains an anchor will do, or an anchored macro, or a
    run of adjacent positions that spells a phrase anchor whichever alternatives the text
    takes ("lack|lacking papers" needs both "lack papers" and "lacking papers").
    """
    one_word, phrases = _split_anchors(anchors)
    runs: list[list[list[str]]] = [[]]  # positions between gaps and unanchored macros
    for pos in term_positions(term):
        if isinstance(pos, str) and pos in macros:
            return True
        if not isinstance(pos, list):
            runs.append([])
            continue
        alts = [a.lower() for a in pos]
        if all(any(_covers(a, anchor, prefix) for anchor, prefix in one_word) for a in alts):
            return True  # (a phrase anchor never covers one word: see the runs below)
        runs[-1].append(alts)
    return any(
        _spells_a_phrase(run[start : start + n], phrases)
        for run in runs
        for n in {len(words) for words, _ in phrases}
        for start in range(len(run) - n + 1)
    )


@functools.lru_cache(maxsize=8)  # one entry per rules file loaded (reloads included)
def _split_anchors(
    anchors: tuple[tuple[str, bool], ...],
) -> tuple[list[tuple[str, bool]], list[tuple[list[str], bool]]]:
    """The one-word anchors, and the phrase anchors split into words: once per anchor set,
    not once per term."""
    one_word = [(anchor, prefix) for anchor, prefix in anchors if " " not in anchor]
    phrases = [(anchor.split(), prefix) for anchor, prefix in anchors if " " in anchor]
    return one_word, phrases


def _spells_a_phrase(run: list[list[str]], phrases: list[tuple[list[str], bool]]) -> bool:
    """True if each choice of one alternative per position of ``run`` is a phrase anchor."""
    n = len(run)
    # Phrases that every position could spell with some alternative; usually none.
    fits = [
        (words, prefix)
        for words, prefix in phrases
        if len(words) == n
        and all(
            any(_spells(alt, word, prefix and i == n - 1) for alt in alts)
            for i, (alts, word) in enumerate(zip(run, words, strict=True))
        )
    ]
    if not fits or math.prod(len(alts) for alts in run) > 4096:
        return False  # too many choices to check: the term must name an anchor otherwise
    return all(
        any(
            all(
                _spells(alt, word, prefix and i == n - 1)
                for i, (alt, word) in enumerate(zip(choice, words, strict=True))
            )
            for words, prefix in fits
        )
        for choice in itertools.product(*run)
    )


def _spells(alt: str, word: str, prefix: bool) -> bool:
    """True if every word the term alternative ``alt`` matches is the anchor's ``word``
    (or, for the last word of a prefix anchor, begins with it)."""
    core = alt.rstrip("*")
    if prefix:
        return core.startswith(word)
    return core == word and not alt.endswith("*")


def _covers(word: str, anchor: str, prefix: bool) -> bool:
    core = word.rstrip("*")
    pieces = [core, *re.split(r"\W+", core)]  # "anti-sanctuary" is anchored by "sanctuar*"
    if prefix:
        return any(p.startswith(anchor) for p in pieces)
    if word.endswith("*"):
        return any(p == anchor for p in pieces[1:-1])
    return any(p == anchor for p in pieces)
