"""Event types: what happened in a story, from a small fixed set defined in the rules file.

The set (ids of ``[[events]]``, documented in docs/matcher.md) is:
``release_despite_detainer``, ``detainer_declined``, ``detainer_honored``, ``detainer_issued``,
``287g_ended``, ``287g_signed``, ``lawsuit_or_ruling``, ``federal_funding_threat``,
``state_mandate``, ``policy_repealed``, ``policy_weakened``, ``policy_strengthened``,
``policy_adopted``, ``federal_action`` and the fallback ``other``.

Owns: picking one. Each scored sentence offers the events whose cue it contains and whose
topics it has; overlapping cues keep the longest ("not honor" beats "honor"); an event's value
is its best sentence's score times the event weight; the highest wins, ties to the earlier rule.

Does not: score relevance — an item gets an event type only when it is flagged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .lexicon import EventRule
from .scoring import SentenceHit

OTHER = "other"


def choose_event(
    events: Sequence[EventRule], hits: Sequence[SentenceHit], texts: Mapping[str, str]
) -> str:
    best: dict[str, float] = {}
    for hit in hits:
        text = texts[hit.field]
        cues: list[tuple[int, int, int]] = []  # (start, end, event index)
        for i, ev in enumerate(events):
            if not ev.topics.intersection(hit.topics):
                continue
            for m in ev.regex.finditer(text, hit.start, hit.end):
                if m.end() > m.start():
                    cues.append((m.start(), m.end(), i))
        kept: list[tuple[int, int, int]] = []
        for c in sorted(cues, key=lambda c: (-(c[1] - c[0]), c[2])):
            if not any(c[0] < k[1] and k[0] < c[1] for k in kept):
                kept.append(c)
        for _, _, i in kept:
            ev = events[i]
            value = hit.score * ev.weight
            if value > best.get(ev.id, 0.0):
                best[ev.id] = value
    if not best:
        return OTHER
    order = {ev.id: i for i, ev in enumerate(events)}
    return max(best, key=lambda eid: (round(best[eid], 6), -order[eid]))
