"""Event types: what happened in a story, from a small fixed set defined in the rules file.

The set (ids of ``[[events]]``, documented in docs/matcher.md) is:
``release_despite_detainer``, ``detainer_declined``, ``detainer_honored``, ``detainer_issued``,
``287g_ended``, ``287g_signed``, ``lawsuit_or_ruling``, ``federal_funding_threat``,
``state_mandate``, ``policy_repealed``, ``policy_weakened``, ``policy_strengthened``,
``policy_adopted``, ``federal_action`` and the fallback ``other``.

Owns: picking one. A title labelled as commentary ("Opinion: ...") tells no event. Otherwise
each scored sentence, and the title even when it scored nothing (as a sentence of the item's
topics, worth the best sentence's score), offers the events whose cue it contains and whose
topics it has; overlapping cues keep the longest ("not honor" beats "honor"); a description of
a place (``[event_descriptions]``: "cities that refuse to honor detainers") counts as a cue of
no event, so the cues it outlasts say nothing; an event's value is its best sentence's score
times the event weight. The headline says what happened: an event cued in the title beats
every event cued only in the body (docs/matcher.md, "Event types", has the measurements);
otherwise the highest value wins, ties to the earlier rule.

Does not: score relevance — an item gets an event type only when it is flagged.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from .lexicon import EventRule
from .scoring import SentenceHit

OTHER = "other"
_MASK = -1  # the event index of a description's span: no event


def choose_event(
    events: Sequence[EventRule],
    hits: Sequence[SentenceHit],
    texts: Mapping[str, str],
    masks: Sequence[re.Pattern[str]] = (),
    *,
    commentary: re.Pattern[str] | None = None,
    topics: Sequence[str] = (),
) -> str:
    """The event type of a flagged item from its scored sentences ``hits`` (best first);
    ``topics``: the item's, for a title that scored nothing (none given: not read)."""
    title = texts.get("title", "")
    if commentary is not None and commentary.match(title):
        return OTHER
    best: dict[str, tuple[bool, float]] = {}  # event id -> (cued in the title, value)
    for hit in _with_title(hits, title, topics):
        text = texts[hit.field]
        cues: list[tuple[int, int, int]] = []  # (start, end, event index)
        for i, ev in enumerate(events):
            if not ev.topics.intersection(hit.topics):
                continue
            if not ev.any_cue.search(text, hit.start, hit.end):
                continue
            for cue in ev.cues:
                for m in cue.finditer(text, hit.start, hit.end):
                    cues.append((m.start(), m.end(), i))
        if not cues:
            continue
        for mask in masks:
            for m in mask.finditer(text, hit.start, hit.end):
                cues.append((m.start(), m.end(), _MASK))
        kept: list[tuple[int, int, int]] = []
        for c in sorted(cues, key=lambda c: (-(c[1] - c[0]), c[2])):
            if not any(c[0] < k[1] and k[0] < c[1] for k in kept):
                kept.append(c)
        for _, _, i in kept:
            if i == _MASK:
                continue
            ev = events[i]
            value = (hit.field == "title", round(hit.score * ev.weight, 6))
            if value > best.get(ev.id, (False, 0.0)):
                best[ev.id] = value
    if not best:
        return OTHER
    order = {ev.id: i for i, ev in enumerate(events)}
    return max(best, key=lambda eid: (*best[eid], -order[eid]))


def _with_title(
    hits: Sequence[SentenceHit], title: str, topics: Sequence[str]
) -> Sequence[SentenceHit]:
    """The scored sentences, and the title when it scored nothing itself ("Council approves
    new public safety ordinance" over a body sentence about detainers)."""
    if not (title and topics and hits) or any(h.field == "title" for h in hits):
        return hits
    score = hits[0].score
    return [
        *hits,
        SentenceHit("title", 0, len(title), topics=dict.fromkeys(topics, 1.0), score=score),
    ]
