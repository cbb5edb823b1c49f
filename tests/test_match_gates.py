"""Term gates: a term's expression is skipped only when it could not have matched.

A gate (``text.term_gate``) asks that every literal position of a term have one of its
words among the sentence's words. It must never be closed where the term's expression
matches; the index that finds the candidate terms (``text.GateIndex``) must never leave out
an open one; and the matches of a concept's open terms, found one term at a time
(``text.leftmost_matches``), must be those of all its terms as one alternation. These tests
check that with every term of the shipped rules over every sentence of the development
corpus, the generalisation set, the golden cases and the shared feeds, and over generated
sentences made of the rules' own words, odd case and punctuation.
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
from service.match.text import (
    leftmost_matches,
    sentence_spans,
    sentence_words,
    term_gate,
    term_open,
)
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


def test_a_term_opens_only_when_every_position_finds_its_word() -> None:
    honor, city = term_gate("honor* detainer*"), term_gate("sanctuary city")
    words = sentence_words("A sanctuary city again", LEX.gate_lengths)
    assert term_open(city, *words) and not term_open(honor, *words)
    words = sentence_words("Jail honors detainers", LEX.gate_lengths)
    assert term_open(honor, *words) and not term_open(city, *words)
    words = sentence_words("Jail honors a sanctuary", LEX.gate_lengths)
    assert not term_open(honor, *words) and not term_open(city, *words)


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


def _alternation(terms: tuple[re.Pattern[str], ...]) -> re.Pattern[str]:
    """A concept's terms joined as one expression, as the rules were matched before
    ``leftmost_matches``."""
    return re.compile("|".join(t.pattern for t in terms), re.IGNORECASE)


ALTERNATIONS = [_alternation(c.terms) for c in LEX.concepts]


def _closed_but_matching(sentence: str) -> tuple[list[str], bool]:
    """Terms (concept id and number) whose gate is closed on ``sentence`` although their
    expression matches it, and open terms the index left out; and whether any concept
    matched the sentence."""
    words, prefixes = sentence_words(sentence, LEX.gate_lengths)
    candidates = set(LEX.term_index.candidates(words, prefixes))
    # A concept whose alternation does not match has no term that matches: only its
    # concepts that match need each term's expression run.
    matching = {ci for ci, whole in enumerate(ALTERNATIONS) if whole.search(sentence)}
    wrong = []
    for n, (ci, term, gate) in enumerate(LEX.all_terms):
        opened = term_open(gate, words, prefixes)
        if (not opened and ci in matching and term.search(sentence)) or (
            opened and n not in candidates
        ):
            wrong.append(f"{LEX.concepts[ci].id}[{n}]")
    return wrong, bool(matching)


def _spans(matches: Iterator[re.Match[str]]) -> list[tuple[int, int]]:
    return [m.span() for m in matches]


def test_no_gate_is_closed_where_its_term_matches() -> None:
    assert len(SENTENCES) > 1500
    matched = 0
    for sentence in SENTENCES:
        wrong, any_match = _closed_but_matching(sentence)
        assert wrong == [], sentence
        matched += any_match
    assert matched > 500  # the check saw many matches, not only closed gates


def test_open_terms_match_as_their_concept_s_alternation() -> None:
    """The matches of a concept's open terms, one term at a time, are those of all its
    terms as one alternation (leftmost first; the first term that matches there wins)."""
    compared = 0
    for sentence in SENTENCES:
        words, prefixes = sentence_words(sentence, LEX.gate_lengths)
        for c, whole in zip(LEX.concepts, ALTERNATIONS, strict=True):
            opened = [
                t for t, g in zip(c.terms, c.gates, strict=True) if term_open(g, words, prefixes)
            ]
            if not opened:
                continue  # no term can match: test_no_gate_is_closed_where_its_term_matches
            expected = _spans(whole.finditer(sentence, 0, len(sentence)))
            got = _spans(leftmost_matches(opened, sentence, 0, len(sentence)))
            assert got == expected, (c.id, sentence)
            compared += bool(expected)
    assert compared > 500


@pytest.mark.parametrize(
    "patterns,text,spans",
    [
        # The leftmost match wins, whichever pattern finds it.
        (["b+", "a"], "xxab", [(2, 3), (3, 4)]),
        # At the same position the first pattern wins, even when a later one is longer.
        (["ab", "abc"], "abc abc", [(0, 2), (4, 6)]),
        (["abc", "ab"], "abc abc", [(0, 3), (4, 7)]),
        # After a match the search goes on from its end: no overlaps.
        (["aba", "ba"], "ababa", [(0, 3), (3, 5)]),
        # A pattern's later matches are found again after another's match passed them.
        (["a.", "b"], "abab", [(0, 2), (2, 4)]),
    ],
)
def test_leftmost_matches_examples(
    patterns: list[str], text: str, spans: list[tuple[int, int]]
) -> None:
    compiled = [re.compile(p) for p in patterns]
    assert _spans(leftmost_matches(compiled, text, 0, len(text))) == spans
    assert _spans(re.compile("|".join(patterns)).finditer(text)) == spans


def test_gates_skip_most_terms_on_news_sentences() -> None:
    """What the gates are for: on anchored sentences few terms' expressions are run, and the
    index hands over few more than those to check."""
    anchored = [s for s in SENTENCES if MATCHER.anchors(s)]
    opened = candidates = 0
    for s in anchored:
        words, prefixes = sentence_words(s, LEX.gate_lengths)
        opened += sum(term_open(g, words, prefixes) for _, _, g in LEX.all_terms)
        candidates += len(LEX.term_index.candidates(words, prefixes))
    terms = len(anchored) * len(LEX.all_terms)
    assert opened < 0.1 * terms
    assert candidates < 0.25 * terms


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
def test_no_gate_is_closed_where_its_term_matches_generated(
    parts: list[tuple[str, str]],
) -> None:
    sentence = "".join(word + sep for word, sep in parts)
    assert _closed_but_matching(sentence)[0] == []
