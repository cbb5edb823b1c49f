"""Scheduling and novelty decisions, as pure functions of ``now``, data and an injected RNG.

Pure: no clock, no global randomness, no I/O. This module decides *when* a feed is
checked next and *whether* an article is new; it does not fetch, store or schedule jobs
(the pipeline and scheduler carry the decisions out).
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Collection, Iterable
from datetime import datetime, timedelta

from service.types import Article

# Spread checks by ±10 % so feeds added together (or failing together, e.g. when our
# network drops) do not stay in lock-step and hit hosts in bursts.
JITTER_FRACTION = 0.10

# A feed that keeps failing is still tried once a day: it may come back, and its error
# stays visible in the API with a next-check time users can understand.
MAX_BACKOFF_S = 24 * 60 * 60.0

# A server may ask for more than our backoff with Retry-After; we honour that up to a
# week, so a mistaken or hostile header cannot silence a feed for good.
MAX_RETRY_AFTER_S = 7 * 24 * 60 * 60.0

# 2**1000 is still a finite float; past it the cap applies anyway, and ``2.0 ** n`` for
# a huge error count would overflow.
MAX_BACKOFF_DOUBLINGS = 1000

DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?|\.\d+)\s*([smhd])", re.IGNORECASE)
_DURATION_WHOLE = re.compile(r"(?:\s*(?:\d+(?:\.\d+)?|\.\d+)\s*[smhd])+\s*", re.IGNORECASE)
_DURATION_HELP = (
    "expected a positive number of seconds or a number with a unit s, m, h or d "
    "(like '90s', '15m', '2h', '1d' or '1h30m')"
)


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"now must be timezone-aware, got naive {now.isoformat()}")


def _require_positive(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")


def jittered(delay_s: float, rng: random.Random) -> float:
    """``delay_s`` moved by a uniform random ±JITTER_FRACTION."""
    return delay_s * rng.uniform(1.0 - JITTER_FRACTION, 1.0 + JITTER_FRACTION)


def next_check_after_success(now: datetime, interval_s: float, rng: random.Random) -> datetime:
    """When to check a feed that just answered (200 or 304): one interval, jittered."""
    _require_aware(now)
    _require_positive("interval_s", interval_s)
    return now + timedelta(seconds=jittered(interval_s, rng))


def backoff_s(interval_s: float, error_count: int) -> float:
    """Un-jittered delay after ``error_count`` consecutive failures (1 = the first):
    ``interval_s * 2 ** (error_count - 1)``, capped at MAX_BACKOFF_S."""
    _require_positive("interval_s", interval_s)
    doublings = min(max(error_count, 1) - 1, MAX_BACKOFF_DOUBLINGS)
    return min(interval_s * 2.0**doublings, MAX_BACKOFF_S)


def next_check_after_error(
    now: datetime,
    interval_s: float,
    error_count: int,
    retry_after_s: float | None,
    rng: random.Random,
) -> datetime:
    """When to retry a feed whose latest check failed.

    ``error_count`` counts consecutive failures including this one. The delay is the
    exponential backoff with ±JITTER_FRACTION, never more than MAX_BACKOFF_S. A
    ``Retry-After`` asking for longer wins (it is a minimum, so its jitter only adds),
    up to MAX_RETRY_AFTER_S.
    """
    _require_aware(now)
    delay = min(jittered(backoff_s(interval_s, error_count), rng), MAX_BACKOFF_S)
    if retry_after_s is not None and math.isfinite(retry_after_s) and retry_after_s > delay:
        spread = retry_after_s * rng.uniform(1.0, 1.0 + JITTER_FRACTION)
        delay = min(spread, MAX_RETRY_AFTER_S)
    return now + timedelta(seconds=delay)


def effective_interval_s(
    interval_s: float, ttl_minutes: int | None, min_interval_s: float, max_interval_s: float
) -> float:
    """The polling interval for a feed: its configured interval, lengthened to the feed's
    own RSS ``<ttl>`` when that is longer, clamped to [min_interval_s, max_interval_s]."""
    wanted = interval_s
    if ttl_minutes is not None and ttl_minutes > 0:
        wanted = max(wanted, ttl_minutes * 60.0)
    return min(max(wanted, min_interval_s), max_interval_s)


def parse_duration(value: str | int | float) -> float:
    """Seconds in a duration: a number of seconds (``90``, ``"90"``, ``2.5``) or numbers
    with units ``s``, ``m``, ``h``, ``d`` (``"90s"``, ``"15m"``, ``"2h"``, ``"1h30m"``).

    Raises ``ValueError`` naming the bad value and the accepted forms.
    """
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}: {_DURATION_HELP}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            if not text or not _DURATION_WHOLE.fullmatch(text):
                raise ValueError(f"invalid duration {value!r}: {_DURATION_HELP}") from None
            seconds = sum(
                float(number) * DURATION_UNITS[unit.lower()]
                for number, unit in _DURATION_PART.findall(text)
            )
    else:
        raise ValueError(f"invalid duration {value!r}: {_DURATION_HELP}")
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"invalid duration {value!r}: {_DURATION_HELP}")
    return seconds


def is_new_article(
    article: Article, known_guids: Collection[str], known_hashes: Collection[str]
) -> bool:
    """True when neither the article's guid nor its content hash has been seen before
    (a re-posted article under a new guid is not new)."""
    return article.guid not in known_guids and article.content_hash not in known_hashes


def new_articles(
    articles: Iterable[Article], known_guids: Collection[str], known_hashes: Collection[str]
) -> tuple[Article, ...]:
    """The articles that are new, in order, each guid and hash kept once."""
    seen_guids: set[str] = set()
    seen_hashes: set[str] = set()
    fresh: list[Article] = []
    for article in articles:
        if not is_new_article(article, known_guids, known_hashes):
            continue
        if article.guid in seen_guids or article.content_hash in seen_hashes:
            continue
        seen_guids.add(article.guid)
        seen_hashes.add(article.content_hash)
        fresh.append(article)
    return tuple(fresh)
