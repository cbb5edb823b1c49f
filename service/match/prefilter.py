"""The matcher's first step on its own: does an item hold any of the rules' anchors?

Pure and small (an Aho-Corasick automaton of the anchors), so it can run where the item is
parsed: a parse worker process flags each article, and the poller's one storing thread then
skips the matcher for the 98 % of general news that holds no anchor (bench/bench_stages.py).
``Matcher`` uses this same class for its own first step, so an article without an anchor
gets the same answer either way: nothing matched.

Does not analyse sentences, score, or read files (``matcher`` does).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import ahocorasick

from .text import bounded

# Field lengths the matcher reads. A title past 2,000 characters is not a headline; 200,000
# characters of body (~30 printed pages) is far beyond an RSS item, and the cap bounds the
# time a hostile or broken 1 MB item can cost. Offsets stay valid: only a prefix is read.
MAX_FIELD_CHARS = {"title": 2_000, "summary": 50_000, "text": 200_000}


class Prefilter:
    """Finds the anchors of a rules file (``Lexicon.anchors``: lower-case anchor, is-prefix).

    The automaton scans the text as given: lower-casing a copy first would cost ~7 µs/KB
    more, so it holds each anchor as lower, Title and UPPER case per word ("trust act",
    "Trust Act", "TRUST Act", ...). Odd mixed case ("SaNcTuArY") is not an anchor - an
    accepted loss, documented in docs/matcher.md. Pickles as its anchors (the automaton is
    rebuilt on the other side), so it can be handed to worker processes.
    """

    def __init__(self, anchors: Sequence[tuple[str, bool]]) -> None:
        self.anchors = tuple(anchors)
        self._auto = ahocorasick.Automaton()
        for word, prefix in self.anchors:
            for form in case_forms(word):
                self._auto.add_word(form, (len(word), prefix))
        if self.anchors:
            self._auto.make_automaton()

    def __reduce__(self) -> tuple[Any, ...]:
        return (Prefilter, (self.anchors,))

    def find(self, text: str) -> list[int]:
        """Start offsets of anchors in ``text`` (sorted), each at a word edge."""
        if not text or not self.anchors:
            return []
        out = []
        for end_idx, (length, prefix) in self._auto.iter(text):
            start = end_idx + 1 - length
            if bounded(text, start, end_idx + 1, prefix=prefix):
                out.append(start)
        out.sort()
        return out

    def holds_anchor(self, title: str, summary: str = "", text: str = "") -> bool:
        """Whether any field of the item holds an anchor: ``False`` means the matcher would
        find nothing in it."""
        return any(self.find(value) for _, value in read_fields(title, summary, text))


def case_forms(anchor: str) -> set[str]:
    """The spellings of a lower-case ``anchor`` the automaton holds.

    Each word lower, Title or UPPER case in every combination for anchors of one or two words
    ("TRUST Act", "Laken Riley"); for longer phrases each word lower or Title case in every
    combination, and the whole phrase in UPPER case ("In the Country Illegally", "WHAT
    COUNTRY THEY ARE FROM"), not the 3^n mixtures ("what COUNTRY They ARE from"): a
    five-word anchor would add 243 patterns to every process that holds the automaton (the
    parse workers too) where 33 read every phrase news copy prints.
    """
    words = anchor.split(" ")
    if len(words) <= 2:
        return {
            " ".join(c) for c in itertools.product(*[(w, w.capitalize(), w.upper()) for w in words])
        }
    forms = {" ".join(c) for c in itertools.product(*[(w, w.capitalize()) for w in words])}
    forms.add(anchor.upper())
    return forms


def read_fields(title: str, summary: str, text: str) -> list[tuple[str, str]]:
    """The item's fields as the matcher reads them: named, each cut to its maximum."""
    return [
        (name, (value or "")[: MAX_FIELD_CHARS[name]])
        for name, value in (("title", title), ("summary", summary), ("text", text))
    ]
