"""Golden items (tests/data/match/golden.jsonl): near misses stay quiet, clear stories flag.

Each line has ``title``/``summary``/``text`` and ``expect``: ``flagged`` always, optionally
``topics`` (subset that must be reported), ``event_type`` and ``jurisdictions``
(``[name, kind, state]`` that must be listed). Near misses are the beat's traps: ice storms,
wildlife and gun sanctuaries, eviction "unlawful detainer", the Interstate Agreement on
Detainers, the Social Security TRUST Act.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from service.match import Matcher
from service.types import Jurisdiction
from tests.conftest import RULES

GOLDEN = Path(__file__).parent / "data" / "match" / "golden.jsonl"
CASES = [json.loads(line) for line in GOLDEN.read_text(encoding="utf-8").splitlines() if line]


@pytest.fixture(scope="module")
def matcher() -> Matcher:
    return Matcher.load(RULES)


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_golden(matcher: Matcher, case: dict[str, Any]) -> None:
    r = matcher.classify(case["title"], case["summary"], case["text"])
    expect = case["expect"]
    why = f"score {r.score}, rules {r.rules}, evidence {[e.sentence for e in r.evidence]}"
    assert r.flagged is expect["flagged"], why
    if not expect["flagged"]:
        assert r.event_type is None
        return
    assert set(expect.get("topics", [])) <= set(r.topics), why
    if "event_type" in expect:
        assert r.event_type == expect["event_type"], why
    for name, kind, state in expect.get("jurisdictions", []):
        assert Jurisdiction(name, kind, state) in r.jurisdictions, r.jurisdictions


def test_golden_file_has_both_sides() -> None:
    flags = [c["expect"]["flagged"] for c in CASES]
    assert flags.count(True) >= 10 and flags.count(False) >= 15
