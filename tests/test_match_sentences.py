"""Sentence splitting (``text.sentence_spans``): where a period ends a sentence.

Data-driven: each case is a text and the sentences it must split into. An abbreviation's
period ("Gov.", "U.S.", "Tenn.", "Jan.", an initial) runs on into the next word, unless that
word usually opens a sentence or a line break follows; every other period, "!" and "?"
followed by whitespace ends one.
"""

from __future__ import annotations

import pytest

from service.match.text import sentence_spans

CASES: list[tuple[str, list[str]]] = [
    ("One. Two! Three? Four", ["One.", "Two!", "Three?", "Four"]),
    ("Gov. Healey signed the bill.", ["Gov. Healey signed the bill."]),
    (
        "State Sen. Mike Johnson and Rep. Lee spoke.",
        ["State Sen. Mike Johnson and Rep. Lee spoke."],
    ),
    (
        "The jail held him for U.S. Immigration and Customs Enforcement. Then it let him go.",
        ["The jail held him for U.S. Immigration and Customs Enforcement.", "Then it let him go."],
    ),
    (
        "He was deported from the U.S. The sheriff declined.",
        ["He was deported from the U.S.", "The sheriff declined."],
    ),
    ("U.S. officials said so.", ["U.S. officials said so."]),
    ("He left the U.S. It's over.", ["He left the U.S.", "It's over."]),
    ("NASHVILLE, Tenn. (AP) — The sheriff spoke.", ["NASHVILLE, Tenn. (AP) — The sheriff spoke."]),
    (
        "The law takes effect Jan. 1. The sheriff objected.",
        ["The law takes effect Jan. 1.", "The sheriff objected."],
    ),
    ("It opens at 8 a.m. today.", ["It opens at 8 a.m. today."]),
    ("It opens at 8 a.m. The jail closes at 5.", ["It opens at 8 a.m.", "The jail closes at 5."]),
    ("Mayor Martin J. Walsh signed it.", ["Mayor Martin J. Walsh signed it."]),
    (
        "It ranked No. 5 on the list. No. The mayor said no.",
        ["It ranked No. 5 on the list.", "No.", "The mayor said no."],
    ),
    # Case matters: "Mass." is a state, "mass." a word.
    ("BOSTON, Mass. Lawmakers met.", ["BOSTON, Mass. Lawmakers met."]),
    ("They prayed at mass. Lawmakers met.", ["They prayed at mass.", "Lawmakers met."]),
    # A line break always ends a sentence; so does a closing quote after the period.
    ("He lives in the U.S.\nOfficials met.", ["He lives in the U.S.", "Officials met."]),
    ('"He is not from the U.S." Officials met.', ['"He is not from the U.S."', "Officials met."]),
    # Only a whole word is an abbreviation: "Bros." yes, "Ambros." (a name's end) no.
    ("Ambros. Officials met.", ["Ambros.", "Officials met."]),
    ("Super Mario Bros. Review", ["Super Mario Bros. Review"]),
    # An ellipsis and a run of end marks end a sentence.
    ("Wait... What happened?! Nothing.", ["Wait...", "What happened?!", "Nothing."]),
    (
        "It might violate 8 U.S.C. 1373. The city disagrees.",
        ["It might violate 8 U.S.C. 1373.", "The city disagrees."],
    ),
    ("Ends with U.S.", ["Ends with U.S."]),
    ("Ends with U.S. ", ["Ends with U.S."]),
]


@pytest.mark.parametrize(("text", "sentences"), CASES, ids=[c[0][:40] for c in CASES])
def test_sentence_spans(text: str, sentences: list[str]) -> None:
    assert [text[s:e] for s, e in sentence_spans(text)] == sentences
