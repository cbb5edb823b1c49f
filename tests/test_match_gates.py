"""Term gates: a concept's expression is skipped only when it could not have matched.

A gate (``text.term_gate``) asks that every literal position of a term have one of its
words among the sentence's words. It must never be closed where the term's expression
matches: these tests run every concept of the shipped rules over every sentence of the
development corpus, the generalisation set, the golden cases and the shared feeds, and over
generated sentences made of the rules' own words, odd case and punctuation, and check that.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import feedparser
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.match import Matcher
from service.match.prefilter import read_fields
from service.match.text import gate_open, sentence_spans, sentence_words, term_gate
from tests.conftest import RULES, SHARED

MATCHER = Matcher.load(RULES)
LEX = MATCHER.lexicon
DATA = Path(__file__).parent / "data" / "match"


@pytest.mark.parametrize(
    ("term", "gate"),
    [
        # exact words, and prefixes for starred words
        ("honor*|comply detainer*", [({"comply"}, {"honor"}), (set(), {"detainer"})]),
        # macros and gaps are not gated
        (
            "{FED} ... lodg*|issu* ...3 detainer*",
            [(set(), {"lodg", "issu"}), (set(), {"detainer"})],
        ),
        # an apostrophe, hyphen or dot splits the word: its leading letters are a prefix
        (
            "won't|never anti-sanctuary u.s",
            [({"never"}, {"won"}), (set(), {"anti"}), (set(), {"u"})],
        ),
        # upper case in the rules file is compared lower-cased
        ("Trust Act", [({"trust"}, set()), ({"act"}, set())]),
        # only macros: no gated position, so the term is always open
        ("{FED} {P287}", []),
    ],
)
def test_term_gate(term: str, gate: list[tuple[set[str], set[str]]]) -> None:
    assert term_gate(term) == tuple((frozenset(e), frozenset(p)) for e, p in gate)


def test_a_position_with_a_word_that_starts_with_punctuation_is_not_gated() -> None:
    assert term_gate("'s detainer") == ((frozenset({"detainer"}), frozenset()),)


@pytest.mark.parametrize(
    ("text", "word"),
    [
        ("IMMIGRATION", "immigration"),
        # the characters beyond ASCII that re.IGNORECASE matches to ASCII letters
        ("\u0130MM\u0130GRAT\u0130ON", "immigration"),
        ("\u0131mm\u0131grat\u0131on", "immigration"),
        ("\u017fanctuary", "sanctuary"),
        ("\u212aeep", "keep"),
    ],
)
def test_sentence_words_compare_as_ignorecase_does(text: str, word: str) -> None:
    assert re.fullmatch(word, text, re.IGNORECASE)
    words, prefixes = sentence_words(f"the {text} rule", frozenset({3}))
    assert word in words
    assert word[:3] in prefixes


def test_gate_opens_when_any_term_opens() -> None:
    gates = (term_gate("honor* detainer*"), term_gate("sanctuary city"))
    assert gate_open(gates, *sentence_words("A sanctuary city again", LEX.gate_lengths))
    assert gate_open(gates, *sentence_words("Jail honors detainers", LEX.gate_lengths))
    assert not gate_open(gates, *sentence_words("Jail honors a sanctuary", LEX.gate_lengths))


def _sentences() -> Iterator[str]:
    for name in ("golden.jsonl", "generalisation.jsonl"):
        for line in (DATA / name).read_text(encoding="utf-8").splitlines():
            item = json.loads(line)
            yield from _split(item["title"], item.get("summary") or "", item.get("text") or "")
    dev = SHARED / "corpus" / "dev.jsonl"
    if dev.is_file():
        for line in dev.read_text(encoding="utf-8").splitlines():
            item = json.loads(line)
            yield from _split(item["title"], item.get("summary") or "", item.get("text") or "")
    feeds = SHARED / "feeds"
    if feeds.is_dir():
        for path in sorted(feeds.iterdir()):
            if path.suffix in {".xml", ".rss", ".atom"}:
                for entry in feedparser.parse(path.read_bytes()).entries:
                    yield from _split(entry.get("title", ""), entry.get("summary", ""), "")


def _split(title: str, summary: str, text: str) -> Iterator[str]:
    for _, value in read_fields(title, summary, text):
        for start, end in sentence_spans(value):
            yield value[start:end]


SENTENCES = list(_sentences())


def _closed_but_matching(sentence: str) -> list[str]:
    """Concepts whose gate is closed on ``sentence`` although their expression matches."""
    words, prefixes = sentence_words(sentence, LEX.gate_lengths)
    return [
        c.id
        for c in LEX.concepts
        if c.gates is not None
        and not gate_open(c.gates, words, prefixes)
        and c.regex.search(sentence)
    ]


def test_no_gate_is_closed_where_its_concept_matches() -> None:
    assert len(SENTENCES) > 1500
    matched = 0
    for sentence in SENTENCES:
        assert _closed_but_matching(sentence) == [], sentence
        matched += any(c.regex.search(sentence) for c in LEX.concepts)
    assert matched > 500  # the check saw many matches, not only closed gates


def test_gates_skip_most_concepts_on_news_sentences() -> None:
    """What the gates are for: on anchored sentences most concepts' expressions are not run."""
    anchored = [s for s in SENTENCES if MATCHER.anchors(s)]
    gated = [c for c in LEX.concepts if c.gates is not None]
    open_count = sum(
        gate_open(c.gates, *sentence_words(s, LEX.gate_lengths))
        for s in anchored
        for c in gated
        if c.gates is not None
    )
    assert len(gated) >= len(LEX.concepts) - 5
    assert open_count < 0.5 * len(anchored) * len(gated)


# Generated sentences: the rules' own literal words, in any case, with the punctuation and
# characters the term syntax treats specially.
_RULE_WORDS = sorted(
    {
        w
        for term in re.findall(r'"([^"]+)"', RULES.read_text(encoding="utf-8"))
        for tok in term.split()
        for w in tok.split("|")
        if w and not w.startswith(("{", "...")) and not w.startswith("#")
    }
)
_PIECES = st.one_of(
    st.sampled_from(_RULE_WORDS).map(lambda w: w.rstrip("*")),
    st.sampled_from(_RULE_WORDS).map(lambda w: w.rstrip("*") + "s"),
    st.sampled_from(_RULE_WORDS).map(str.upper),
    st.sampled_from(["ICE", "Ice", "immigration agents", "287(g)", "U.S.", "won't", "\u2019s"]),
    st.sampled_from(["\u0130", "\u0131", "\u017f", "\u212a", "_", "-", "'", "\u2019", "\u00e9"]),
)
_SEPARATORS = st.sampled_from([" ", " ", " ", ", ", "-", " - ", "'", "\u2019", "_", ""])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(_PIECES, _SEPARATORS), min_size=1, max_size=14))
def test_no_gate_is_closed_where_its_concept_matches_generated(
    parts: list[tuple[str, str]],
) -> None:
    sentence = "".join(word + sep for word, sep in parts)
    assert _closed_but_matching(sentence) == []
