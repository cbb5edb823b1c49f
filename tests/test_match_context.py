"""What a sentence may borrow from around it, and what it may not.

* A sense's negative contexts are searched only inside the match's own sentence: "gun" in the
  sentence before does not make "stay out of federal immigration work" a gun-sanctuary story.
* A concept that ``requires_any`` local actor is satisfied in a summary or text sentence by
  a local actor in the item's title ("Police chief lays out priorities" ... "Her department
  will stay out of federal immigration work"), never by one in another body sentence, and a
  title sentence must name its own.
"""

from __future__ import annotations

import re

import pytest

from service.match import Matcher
from service.match.lexicon import Sense
from service.match.senses import SenseChecker
from tests.conftest import RULES


@pytest.fixture(scope="module")
def matcher() -> Matcher:
    return Matcher.load(RULES)


def _checker(negative_near: str) -> SenseChecker:
    """A checker for one sense "s" with a 60-character window and ``negative_near`` alone
    (case-insensitive, as the rules file compiles it)."""
    sense = Sense(
        id="s",
        window=60,
        negative_near=re.compile(negative_near, re.IGNORECASE),
        negative_item=None,
        require_item=None,
    )
    return SenseChecker({"s": sense}, "")


def test_sense_window_stops_at_the_sentence_bounds() -> None:
    checker = _checker(r"\bgun\b")
    text = "Officers will target gun violence. They will stay out of immigration work."
    start = text.index("stay")
    end = start + len("stay out of immigration work")
    sentence = (text.index("They"), len(text))
    assert not checker.accepts("s", text, start, end)  # the old reach: the whole field
    assert checker.accepts("s", text, start, end, sentence)
    inside = "They will stay out of gun and immigration work."
    assert not checker.accepts("s", inside, 5, 20, (0, len(inside)))


def test_a_place_name_does_not_count_as_a_negative_context() -> None:
    checker = _checker(r"\bparish\w*")
    text = "Orleans Parish sheriff will stop helping with parish fairs and with ICE."
    start = text.index("stop")
    end = start + len("stop helping")
    place = (0, len("Orleans Parish"))
    assert not checker.accepts("s", text, start, end)
    # the place's "Parish" is masked, the second "parish" is still a negative context
    assert not checker.accepts("s", text, start, end, None, [place])
    alone = "Orleans Parish sheriff will stop helping ICE."
    start = alone.index("stop")
    end = start + len("stop helping")
    assert not checker.accepts("s", alone, start, end)
    assert checker.accepts("s", alone, start, end, None, [place])


@pytest.mark.parametrize(
    ("title", "topic"),
    [
        # "parish" (churches), "gun" and "church" are negative contexts of the sanctuary
        # senses; inside a county's or parish's name they are the place
        ("Orleans Parish sheriff limits cooperation with immigration agents", "sanctuary"),
        ("Churchill County sheriff rejects sanctuary policies", "sanctuary"),
        ("Marshall County jail holds man on ICE detainer", "detainer"),
        ("Parish priests refuse to help ICE", None),
        ("Gun owners want Gunnison County to be a Second Amendment sanctuary", None),
    ],
)
def test_place_names_are_not_read_as_their_words(
    matcher: Matcher, title: str, topic: str | None
) -> None:
    r = matcher.classify(title)
    assert r.flagged is (topic is not None), r
    if topic is not None:
        assert topic in r.topics, r


@pytest.mark.parametrize(
    ("title", "summary", "flagged"),
    [
        # the title's local actor stands for the summary's "her department"
        (
            "City's new police chief lays out priorities",
            "Chief Dana Price said officers will focus on traffic deaths and gun violence. "
            "Her department, she added, will stay out of federal immigration work.",
            True,
        ),
        # no local actor in the title: a hospital's department is not a police force
        (
            "New hospital director lays out priorities",
            "Her department, she added, will stay out of federal immigration work.",
            False,
        ),
        # another body sentence's local actor does not carry over
        (
            "New director lays out priorities",
            "The police chief spoke first. Her department, she added, will stay out of "
            "federal immigration work.",
            False,
        ),
        # a title must name its own local actor
        ("Department will stay out of federal immigration work", "", False),
        ("Police will stay out of federal immigration work", "", True),
    ],
)
def test_a_title_local_actor_stands_for_one_in_the_body(
    matcher: Matcher, title: str, summary: str, flagged: bool
) -> None:
    r = matcher.classify(title, summary)
    assert r.flagged is flagged, r
    if flagged:
        assert "sanctuary.enforcement_limits" in r.rules
