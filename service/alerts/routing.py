"""Which subscriptions want which hits (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from service.types import Subscription


def wants(
    sub: Subscription,
    score: float,
    topics: Sequence[str],
    event_type: str | None = None,
    jurisdictions: Iterable[Mapping[str, Any]] = (),
    feed_urls: Iterable[str] = (),
) -> bool:
    """A subscription wants a hit when it is enabled and the hit passes every filter it sets.

    An empty filter lets everything through; a set one needs one value in common. Digest
    subscriptions want no per-hit deliveries (their digest collects hits by period).
    """
    if not sub.enabled or sub.digest or score < sub.min_score:
        return False
    return matches_filters(sub, score, topics, event_type, jurisdictions, feed_urls)


def matches_filters(
    sub: Subscription,
    score: float,
    topics: Sequence[str],
    event_type: str | None,
    jurisdictions: Iterable[Mapping[str, Any]],
    feed_urls: Iterable[str],
) -> bool:
    if score < sub.min_score:
        return False
    if sub.topics and not set(sub.topics) & set(topics):
        return False
    if sub.events and event_type not in sub.events:
        return False
    places = list(jurisdictions)
    if sub.states and not {str(j.get("state", "")).upper() for j in places} & set(sub.states):
        return False
    if sub.jurisdictions:
        wanted = {w.casefold() for w in sub.jurisdictions}
        names = {str(j.get("name", "")).casefold() for j in places}
        names |= {
            f"{n}, {str(j.get('state', '')).casefold()}"
            for n, j in zip(
                [str(j.get("name", "")).casefold() for j in places], places, strict=True
            )
        }
        if not wanted & names:
            return False
    return not sub.feeds or bool(set(sub.feeds) & set(feed_urls))
