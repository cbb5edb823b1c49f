"""Jurisdictions and entities: resolution rules on small written cases."""

from __future__ import annotations

import pytest

from service.match import Matcher
from service.types import Jurisdiction
from tests.conftest import RULES

MATCHER = Matcher.load(RULES)


def places(title: str, summary: str = "") -> tuple[Jurisdiction, ...]:
    r = MATCHER.classify(title, summary)
    assert r.score > 0, "the case must reach entity extraction"
    return r.jurisdictions


@pytest.mark.parametrize(
    "title,summary,expected",
    [
        (
            "Hennepin County jail stops honoring ICE detainers",
            "",
            ("Hennepin County", "county", "MN"),
        ),
        ("Hennepin Co. jail stops honoring ICE detainers", "", ("Hennepin County", "county", "MN")),
        ("Portland police limit cooperation with ICE", "", ("Portland", "city", "OR")),
        (
            "Portland police limit cooperation with ICE",
            "Maine officials said",
            ("Portland", "city", "ME"),
        ),
        ("Washington sanctuary law upheld", "", ("Washington", "state", "WA")),
        ("Sanctuary city rally in Washington, D.C.", "", ("Washington", "city", "DC")),
        (
            "Trump signs Laken Riley Act",
            "WASHINGTON (AP) \u2014 President Trump signed the Laken Riley Act, which requires "
            "federal authorities to detain immigrants accused of theft.",
            ("Washington", "city", "DC"),
        ),
        ("Washington state limits ICE detainers", "", ("Washington", "state", "WA")),
        ("NYC keeps sanctuary city rules", "", ("New York City", "city", "NY")),
        (
            "Prince George's County released man despite ICE detainer",
            "",
            ("Prince George's County", "county", "MD"),
        ),
        ("Sheriff in Travis County, Tex., declined ICE detainers", "", ("Texas", "state", "TX")),
        (
            "DC police won't help federal agents with immigration arrests",
            "",
            ("Washington", "city", "DC"),
        ),
        # The county's own style names the county, not its namesake city.
        (
            "County of Santa Clara will not honor ICE detainers",
            "",
            ("Santa Clara County", "county", "CA"),
        ),
    ],
)
def test_place_resolution(title: str, summary: str, expected: tuple[str, str, str]) -> None:
    assert Jurisdiction(*expected) in places(title, summary)


def test_ambiguous_county_needs_its_state() -> None:
    assert not any(j.name == "Washington County" for j in places("Washington County ends 287(g)"))
    found = places("Washington County ends 287(g) agreement", "The Oregon sheriff said")
    assert Jurisdiction("Washington County", "county", "OR") in found


@pytest.mark.parametrize(
    ("title", "summary", "county"),
    [
        # A county name many states share takes the state of the places named without doubt.
        (
            "ICE arrests man released by Montgomery County despite detainer",
            "ERO Baltimore officers arrested him at his home.",
            Jurisdiction("Montgomery County", "county", "MD"),
        ),
        (
            "Harris County sheriff signs 287(g) deal",
            "Migrants in Houston fear the agreement.",
            Jurisdiction("Harris County", "county", "TX"),
        ),
        # Sure places in two states say nothing about which Montgomery County is meant.
        (
            "Montgomery County jail to stop honoring ICE detainers",
            "Advocates from Baltimore and Philadelphia came to the hearing.",
            None,
        ),
    ],
)
def test_ambiguous_county_takes_the_state_of_sure_places(
    title: str, summary: str, county: Jurisdiction | None
) -> None:
    found = places(title, summary)
    named = [j for j in found if j.kind == "county"]
    assert named == ([county] if county else []), found


def test_person_names_are_not_places() -> None:
    r = MATCHER.classify("Mayor Mike Johnston defends Denver's sanctuary policies")
    assert Jurisdiction("Denver", "city", "CO") in r.jurisdictions
    assert not any(j.name == "Johnston" for j in r.jurisdictions)
    assert ("official", "Mike Johnston") in {(e.type, e.canonical) for e in r.entities}


def test_small_bare_town_is_not_reported() -> None:
    r = MATCHER.classify("Sanctuary city debate reaches Middletown")
    assert not any(j.name == "Middletown" for j in r.jurisdictions)


def test_entities_of_a_sentence() -> None:
    r = MATCHER.classify(
        "Gov. Jerry Brown signs California Values Act",
        "The law, SB 54, limits cooperation with ICE; the Los Angeles Police Department and "
        "the Board of Supervisors welcomed it, after 1,200 detainers last year.",
    )
    got = {(e.type, e.canonical) for e in r.entities}
    assert ("official", "Jerry Brown") in got
    assert ("law", "California Values Act") in got
    assert ("agency", "ICE") in got
    assert ("agency", "Los Angeles Police Department") in got
    assert ("count", "1200 detainer requests") in got
    assert ("local_body", "Board Of Supervisors") in got


def test_trust_act_law_needs_the_immigration_sense() -> None:
    r = MATCHER.classify(
        "TRUST Act would rescue Social Security trust funds", "Sen. Mitt Romney said."
    )
    assert not any(e.type == "law" for e in r.entities)
    assert not r.flagged


def test_ice_entity_needs_the_agency_sense() -> None:
    r = MATCHER.classify("ICE CUBE TALKS DETAINER-FREE MOVIE", "No immigration here.")
    assert not any(e.canonical == "ICE" for e in r.entities)
