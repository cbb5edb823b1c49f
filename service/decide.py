"""Scheduling and novelty decisions, as pure functions of ``now``, data and an injected RNG.

Pure: no clock, no global randomness, no I/O. This module decides *when* a feed is
checked next and *whether* an article is new; it does not fetch, store or schedule jobs
(the pipeline and scheduler carry the decisions out).
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import TypeVar

from service.types import Article

FeedT = TypeVar("FeedT")

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

# The rate of new items is a mean over about a day: long enough to ride out the gap
# between bursts of a newsroom's publishing, short enough to notice a feed go quiet.
RATE_TIME_CONSTANT_S = 24 * 60 * 60.0

# Check a feed about once per this many new items: each check then finds news without
# polling an empty feed (one or two items per check is what miniflux's entry-frequency
# scheduler aims at too).
ITEMS_PER_CHECK = 2.0

# The adaptive interval stays within this factor of the feed's configured interval, so a
# user's choice stays the centre and one burst or lull cannot swing it far.
MAX_ADAPT_FACTOR = 4.0

# RFC 9110 §15.5.11: "the target resource is no longer available ... likely permanent".
GONE = 410

DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?|\.\d+)\s*([smhd])", re.IGNORECASE)
_DURATION_WHOLE = re.compile(r"(?:\s*(?:\d+(?:\.\d+)?|\.\d+)\s*[smhd])+\s*", re.IGNORECASE)
_DURATION_HELP = (
    "expected a positive number of seconds or a number with a unit s, m, h or d "
    "(like '90s', '15m', '2h', '1d' or '1h30m')"
)
# The same for a duration that may be zero (``parse_duration(..., allow_zero=True)``).
_DURATION_OR_ZERO_HELP = (
    "expected 0, a positive number of seconds or a number with a unit s, m, h or d "
    "(like '0s', '90s', '15m', '2h', '1d' or '1h30m')"
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
    interval_s: float,
    ttl_minutes: int | None,
    min_interval_s: float,
    max_interval_s: float,
    cache_lifetime_s: float | None = None,
) -> float:
    """The polling interval for a feed: ``interval_s`` (its configured or adaptive
    interval), lengthened to the feed's own RSS ``<ttl>`` or the response's cache lifetime
    (``Cache-Control: max-age``, ``Expires``) when those are longer, clamped to
    [min_interval_s, max_interval_s]. They only lengthen: a server cannot make us poll it
    more often than we chose."""
    wanted = interval_s
    if ttl_minutes is not None and ttl_minutes > 0:
        wanted = max(wanted, ttl_minutes * 60.0)
    if cache_lifetime_s is not None and math.isfinite(cache_lifetime_s):
        wanted = max(wanted, cache_lifetime_s)
    return min(max(wanted, min_interval_s), max_interval_s)


def cache_lifetime_s(headers: Mapping[str, str], now: datetime) -> float | None:
    """Seconds the response says it stays fresh, from lower-cased response ``headers``:
    ``Cache-Control: max-age`` wins over ``Expires`` (RFC 9111 §5.3); ``Expires`` is
    measured from the response's ``Date`` when it has one (clock skew), else from ``now``.
    ``None`` when neither is given or readable, or with ``no-store`` / ``no-cache``."""
    directives = [d.strip().lower() for d in headers.get("cache-control", "").split(",")]
    if "no-store" in directives or "no-cache" in directives:
        return None
    for directive in directives:
        name, _, value = directive.partition("=")
        if name.strip() == "max-age":
            return _delta_seconds(value.strip().strip('"'))
    expires = _http_date(headers.get("expires"))
    if expires is None:
        return None
    origin = _http_date(headers.get("date")) or now
    return max(0.0, (expires - origin).total_seconds())


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delay-seconds or an HTTP date.
    ``None`` when absent or unreadable; a date in the past gives ``0.0``."""
    if value is None:
        return None
    seconds = _delta_seconds(value.strip())
    if seconds is not None:
        return seconds
    when = _http_date(value)
    if when is None:
        return None
    seconds = (when - now).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _delta_seconds(text: str) -> float | None:
    """HTTP delay-seconds (``max-age``, ``Retry-After``): ASCII digits only (``str.isdigit``
    alone takes "¹", which ``float`` refuses), and 400 nines, infinite as a float, are
    not a delay."""
    if not (text.isascii() and text.isdigit()):
        return None
    seconds = float(text)
    return seconds if math.isfinite(seconds) else None


def _http_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):  # "+99...9": a huge offset
        return None  # "Expires: 0" or "-1" mean "already expired" (RFC 9111 §5.3)
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


def items_per_hour(
    previous: float | None, new_items: int, last_checked_at: datetime | None, now: datetime
) -> float | None:
    """The feed's rate of new items, an exponentially weighted mean over time.

    The rate seen since the last check (``new_items`` per hour) moves the previous mean by
    ``1 - exp(-elapsed / RATE_TIME_CONSTANT_S)``, so irregular check times weigh what they
    cover. ``None`` (unknown) until a check follows an earlier one: a first poll's items are
    the feed's backlog, not its rate.
    """
    _require_aware(now)
    if last_checked_at is None:
        return previous
    elapsed = (now - last_checked_at).total_seconds()
    if elapsed <= 0:
        return previous
    observed = max(new_items, 0) * 3600.0 / elapsed
    if previous is None:
        return observed
    weight = 1.0 - math.exp(-elapsed / RATE_TIME_CONSTANT_S)
    return previous + weight * (observed - previous)


def adaptive_interval_s(
    interval_s: float, rate_per_hour: float | None, min_interval_s: float, max_interval_s: float
) -> float:
    """The interval a feed's rate of new items asks for, around its configured one.

    A feed is checked about once per ITEMS_PER_CHECK new items, but never more than
    MAX_ADAPT_FACTOR times more or less often than its configured ``interval_s`` (that
    choice stays the centre), and always within [min_interval_s, max_interval_s]. An
    unknown rate keeps ``interval_s``; a silent feed drifts to the long end.
    """
    _require_positive("interval_s", interval_s)
    if rate_per_hour is None or not math.isfinite(rate_per_hour):
        wanted = interval_s
    elif rate_per_hour <= 0:
        wanted = interval_s * MAX_ADAPT_FACTOR
    else:
        wanted = ITEMS_PER_CHECK * 3600.0 / rate_per_hour
        wanted = min(max(wanted, interval_s / MAX_ADAPT_FACTOR), interval_s * MAX_ADAPT_FACTOR)
    return min(max(wanted, min_interval_s), max_interval_s)


def disable_reason(
    http_status: int | None,
    error: str | None,
    error_count: int,
    failing_since: datetime | None,
    now: datetime,
    disable_after_s: float,
    disable_after_errors: int,
) -> str | None:
    """Why a feed whose latest check failed should stop being polled, or ``None``.

    ``410 Gone`` is the server saying the feed is gone for good: disabled at once. Any other
    failure disables it only when it has failed ``disable_after_errors`` times in a row
    *and* for at least ``disable_after_s`` (a count alone would kill a feed in a day of
    outage; a time alone would kill one that was tried once and then backed off).
    """
    _require_aware(now)
    if http_status == GONE:
        return "410 Gone: the server says this feed was removed for good"
    if failing_since is None or error_count < disable_after_errors:
        return None
    failing_for = (now - failing_since).total_seconds()
    if failing_for < disable_after_s:
        return None
    days = failing_for / 86400.0
    return (
        f"failed {error_count} times in a row over {days:.0f} days "
        f"(since {failing_since.date().isoformat()}); last error: {error or 'unknown'}"
    )


def parse_duration(value: str | int | float, *, allow_zero: bool = False) -> float:
    """Seconds in a duration: a number of seconds (``90``, ``"90"``, ``2.5``) or numbers
    with units ``s``, ``m``, ``h``, ``d`` (``"90s"``, ``"15m"``, ``"2h"``, ``"1h30m"``).
    Positive, or with ``allow_zero`` also zero (``0``, ``"0s"``: a spacing that may be none).

    Raises ``ValueError`` naming the bad value and the accepted forms.
    """
    help_text = _DURATION_OR_ZERO_HELP if allow_zero else _DURATION_HELP
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}: {help_text}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            if not text or not _DURATION_WHOLE.fullmatch(text):
                raise ValueError(f"invalid duration {value!r}: {help_text}") from None
            seconds = sum(
                float(number) * DURATION_UNITS[unit.lower()]
                for number, unit in _DURATION_PART.findall(text)
            )
    else:
        raise ValueError(f"invalid duration {value!r}: {help_text}")
    if not (math.isfinite(seconds) and (seconds > 0 or (allow_zero and seconds == 0))):
        raise ValueError(f"invalid duration {value!r}: {help_text}")
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


def interleave_by_host(feeds: Sequence[FeedT], host: Callable[[FeedT], str]) -> list[FeedT]:
    """The feeds reordered round-robin across hosts (first feed of each host, then the
    second, ...), keeping each host's order, so a host with many feeds does not occupy
    every fetch thread while its politeness limit makes them wait."""
    by_host: dict[str, list[FeedT]] = {}
    for feed in feeds:
        by_host.setdefault(host(feed), []).append(feed)
    queues = list(by_host.values())
    out: list[FeedT] = []
    for rank in range(max((len(q) for q in queues), default=0)):
        out.extend(q[rank] for q in queues if rank < len(q))
    return out
