"""Digest subscriptions: which period is due, and what goes in it (pure)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo


@dataclass(frozen=True, slots=True)
class DigestPeriod:
    label: str  # "2025-01-23" (daily, the local date it is sent) or "2025-W04" (weekly)
    start: datetime  # aware, inclusive
    end: datetime  # aware, exclusive: the send time


def latest_period(now: datetime, period: str, hour: int, timezone: str) -> DigestPeriod:
    """The most recent digest period that has ended at or before ``now``.

    A daily digest is sent at ``hour`` local time and covers the 24 hours before; a weekly
    one on Mondays at ``hour`` and covers the 7 days before. Daylight-saving changes move
    the UTC send time with the local clock.
    """
    tz = ZoneInfo(timezone)
    local = now.astimezone(tz)
    send = local.replace(hour=hour, minute=0, second=0, microsecond=0)
    if period == "weekly":
        send -= timedelta(days=send.weekday())
        if send > local:
            send -= timedelta(days=7)
        start = (send.replace(tzinfo=None) - timedelta(days=7)).replace(tzinfo=tz)
        iso = send.isocalendar()
        label = f"{iso.year}-W{iso.week:02d}"
    else:
        if send > local:
            send -= timedelta(days=1)
        start = (send.replace(tzinfo=None) - timedelta(days=1)).replace(tzinfo=tz)
        label = send.date().isoformat()
    return DigestPeriod(label=label, start=start, end=send)


def group_hits(hits: Sequence[dict[str, Any]]) -> list[tuple[str, str, list[dict[str, Any]]]]:
    """Hits grouped by (event, state), biggest groups first; a hit with no state is "US"."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for hit in hits:
        states = sorted({j["state"] for j in hit.get("jurisdictions", []) if j.get("state")})
        event = hit.get("event_type") or "other"
        groups[(event, states[0] if states else "US")].append(hit)
    ordered = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    return [(event, state, items) for (event, state), items in ordered]
