"""Text helpers for the matcher: length-preserving folding, sentences, the rule-term syntax.

Owns: turning a field into a lower-cased twin with the same offsets (so every offset found in
the twin indexes the original), sentence spans, word-boundary tests, compiling the small
term language of the rules file into regular expressions, and the terms' gates (the words a
sentence must hold for a term to match, checked before its expression runs).

Does not: strip HTML, decode entities or collapse whitespace — ``normalize.py`` does that
before the matcher sees an article, and offsets must index exactly the text we were given.

Term syntax (documented in docs/matcher.md and the rules file header):

* words are separated by any run of non-word characters (space, hyphen, quote, comma), so
  ``sanctuary city`` also matches ``"sanctuary" city`` and ``sanctuary-city``;
* ``word*`` matches the word and any continuation (``detainer*`` → detainers);
* ``a|b*|c`` is one word position with alternatives (``honor*|comply``);
* ``...`` is a gap of up to ``GAP_WORDS`` words, ``...N`` of up to N (1-9) words;
* ``{NAME}`` inserts the macro ``NAME`` (a regular expression) from ``[macros]``;
* a term is case-insensitive; a macro may switch case back on with ``(?-i:ICE)``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

# Longest sentence we examine as one unit. Past this a "sentence" is a run-on page dump (no
# punctuation), and scanning it with the gap patterns would cost quadratic-ish time.
MAX_SENTENCE_CHARS = 1_200

# How many words ``...`` may skip. Eight covers "hold inmates longer than their release date
# for ICE" style phrasing without letting a pattern leap across a whole paragraph.
GAP_WORDS = 8

# Characters folded to ASCII one-for-one (same length, so offsets survive). Applied with
# str.replace per character present: str.translate costs ~150 µs/KB on non-ASCII text.
_FOLD = (
    ("\u2019", "'"),
    ("\u2018", "'"),
    ("\u02bc", "'"),
    ("\u201c", '"'),
    ("\u201d", '"'),
    ("\u00a0", " "),
    ("\u2010", "-"),
    ("\u2011", "-"),
    ("\u2013", "-"),
    ("\u2014", "-"),
)

_BOUNDARY = re.compile(r"[.!?]+[\"')\]\u201d\u2019]*\s+|\n\s*")

# Abbreviations whose period need not end a sentence, as news copy writes them (case
# matters: "Mass." is a state, "mass." a word). A title always runs on into its name
# ("Gov. Healey"); the others ("U.S.", "Tenn.", "Jan.", "a.m.") run on into the next word
# unless that word is one that usually starts a sentence ("... in the U.S. The sheriff").
_TITLES = frozenset(
    """Mr Mrs Ms Dr Gov Sen Rep Reps Sens Lt Gen Col Sgt Capt Cmdr Det Supt Atty Pres Insp
    Cpl Maj Adm Lt.-Gov St Mt Ft Rev Hon Prof""".split()
)
_ABBREVIATIONS = frozenset(
    """U.S U.S.A U.S.C U.N D.C N.Y N.J N.C S.C N.H N.M N.D S.D W.Va a.m p.m e.g i.e etc vs Jr Sr
    Inc Co Corp Ltd Bros Dept Univ Jan Feb Mar Apr Jun Jul Aug Sep Sept Oct Nov Dec Ala Ariz
    Ark Calif Colo Conn Del Fla Ga Ill Ind Kan Ky La Md Mass Mich Minn Miss Mo Mont Neb Nev
    Okla Ore Pa Tenn Tex Va Vt Wash Wis Wyo""".split()
)
# Capitalised words that usually open a sentence: after "U.S." or "Tenn." they end it.
_STARTERS = frozenset(
    """The A An He She It They We I You His Her Their Its Our My This That These Those There
    Here But And Or So Yet In On At For From To With After Before When While As If Since
    Although Though Because What Who Why How Where Which Some Many Most All Both Each No Not
    Now Then Still Also However Meanwhile Last Earlier Later According Under Over During
    Despite Instead Officials Authorities Police""".split()
)
_WORD = re.compile(r"\w+")
# How far back from a period to look for one: the longest entry, plus one.
_ABBREVIATION_CHARS = max(map(len, _TITLES | _ABBREVIATIONS)) + 1


def fold(text: str) -> str:
    """Lower-case and fold quotes/dashes without changing the length (offsets stay valid)."""
    low = text.lower()
    if len(low) != len(text):
        # A few characters (e.g. "İ") lower to two code points; fold them one by one.
        low = "".join(c if len(c.lower()) != 1 else c.lower() for c in text)
    if not low.isascii():
        for src, dst in _FOLD:
            if src in low:
                low = low.replace(src, dst)
    return low


def is_word_char(c: str) -> bool:
    return c.isalnum() or c == "_"


def bounded(text: str, start: int, end: int, prefix: bool = False) -> bool:
    """True when ``text[start:end]`` starts (and, unless ``prefix``, ends) at a word edge."""
    if start > 0 and is_word_char(text[start - 1]) and is_word_char(text[start]):
        return False
    if prefix or end >= len(text):
        return True
    return not (is_word_char(text[end]) and is_word_char(text[end - 1]))


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Split ``text`` into sentence spans ``(start, end)``, whitespace trimmed, never empty.

    A boundary is end punctuation followed by whitespace, or a line break. A lone period
    after an abbreviation or an initial is not one when the next word runs on (``_runs_on``:
    "Gov. Healey", "U.S. Immigration and Customs Enforcement", "Jan. 5"), so a term can
    match across it. Spans longer than ``MAX_SENTENCE_CHARS`` are cut into pieces so later
    stages stay bounded.
    """
    spans: list[tuple[int, int]] = []
    start = 0
    for m in _BOUNDARY.finditer(text):
        if text[m.start()] == "." and _runs_on(text, m.start(), m.end()):
            continue
        _add_span(text, start, m.end(), spans)
        start = m.end()
    _add_span(text, start, len(text), spans)
    return spans


def _runs_on(text: str, dot: int, after: int) -> bool:
    """True when the period at ``dot`` closes an abbreviation or initial, not the sentence.

    ``after`` is where the boundary's whitespace ends. Only a lone period followed by
    spaces on one line qualifies; a line break always ends the sentence.
    """
    gap = text[dot + 1 : after]
    if "\n" in gap or not gap.isspace() or after >= len(text):
        return False
    k = dot
    low = max(0, dot - _ABBREVIATION_CHARS)
    while k > low and (text[k - 1].isalpha() or text[k - 1] in ".-"):
        k -= 1
    if k > 0 and (text[k - 1].isalnum() or text[k - 1] == "_"):
        return False  # the word is longer than any abbreviation
    word = text[k:dot]
    nxt = text[after]
    if word in _TITLES:
        return True
    if word == "No":
        return nxt.isdigit()  # "No. 5"
    if not (word in _ABBREVIATIONS or (len(word) == 1 and word.isupper())):
        return False
    if nxt.islower() or nxt.isdigit() or nxt == "(":
        return True  # "U.S. officials", "Jan. 5", a dateline's "Tenn. (AP)"
    if not nxt.isupper():
        return False
    following = _WORD.match(text, after)
    return following is not None and following.group() not in _STARTERS


def _add_span(text: str, start: int, end: int, out: list[tuple[int, int]]) -> None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    while end - start > MAX_SENTENCE_CHARS:
        cut = text.rfind(" ", start + MAX_SENTENCE_CHARS // 2, start + MAX_SENTENCE_CHARS)
        cut = cut if cut > start else start + MAX_SENTENCE_CHARS
        out.append((start, cut))
        start = cut
        while start < end and text[start].isspace():
            start += 1
    if end > start:
        out.append((start, end))


_MACRO = re.compile(r"^\{([A-Z_][A-Z0-9_]*)\}$")
_SEP = r"\W+"
_GAP_TOKEN = re.compile(r"^\.\.\.([1-9])?$")


def _gap(words: int) -> str:
    return rf"(?:\W+[\w'\u2019]+){{0,{words}}}?"


class TermError(ValueError):
    """A rule term is malformed; the message says which part and why."""


def term_regex(term: str, macros: Mapping[str, str]) -> str:
    """Translate one rule term into a regular expression (without flags)."""
    parts: list[str] = []
    gap_pending = False
    tokens = term.split()
    if not tokens:
        raise TermError("empty term")
    if _GAP_TOKEN.match(tokens[0]) or _GAP_TOKEN.match(tokens[-1]):
        raise TermError("a term cannot start or end with a '...' gap")
    gap = 0
    for tok in tokens:
        g = _GAP_TOKEN.match(tok)
        if g:
            gap_pending = True
            gap = int(g.group(1) or GAP_WORDS)
            continue
        m = _MACRO.match(tok)
        if m:
            if m.group(1) not in macros:
                raise TermError(f"unknown macro {{{m.group(1)}}}")
            # A macro may take a possessive: "ICE's request" is "ICE request", where the
            # separator alone would leave an "s" between the agency and its noun.
            rx = f"(?:{macros[m.group(1)]})(?:['\u2019]s)?"
        elif "{" in tok or "}" in tok:
            raise TermError(f"bad macro reference {tok!r}; write {{NAME}} as a separate word")
        else:
            rx = "|".join(_word_regex(alt, tok) for alt in tok.split("|"))
            rx = f"(?:{rx})" if "|" in tok else rx
        if parts:
            parts.append(_gap(gap) + _SEP if gap_pending else _SEP)
        gap_pending = False
        parts.append(rx)
    return r"(?<!\w)(?:" + "".join(parts) + r")(?!\w)"


def _word_regex(word: str, tok: str) -> str:
    star = word.endswith("*")
    core = word[:-1] if star else word
    if not core:
        raise TermError(f"empty word or '*' without a word in {tok!r}")
    if "*" in core:
        raise TermError(f"'*' only at the end of a word: {tok!r}")
    rx = re.escape(core).replace("'", "['\u2019]").replace(r"\-", r"[-\s]?")
    return rx + (r"\w*" if star else "")


def term_positions(term: str) -> Iterator[list[str] | str | None]:
    """Each position of a term as ``term_regex`` reads it: ``None`` for a ``...`` gap, the
    macro's name for ``{NAME}``, else the word's alternatives as written (``honor*|comply``
    gives ``["honor*", "comply"]``)."""
    for tok in term.split():
        if _GAP_TOKEN.match(tok):
            yield None
        elif m := _MACRO.match(tok):
            yield m.group(1)
        else:
            yield tok.split("|")


def _literal_positions(term: str) -> Iterator[list[str]]:
    """The alternatives of each literal (non-macro, non-gap) word position of a term."""
    return (p for p in term_positions(term) if isinstance(p, list))


# ------------------------------------------------------------------------------ term gates
# A concept's regular expression is an alternation of its terms, each a run of word positions
# joined by gaps, compiled case-insensitively. Python's ``re`` cannot skip ahead in such a
# pattern: it tries every term at every character, ~0.5 ms for a sentence against the whole
# rules file. A gate is a cheaper necessary condition: every literal position of a term must
# have one of its words among the sentence's words (``ban|bans|barred`` a word equal to one of
# them, ``limit*`` a word starting with "limit"). A concept whose every term has a closed gate
# cannot match, so its expression is not run. Macro positions are not gated.

# Exact words and prefixes, any of which opens one position.
GatePosition = tuple[frozenset[str], frozenset[str]]
# A term's gated positions (all must open); an empty tuple is always open.
TermGate = tuple[GatePosition, ...]

# The only characters beyond ASCII that ``re.IGNORECASE`` matches to an ASCII letter or digit
# (found by testing every code point): dotted and dotless i, long s, the Kelvin sign.
# ``str.lower`` would turn "İ" into two characters, so they are mapped first.
_ASCII_CASE = {"\u0130": "i", "\u0131": "i", "\u017f": "s", "\u212a": "k"}
_LEADING_ALNUM = re.compile(r"[a-z0-9]+")


def term_gate(term: str) -> TermGate:
    """The gate of one rule term: per literal position, the words (exact) and prefixes
    (``word*``, and the leading letters of a word with an apostrophe, hyphen or dot, whose
    expression spans several of the sentence's words) one of which the sentence must hold."""
    positions: list[GatePosition] = []
    for alts in _literal_positions(term):
        exact: set[str] = set()
        prefixes: set[str] = set()
        for alt in alts:
            core = alt[:-1] if alt.endswith("*") else alt
            low = core.lower()
            if low.isascii() and low.isalnum() and not alt.endswith("*"):
                exact.add(low)
                continue
            lead = _LEADING_ALNUM.match(low)
            if lead is None:
                break  # a word that starts with punctuation: no gate on this position
            prefixes.add(lead.group(0))
        else:
            positions.append((frozenset(exact), frozenset(prefixes)))
    return tuple(positions)


def prefix_lengths(gates: Iterable[TermGate]) -> frozenset[int]:
    """The lengths of every prefix in ``gates`` (``sentence_words`` makes only those)."""
    return frozenset(len(p) for gate in gates for _, prefixes in gate for p in prefixes)


def sentence_words(text: str, lengths: frozenset[int]) -> tuple[frozenset[str], frozenset[str]]:
    """The words of ``text`` as the gates compare them (lower-cased the way ``re.IGNORECASE``
    matches ASCII), and their prefixes of the given lengths."""
    if not text.isascii():
        for src, dst in _ASCII_CASE.items():
            if src in text:
                text = text.replace(src, dst)
    words = frozenset(_WORD.findall(text.lower()))
    prefixes = frozenset(w[:n] for w in words for n in lengths if n <= len(w))
    return words, prefixes


def term_open(gate: TermGate, words: frozenset[str], prefixes: frozenset[str]) -> bool:
    """Whether the term ``gate`` stands for could match a sentence of these words: every
    literal position has one of its words (or prefixes) there. A gate without positions is
    always open."""
    for exact, starts in gate:
        if exact.isdisjoint(words) and starts.isdisjoint(prefixes):
            return False
    return True


@dataclass(frozen=True, slots=True)
class GateIndex:
    """The terms that a sentence's words could open, found without looking at every term.

    Each term is filed under the words (and prefixes) of one of its literal positions, the
    one with the fewest; a term can only be open when the sentence holds one of them, so
    ``candidates`` gives a superset of the open terms, to check with ``term_open``. Terms
    are numbered in the order given; those without positions are always candidates."""

    by_word: Mapping[str, tuple[int, ...]]
    by_prefix: Mapping[str, tuple[int, ...]]
    always: tuple[int, ...]

    def candidates(self, words: frozenset[str], prefixes: frozenset[str]) -> list[int]:
        """The numbers of the terms ``words`` and ``prefixes`` could open, ascending."""
        found = set(self.always)
        for table, keys in ((self.by_word, words), (self.by_prefix, prefixes)):
            if len(keys) < len(table):
                for key in keys:
                    found.update(table.get(key, ()))
            else:
                for key, ids in table.items():
                    if key in keys:
                        found.update(ids)
        return sorted(found)


def gate_index(gates: Sequence[TermGate]) -> GateIndex:
    """``GateIndex`` of these term gates (numbered in order)."""
    by_word: dict[str, list[int]] = {}
    by_prefix: dict[str, list[int]] = {}
    always: list[int] = []
    for n, gate in enumerate(gates):
        if not gate:
            always.append(n)
            continue
        exact, starts = min(gate, key=lambda pos: len(pos[0]) + len(pos[1]))
        for word in exact:
            by_word.setdefault(word, []).append(n)
        for start in starts:
            by_prefix.setdefault(start, []).append(n)
    return GateIndex(
        {k: tuple(v) for k, v in by_word.items()},
        {k: tuple(v) for k, v in by_prefix.items()},
        tuple(always),
    )


def leftmost_matches(
    patterns: Sequence[re.Pattern[str]], text: str, start: int, end: int
) -> Iterator[re.Match[str]]:
    """The matches of the patterns joined as one alternation, in order: what
    ``re.compile("|".join(...)).finditer(text, start, end)`` gives, found one pattern at a
    time. At the leftmost position where any pattern matches, the first pattern (in order)
    that matches there wins, and the search goes on after its match: an alternation's
    semantics. So a caller runs only the patterns that can match (whose gates are open)
    and gets the alternation's matches. The patterns must not match the empty string (the
    rules' terms cannot: each holds a word)."""
    if len(patterns) == 1:
        yield from patterns[0].finditer(text, start, end)
        return
    # Each pattern's leftmost match at or after ``pos``; still valid while it starts there.
    found = [p.search(text, start, end) for p in patterns]
    pos = start
    while True:
        best: re.Match[str] | None = None
        for i, m in enumerate(found):
            if m is not None and m.start() < pos:
                m = found[i] = patterns[i].search(text, pos, end)
            if m is not None and (best is None or m.start() < best.start()):
                best = m
        if best is None:
            return
        yield best
        pos = best.end() if best.end() > best.start() else best.end() + 1  # never stall
