"""Which subscriptions want which hits (pure)."""

from __future__ import annotations

from collections.abc import Sequence

from service.types import Subscription


def wants(sub: Subscription, score: float, topics: Sequence[str]) -> bool:
    """A subscription wants a hit when it is enabled and the hit passes its filters."""
    if not sub.enabled or score < sub.min_score:
        return False
    return not sub.topics or any(t in sub.topics for t in topics)
