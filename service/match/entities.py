"""Entities of a story: agencies, officials, local bodies, laws and counts.

Owns: finding them in the item's fields with the patterns of the rules file's ``[entities]``
section plus the resolved places (a place followed by "Police Department" is an agency, one
followed by "City Council" a local body, one before "Trust Act" names the law).

Does not: score or decide anything; the matcher calls this only for items that scored.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from service.types import Entity

from .gazetteer import Place, PlaceMention
from .lexicon import EntityRules
from .senses import SenseChecker
from .text import fold

# Most entities one story reports; a long article can name dozens of officials.
MAX_ENTITIES = 40

_NUMBER_WORDS = {
    w: i
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen twenty".split()
    )
}
_NUMBER = r"\d{1,3}(?:,\d{3})+|\d+|" + "|".join(sorted(_NUMBER_WORDS, key=len, reverse=True))
# A surname may carry inner capitals and apostrophes (DeSantis, O'Rourke, Ocasio-Cortez).
_NAME = (
    r"(?P<first>[A-Z][a-z]+)(?:\s(?P<initial>[A-Z]\.))?"
    r"\s(?P<last>[A-Z][a-z]*[A-Z]?[a-z'\u2019-]*[a-z])"
)
_YEARS = range(1900, 2101)


@dataclass(frozen=True, slots=True)
class Found:
    """An entity with where it was first seen, for ordering."""

    field_index: int
    start: int
    end: int
    entity: Entity


class EntityFinder:
    """Compiled entity patterns; immutable and thread-safe."""

    def __init__(self, rules: EntityRules) -> None:
        self.rules = rules
        titles = sorted(rules.official_titles, key=len, reverse=True)
        alt = "|".join(re.escape(t) for t in titles) or r"(?!x)x"
        self._official = re.compile(rf"(?<![\w.])(?:{alt})\s+{_NAME}(?!\w)")
        units = [f"(?P<u{i}>{src})" for i, (_, src) in enumerate(rules.counts)]
        self._count = (
            re.compile(
                rf"(?<![\w.,])(?P<n>{_NUMBER})\s+(?:[A-Za-z'\u2019-]+\s+){{0,2}}?(?:{'|'.join(units)})",
                re.IGNORECASE,
            )
            if units
            else None
        )
        self._agency_suffixes = sorted(rules.agency_suffixes.items(), key=lambda kv: -len(kv[0]))
        self._body_suffixes = sorted(rules.local_body_suffixes, key=len, reverse=True)

    def officials(self, fields: Sequence[tuple[str, str]]) -> list[Found]:
        out = []
        for fi, (_, text) in enumerate(fields):
            for m in self._official.finditer(text):
                last = m.group("last")
                if last[-2:] in ("'s", "\u2019s"):  # possessive: "Donald Trump's plans"
                    last = last[:-2]
                s, e = m.start("first"), m.start("last") + len(last)
                canonical = f"{m.group('first')} {last}"
                out.append(Found(fi, s, e, Entity("official", text[s:e], canonical)))
        return out

    def find(
        self,
        fields: Sequence[tuple[str, str]],
        places: Sequence[tuple[PlaceMention, Place]],
        officials: Sequence[Found],
        senses: SenseChecker,
    ) -> tuple[Entity, ...]:
        field_index = {name: i for i, (name, _) in enumerate(fields)}
        found: list[Found] = list(officials)
        taken: list[tuple[int, int, int]] = []
        for mention, place in places:
            fi = field_index[mention.field]
            text = fields[fi][1]
            hit = _suffix(text, mention.end, self._agency_suffixes)
            if hit:
                end, canon = hit
                name = f"{place.name} {canon}".replace("County County", "County")
                found.append(
                    Found(fi, mention.start, end, Entity("agency", text[mention.start : end], name))
                )
                continue
            body = _suffix(text, mention.end, [(s, s) for s in self._body_suffixes])
            if body:
                end, canon = body
                ent = Entity("local_body", text[mention.start : end], f"{place.name} {canon}")
                found.append(Found(fi, mention.start, end, ent))
                taken.append((fi, mention.start, end))
        for fi, (fname, text) in enumerate(fields):
            for rule in self.rules.agencies:
                for m in rule.regex.finditer(text):
                    if senses.accepts(rule.sense, text, m.start(), m.end()):
                        found.append(
                            Found(
                                fi, m.start(), m.end(), Entity("agency", m.group(0), rule.canonical)
                            )
                        )
            if self.rules.local_body_regex is not None:
                for m in self.rules.local_body_regex.finditer(text):
                    if not any(t[0] == fi and t[1] <= m.start() < t[2] for t in taken):
                        canon = m.group(0).title()
                        found.append(
                            Found(fi, m.start(), m.end(), Entity("local_body", m.group(0), canon))
                        )
            found.extend(self._laws(fi, fname, text, places, senses))
            found.extend(self._counts(fi, text))
        found.sort(key=lambda f: (f.field_index, f.start))
        seen: set[tuple[str, str]] = set()
        out: list[Entity] = []
        for f in found:
            key = (f.entity.type, f.entity.canonical.lower())
            if key not in seen:
                seen.add(key)
                out.append(f.entity)
        return tuple(out[:MAX_ENTITIES])

    def _laws(
        self,
        fi: int,
        field_name: str,
        text: str,
        places: Sequence[tuple[PlaceMention, Place]],
        senses: SenseChecker,
    ) -> list[Found]:
        out = []
        for rule in self.rules.laws:
            for m in rule.regex.finditer(text):
                if not senses.accepts(rule.sense, text, m.start(), m.end()):
                    continue
                start, canonical = m.start(), rule.canonical
                if rule.place_prefix:
                    for mention, place in places:
                        if mention.field == field_name and mention.end + 1 == start:
                            start, canonical = mention.start, f"{place.name} {rule.canonical}"
                            break
                out.append(
                    Found(fi, start, m.end(), Entity("law", text[start : m.end()], canonical))
                )
        return out

    def _counts(self, fi: int, text: str) -> list[Found]:
        if self._count is None:
            return []
        out = []
        for m in self._count.finditer(text):
            raw = m.group("n").lower()
            n = _NUMBER_WORDS.get(raw)
            value = n if n is not None else int(raw.replace(",", ""))
            if value in _YEARS and "," not in raw:
                continue  # "in 2024 detainers ..." is a year, not a count
            unit = next(u for i, (u, _) in enumerate(self.rules.counts) if m.group(f"u{i}"))
            ent = Entity("count", m.group(0), f"{value} {unit}")
            out.append(Found(fi, m.start(), m.end(), ent))
        return out


def _suffix(text: str, at: int, suffixes: Sequence[tuple[str, str]]) -> tuple[int, str] | None:
    """If ``text[at:]`` is " <suffix>" (apostrophes folded), return (end, canonical suffix)."""
    for written, canon in suffixes:
        end = at + 1 + len(written)
        if end <= len(text) and text[at] == " " and fold(text[at + 1 : end]) == fold(written):
            if end == len(text) or not text[end].isalnum():
                return end, canon
    return None
