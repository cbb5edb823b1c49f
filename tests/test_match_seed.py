"""The seed story (seeds/boston-detainer-requests-2025.txt) keeps its full explanation."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.match import Matcher
from service.types import Jurisdiction, MatchResult

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "config" / "rules" / "detainer-sanctuary.toml"
SEED = ROOT / "seeds" / "boston-detainer-requests-2025.txt"


@pytest.fixture(scope="module")
def matcher() -> Matcher:
    return Matcher.load(RULES)


@pytest.fixture(scope="module")
def seed(matcher: Matcher) -> tuple[MatchResult, dict[str, str]]:
    lines = SEED.read_text(encoding="utf-8").split("\n")
    fields = {"title": lines[0], "summary": lines[1], "text": "\n".join(lines[2:])}
    return matcher.classify(**fields), fields


def canon(result: MatchResult, kind: str) -> set[str]:
    return {e.canonical for e in result.entities if e.type == kind}


def test_seed_is_flagged_with_topics_and_event(seed: tuple[MatchResult, dict[str, str]]) -> None:
    r, _ = seed
    assert r.flagged and r.score >= 0.9
    assert set(r.topics) == {"detainer", "sanctuary"}
    assert r.event_type == "detainer_declined"
    assert r.ruleset_version == "2026.12.215"


def test_seed_jurisdictions(seed: tuple[MatchResult, dict[str, str]]) -> None:
    r, _ = seed
    assert Jurisdiction("Boston", "city", "MA") in r.jurisdictions
    assert Jurisdiction("Massachusetts", "state", "MA") in r.jurisdictions
    assert r.jurisdictions[0] == Jurisdiction("Boston", "city", "MA")


def test_seed_entities(seed: tuple[MatchResult, dict[str, str]]) -> None:
    r, _ = seed
    assert {"ICE", "Boston Police Department"} <= canon(r, "agency")
    assert {"Michael Cox", "Michelle Wu", "Tom Homan", "Maura Healey"} <= canon(r, "official")
    assert "Boston Trust Act" in canon(r, "law")
    assert "15 detainer requests" in canon(r, "count")


def test_seed_evidence_explains_itself(seed: tuple[MatchResult, dict[str, str]]) -> None:
    r, fields = seed
    assert r.evidence[0].field == "title"
    assert "detainer.request" in r.rules and "sanctuary.trust_act" in r.rules
    for ev in r.evidence:
        text = fields[ev.field]
        assert text[ev.start : ev.end] == ev.sentence
        for t in ev.terms:
            assert ev.start <= t.start < t.end <= ev.end
            assert text[t.start : t.end] == t.term
    d = r.as_dict()
    assert d["ruleset_version"] == r.ruleset_version and d["evidence"]
