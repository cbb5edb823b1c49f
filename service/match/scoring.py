"""Scoring: concepts, actors and places in one sentence -> a sentence score -> an item score.

Owns the arithmetic, all of it in [0, 1]:

* a sentence's concept score is ``1 - prod(1 - weight)`` over the distinct concepts matched in
  it (overlapping matches keep the heavier concept, so one phrase counts once);
* it is multiplied by ``1 + local_actor_bonus + federal_actor_bonus + place_bonus`` for what
  else the sentence names (only those present), capped at 1, then by the field weight —
  a topic term next to "sheriff" and "Hennepin County" in a title is strong evidence, the same
  term alone in the body is weaker;
* the item score, and each topic's score, is again ``1 - prod(1 - sentence score)``.

Does not: find sentences or places (``matcher``), decide senses (``senses``), or name events.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from service.types import MatchedTerm

from .lexicon import Concept, Lexicon
from .senses import SenseChecker
from .text import leftmost_matches, sentence_words, term_open


@dataclass(slots=True)
class SentenceHit:
    """What one candidate sentence contributed."""

    field: str
    start: int
    end: int
    terms: list[MatchedTerm] = dataclasses.field(default_factory=list)
    concepts: dict[str, float] = dataclasses.field(default_factory=dict)  # concept id -> weight
    topics: dict[str, float] = dataclasses.field(
        default_factory=dict
    )  # topic -> final sentence score
    local: bool = False
    federal: bool = False
    place: bool = False
    score: float = 0.0


def noisy_or(values: Iterable[float]) -> float:
    """``1 - prod(1 - v)``: independent pieces of evidence, clamped to [0, 1]."""
    miss = 1.0
    for v in values:
        miss *= 1.0 - min(1.0, max(0.0, v))
    return min(1.0, max(0.0, 1.0 - miss))


def analyse_sentence(
    lex: Lexicon,
    field_name: str,
    text: str,
    start: int,
    end: int,
    senses: SenseChecker,
    place_spans: Sequence[tuple[int, int]],
    title_local: Callable[[], bool] = lambda: False,
) -> SentenceHit | None:
    """Match concepts and actors in ``text[start:end]``; None when no concept survives.

    ``title_local()``: whether the item's title names a local actor, which then stands for
    one in a summary or text sentence that refers back to it ("Police chief lays out
    priorities" ... "Her department will stay out of federal immigration work") when a
    concept ``requires_any`` local; it earns no bonus. Called only when a body sentence's
    concept needs it, so items that never do skip reading the title for actors."""
    raw: list[tuple[int, int, float, Concept]] = []
    words, prefixes = sentence_words(text[start:end], lex.gate_lengths)
    # Only the terms whose gates are open can match, and a concept's matches are theirs as
    # one alternation of all its terms would give them (``leftmost_matches``); the index
    # finds the candidates without visiting every term.
    open_terms: dict[int, list[re.Pattern[str]]] = {}
    for n in lex.term_index.candidates(words, prefixes):
        ci, term, gate = lex.all_terms[n]
        if term_open(gate, words, prefixes):
            open_terms.setdefault(ci, []).append(term)
    for ci, terms in open_terms.items():  # in the concepts' order, as the numbering is
        c = lex.concepts[ci]
        for m in leftmost_matches(terms, text, start, end):
            if m.end() > m.start() and senses.accepts(
                c.sense, text, m.start(), m.end(), (start, end), place_spans
            ):
                raw.append((m.start(), m.end(), c.weight, c))
    if not raw:
        return None
    hit = SentenceHit(field_name, start, end)
    actor_terms: list[MatchedTerm] = []
    for a in lex.actors:
        for m in a.regex.finditer(text, start, end):
            if m.end() > m.start():
                actor_terms.append(MatchedTerm(m.group(0), a.id, m.start(), m.end()))
                hit.local |= a.kind == "local"
                hit.federal |= a.kind == "federal"
    hit.place = any(start <= s and e <= end for s, e in place_spans)
    kept: list[tuple[int, int, float, Concept]] = []
    for r in sorted(raw, key=lambda r: (-r[2], -(r[1] - r[0]), r[0])):
        if any(r[0] < k[1] and k[0] < r[1] for k in kept):
            continue
        need = r[3].requires_any
        if need and not (
            ("local" in need and (hit.local or (field_name != "title" and title_local())))
            or ("federal" in need and hit.federal)
            or ("place" in need and hit.place)
        ):
            continue
        kept.append(r)
    if not kept:
        return None
    kept.sort(key=lambda k: (k[0], k[1]))
    topics_of: dict[str, tuple[str, ...]] = {}
    for s, e, w, c in kept:
        hit.terms.append(MatchedTerm(text[s:e], c.id, s, e))
        hit.concepts[c.id] = max(w, hit.concepts.get(c.id, 0.0))
        topics_of[c.id] = c.topics
    hit.terms.extend(
        t for t in actor_terms if not any(t.start < k[1] and k[0] < t.end for k in kept)
    )
    hit.terms.sort(key=lambda t: (t.start, t.end))
    sc = lex.scoring
    mult = 1.0
    mult += sc.local_actor_bonus if hit.local else 0.0
    mult += sc.federal_actor_bonus if hit.federal else 0.0
    mult += sc.place_bonus if hit.place else 0.0
    fw = sc.field_weights[field_name]
    hit.score = min(1.0, noisy_or(hit.concepts.values()) * mult) * fw
    for topic in {t for ts in topics_of.values() for t in ts}:
        ws = [w for cid, w in hit.concepts.items() if topic in topics_of[cid]]
        hit.topics[topic] = min(1.0, noisy_or(ws) * mult) * fw
    return hit
