"""The matcher: one article's title, summary and text -> a ``MatchResult`` that explains itself.

Owns the order of work for one item:

1. prefilter — an Aho-Corasick automaton of the rules' anchors over each (folded) field; an
   item with no anchor returns at once, so most of a news feed costs one automaton scan;
2. sentences holding an anchor are analysed (``scoring.analyse_sentence``): concepts through
   their senses, actors, places;
3. item score, topics, evidence, event type (``events``), entities (``entities``) and
   jurisdictions (``gazetteer``).

Does not: fetch, store, or read anything after ``load`` — it is pure and immutable, so one
``Matcher`` may serve many threads at once (per-call state lives in local variables only).
"""

from __future__ import annotations

import functools
from bisect import bisect_left
from pathlib import Path

from service.errors import ConfigError
from service.types import TOPICS, Evidence, Jurisdiction, MatchResult

from .entities import EntityFinder
from .events import choose_event
from .gazetteer import Gazetteer, Place, PlaceMention, read_places
from .lexicon import Lexicon, load_lexicon
from .prefilter import Prefilter, read_fields
from .scoring import SentenceHit, analyse_sentence, noisy_or
from .senses import SenseChecker
from .text import sentence_spans

# Most jurisdictions one result lists (most relevant first).
MAX_JURISDICTIONS = 10


class Matcher:
    """Classifies items against one rules file. Build with ``Matcher.load``."""

    def __init__(self, lexicon: Lexicon, gazetteer: Gazetteer, threshold: float) -> None:
        self.lexicon = lexicon
        self.version = lexicon.version
        self.threshold = threshold
        self._gazetteer = gazetteer
        self._entities = EntityFinder(lexicon.entities)
        # Step 1, shared with the parse workers that flag articles before they get here.
        self.prefilter = Prefilter(lexicon.anchors)
        # What an item without anything to match gets (the pipeline uses it too, for the
        # articles the parse workers found no anchor in).
        self.no_match = MatchResult(
            flagged=False,
            score=0.0,
            topics=(),
            event_type=None,
            jurisdictions=(),
            entities=(),
            evidence=(),
            ruleset_version=self.version,
            rules=(),
        )

    @classmethod
    def load(cls, rules_path: Path, threshold: float = 0.5) -> Matcher:
        """Read the rules file and the packaged gazetteer; ``ConfigError`` if either is bad."""
        if not 0.0 < threshold <= 1.0:
            raise ConfigError(
                str(rules_path),
                "threshold",
                f"{threshold} is outside (0, 1]",
                "set [matcher].threshold to a number like 0.5",
            )
        lexicon = load_lexicon(Path(rules_path))
        for code in lexicon.gazetteer.state_abbreviations.values():
            if len(code) != 2 or not code.isupper():
                raise ConfigError(
                    lexicon.path,
                    "gazetteer.state_abbreviations",
                    f"bad state code {code!r}",
                    'use two-letter postal codes, e.g. "MA"',
                )
        return cls(lexicon, Gazetteer(read_places(), lexicon.gazetteer), threshold)

    # ------------------------------------------------------------------ classify

    def anchors(self, text: str) -> list[int]:
        """Start offsets of prefilter anchors in ``text`` (sorted)."""
        return self.prefilter.find(text)

    def classify(self, title: str, summary: str = "", text: str = "") -> MatchResult:
        fields = read_fields(title, summary, text)
        anchors = {name: self.anchors(value) for name, value in fields}
        if not any(anchors.values()):
            return self.no_match
        lex = self.lexicon
        texts = dict(fields)
        senses = SenseChecker(lex.senses, "\n".join(v for _, v in fields))
        officials = self._entities.officials(fields)
        mentions = [m for name, value in fields for m in self._gazetteer.find(name, value)]
        blocked = [(fields[f.field_index][0], f.start, f.end) for f in officials]
        places = self._gazetteer.resolve(mentions, blocked)
        title = texts.get("title", "")

        @functools.cache
        def title_local() -> bool:  # read only if a body sentence needs it
            return any(a.regex.search(title) for a in lex.actors if a.kind == "local")

        hits: list[SentenceHit] = []
        for name, value in fields:
            starts = anchors[name]
            if not starts:
                continue
            spans = [(m.start, m.end) for m, _ in places if m.field == name]
            for s, e in sentence_spans(value):
                i = bisect_left(starts, s)
                if i < len(starts) and starts[i] < e:
                    hit = analyse_sentence(lex, name, value, s, e, senses, spans, title_local)
                    if hit is not None:
                        hits.append(hit)
        if not hits:
            return self.no_match
        score = round(noisy_or(h.score for h in hits), 4)
        flagged = score >= self.threshold
        ranked = sorted(hits, key=lambda h: -h.score)
        topic_scores = {t: noisy_or(h.topics.get(t, 0.0) for h in hits) for t in TOPICS}
        topics = [t for t in TOPICS if topic_scores[t] >= lex.scoring.topic_min]
        best_topic = max(TOPICS, key=lambda t: topic_scores[t])
        if flagged and best_topic not in topics:
            topics.append(best_topic)
        evidence = tuple(
            Evidence(h.field, texts[h.field][h.start : h.end], h.start, h.end, tuple(h.terms))
            for h in ranked[: lex.scoring.max_evidence]
        )
        rules = sorted({cid for h in hits for cid in h.concepts})
        return MatchResult(
            flagged=flagged,
            score=score,
            topics=tuple(t for t in TOPICS if t in topics),
            event_type=(
                choose_event(
                    lex.events,
                    ranked,
                    texts,
                    lex.event_masks,
                    commentary=lex.commentary,
                    topics=topics,
                )
                if flagged
                else None
            ),
            jurisdictions=_jurisdictions(places, ranked),
            entities=self._entities.find(fields, places, officials, senses),
            evidence=evidence,
            ruleset_version=self.version,
            rules=tuple(rules),
        )


def _jurisdictions(
    places: list[tuple[PlaceMention, Place]], ranked: list[SentenceHit]
) -> tuple[Jurisdiction, ...]:
    """Places ordered by relevance: in the best evidence first, then title, then the rest."""

    def rank(item: tuple[PlaceMention, Place]) -> tuple[int, int, int]:
        m = item[0]
        for i, h in enumerate(ranked):
            if h.field == m.field and h.start <= m.start and m.end <= h.end:
                return (0, i, m.start)
        return (1, ("title", "summary", "text").index(m.field), m.start)

    out: list[Jurisdiction] = []
    for _, place in sorted(places, key=rank):
        j = place.jurisdiction()
        if j not in out:
            out.append(j)
    return tuple(out[:MAX_JURISDICTIONS])
