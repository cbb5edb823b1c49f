"""Event types: what happened, checked against hand labels and on the rule that picks one.

``tests/data/match/events.jsonl`` holds 370 grade 2 items of the generalisation set, drawn at
random, each with the event types a reader accepts for it, the best first (``event_types``),
labelled before the matcher's answer was looked at. ``split`` says how each sample was used:
``tune`` (100) was studied while the rules of 2026.12.168-172 were written; ``check`` (60) was
scored after the first round and then studied; ``blind`` (60), ``blind2``, ``blind3`` and
``blind4`` (50 each) were each scored once before the round that studied them
(docs/matcher.md, "Event types").
"""

from __future__ import annotations

import json
import re
import tomllib
from collections import Counter
from pathlib import Path

import pytest

from service.match import Matcher
from service.match.evaluate import Report, evaluate, format_report
from service.match.events import OTHER, choose_event
from service.match.lexicon import EventRule
from service.match.scoring import SentenceHit
from tests.conftest import RULES

DATA = Path(__file__).parent / "data" / "match" / "events.jsonl"
ITEMS = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines() if line]
EVENT_IDS = {ev["id"] for ev in tomllib.loads(RULES.read_text(encoding="utf-8"))["events"]}

# Share of items whose event type is one the labels accept. 2026.12.167 had 0.55 (204/370)
# and 2026.12.172 has 0.82 (303/370); a rule change that costs more than a few items fails.
ACCEPTED_MIN = 0.80
SPLIT_MIN = 0.70


@pytest.fixture(scope="module")
def matcher() -> Matcher:
    return Matcher.load(RULES)


@pytest.fixture(scope="module")
def report(matcher: Matcher) -> Report:
    return evaluate(matcher, ITEMS)


def test_labels_are_event_types_and_items_are_distinct() -> None:
    assert len({it["id"] for it in ITEMS}) == len(ITEMS) >= 300
    for it in ITEMS:
        labels = it["event_types"]
        assert labels and len(set(labels)) == len(labels), it["id"]
        assert set(labels) <= EVENT_IDS | {OTHER}, it["id"]
        assert it["grade"] == 2
        assert it["split"] in {"tune", "check", "blind", "blind2", "blind3", "blind4"}
    assert Counter(it["split"] for it in ITEMS) == {
        "tune": 100,
        "check": 60,
        "blind": 60,
        "blind2": 50,
        "blind3": 50,
        "blind4": 50,
    }


def test_event_types_agree_with_the_labels(report: Report) -> None:
    text = format_report(report)
    judged = report.event_outcomes
    assert len(judged) == len(ITEMS), text  # every item is flagged, so every one is judged
    assert report.event_accepted / len(judged) >= ACCEPTED_MIN, text


@pytest.mark.parametrize("split", ["tune", "check", "blind", "blind2", "blind3", "blind4"])
def test_each_sample_agrees(matcher: Matcher, split: str) -> None:
    part = evaluate(matcher, [it for it in ITEMS if it["split"] == split])
    assert part.event_accepted / len(part.event_outcomes) >= SPLIT_MIN, format_report(part)


@pytest.mark.parametrize(
    ("title", "body", "event"),
    [
        # The longest cue, not the first alternative that matches at a place: "require jails
        # to honor" is a state mandate, where "honor" alone is a detainer honored.
        ("Montana bill would require jails to honor ICE detainers", "", "state_mandate"),
        # "cities that refuse to honor ICE requests" describes the places punished.
        (
            "Lawmakers approve bill punishing cities that refuse to honor ICE requests",
            "",
            "state_mandate",
        ),
        # A judge's warrant or order is a condition, not a court case.
        (
            "Sheriff: Jail won't hold inmates for ICE without a judge's order",
            "",
            "detainer_declined",
        ),
        # The headline's event beats a body sentence's.
        (
            "Trump administration sues Colorado over laws it says hamper immigration enforcement",
            "The laws bar state and local agencies from sharing personal information with "
            "federal immigration officials.",
            "lawsuit_or_ruling",
        ),
        # A headline with no term of the beat still says what happened.
        (
            "Jury awards $1.2 million to former inmate",
            "Jurors found the jail kept him for three days after his charges were dropped "
            "solely because immigration agents had asked the jail to hold him.",
            "lawsuit_or_ruling",
        ),
        ("Commissioners vote not to renew 287(g) agreement", "", "287g_ended"),
        # Commentary tells no event, whatever it discusses; a label needs its colon or bar.
        (
            "Opinion: The governor's order forcing jails to honor ICE detainers goes too far",
            "",
            "other",
        ),
        ("LETTER | Our sheriff should stop holding people for ICE", "", "other"),
        ("Opinion polls show voters back jails that honor ICE detainers", "", "detainer_honored"),
        ("County ends contract to house ICE detainees at jail", "", "policy_strengthened"),
    ],
)
def test_event_type_of(matcher: Matcher, title: str, body: str, event: str) -> None:
    r = matcher.classify(title, body)
    assert r.flagged
    assert r.event_type == event, r.evidence


def rule(eid: str, *cues: str, weight: float = 1.0) -> EventRule:
    return EventRule(eid, frozenset({"detainer"}), weight, tuple(re.compile(c) for c in cues))


def hit(field: str, text: str, score: float) -> SentenceHit:
    return SentenceHit(field, 0, len(text), topics={"detainer": score}, score=score)


def test_choose_event_keeps_the_longest_overlapping_cue() -> None:
    events = [rule("honored", "honor"), rule("declined", "won't honor", weight=0.5)]
    text = "jail won't honor holds"
    assert choose_event(events, [hit("title", text, 1.0)], {"title": text}) == "declined"


def test_a_description_silences_the_cues_it_outlasts() -> None:
    events = [rule("declined", "refuse to honor"), rule("mandate", "punish", weight=0.5)]
    text = "bill to punish cities that refuse to honor holds"
    masks = [re.compile("cities that refuse")]
    texts = {"title": text}
    assert choose_event(events, [hit("title", text, 1.0)], texts) == "declined"
    assert choose_event(events, [hit("title", text, 1.0)], texts, masks) == "mandate"
    only_mask = [re.compile("cities that refuse to honor holds")]
    assert choose_event(events[:1], [hit("title", text, 1.0)], texts, only_mask) == OTHER


def test_the_title_outranks_the_body() -> None:
    events = [rule("honored", "honor"), rule("ruling", "sues", weight=0.5)]
    texts = {"title": "county sues", "summary": "jail will honor holds"}
    hits = [hit("summary", texts["summary"], 0.9), hit("title", texts["title"], 0.2)]
    assert choose_event(events, hits, texts) == "ruling"
    assert choose_event(events, hits[:1], texts) == "honored"
    # Between body sentences, the value decides; ties go to the earlier rule.
    texts = {"summary": "county sues. jail will honor holds"}
    hits = [
        SentenceHit("summary", 0, 11, topics={"detainer": 1.0}, score=1.0),
        SentenceHit("summary", 13, len(texts["summary"]), topics={"detainer": 0.4}, score=0.4),
    ]
    assert choose_event(events, hits, texts) == "ruling"  # 1.0 * 0.5 beats 0.4 * 1.0


def test_eval_reports_event_agreement(matcher: Matcher) -> None:
    items = [
        {
            "id": "a",
            "title": "Montana bill would require jails to honor ICE detainers",
            "grade": 2,
            "topics": ["detainer"],
            "event_types": ["state_mandate"],
        },
        {
            "id": "b",
            "title": "Montana bill would require jails to honor ICE detainers",
            "grade": 2,
            "topics": ["detainer"],
            "event_types": ["policy_adopted", "state_mandate"],
        },
        {
            "id": "c",
            "title": "Sheriff says jail won't honor ICE detainers",
            "grade": 2,
            "topics": ["detainer"],
            "event_types": ["detainer_honored"],
        },
        {
            "id": "d",
            "title": "Ice storm closes schools",
            "grade": 0,
            "kind": "hard-ice",
            "event_types": ["other"],
        },  # not flagged: not judged
    ]
    r = evaluate(matcher, items)
    assert (len(r.event_outcomes), r.event_primary, r.event_accepted) == (3, 1, 2)
    text = format_report(r)
    assert "event type on 3 flagged items labelled with event_types: first choice 1/3" in text
    assert "  c detainer_declined (want detainer_honored) Sheriff says" in text
    unlabelled = format_report(
        evaluate(matcher, [{k: v for k, v in items[0].items() if k != "event_types"}])
    )
    assert "event type" not in unlabelled
