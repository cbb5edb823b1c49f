"""The pure polling decisions: cache lifetimes, item rate, adaptive interval, disabling,
host interleaving (issue 4)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from service.decide import (
    ITEMS_PER_CHECK,
    MAX_ADAPT_FACTOR,
    RATE_TIME_CONSTANT_S,
    adaptive_interval_s,
    cache_lifetime_s,
    disable_reason,
    effective_interval_s,
    interleave_by_host,
    items_per_hour,
)

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"cache-control": "max-age=300"}, 300.0),
        ({"cache-control": 'public, max-age="600"'}, 600.0),
        ({"cache-control": "max-age=abc"}, None),
        ({"cache-control": "no-store, max-age=300"}, None),
        ({"cache-control": "max-age=60", "expires": "Sat, 01 Mar 2025 14:00:00 GMT"}, 60.0),
        ({"expires": "Sat, 01 Mar 2025 14:00:00 GMT"}, 7200.0),
        (
            {"expires": "Sat, 01 Mar 2025 14:00:00 GMT", "date": "Sat, 01 Mar 2025 13:00:00 GMT"},
            3600.0,
        ),
        ({"expires": "0"}, None),
        ({"expires": "Sat, 01 Mar 2025 11:00:00 GMT"}, 0.0),
    ],
)
def test_cache_lifetime(headers: dict[str, str], expected: float | None) -> None:
    assert cache_lifetime_s(headers, NOW) == expected


def test_cache_lifetime_only_lengthens_within_bounds() -> None:
    assert effective_interval_s(600, None, 60, 3600, 1200) == 1200
    assert effective_interval_s(600, None, 60, 3600, 10) == 600
    assert effective_interval_s(600, None, 60, 3600, 1e9) == 3600
    assert effective_interval_s(600, 30, 60, 3600, 1200) == 1800  # <ttl> 30 min wins
    assert effective_interval_s(600, None, 60, 3600, math.inf) == 600


def test_items_per_hour_unknown_until_a_second_check() -> None:
    assert items_per_hour(None, 50, None, NOW) is None
    assert items_per_hour(None, 5, NOW - timedelta(minutes=30), NOW) == pytest.approx(10.0)
    assert items_per_hour(3.0, 5, NOW, NOW) == 3.0  # no time passed: nothing learnt


def test_items_per_hour_weighs_by_elapsed_time() -> None:
    previous, hour = 10.0, NOW - timedelta(hours=1)
    weight = 1 - math.exp(-3600 / RATE_TIME_CONSTANT_S)
    assert items_per_hour(previous, 0, hour, NOW) == pytest.approx(previous * (1 - weight))
    long_ago = NOW - timedelta(days=30)  # a month of silence: the old rate is forgotten
    assert items_per_hour(previous, 0, long_ago, NOW) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize(
    ("rate", "expected"),
    [
        (None, 900.0),  # unknown: the configured interval
        (ITEMS_PER_CHECK * 3600 / 900, 900.0),  # exactly two items per interval
        (ITEMS_PER_CHECK * 3600 / 450, 450.0),  # twice as busy: twice as often
        (1000.0, 900.0 / MAX_ADAPT_FACTOR),  # very busy: at most 4x more often
        (0.0, 3600.0),  # silent: 4x less often
        (0.001, 3600.0),
    ],
)
def test_adaptive_interval(rate: float | None, expected: float) -> None:
    assert adaptive_interval_s(900, rate, 60, 6 * 3600) == pytest.approx(expected)


def test_adaptive_interval_is_clamped() -> None:
    assert adaptive_interval_s(120, 1000.0, 60, 3600) == 60
    assert adaptive_interval_s(3000, 0.0, 60, 3600) == 3600


def test_disable_reason_410_at_once() -> None:
    reason = disable_reason(410, "HTTP 410 Gone", 1, NOW, NOW, 30 * 86400, 10)
    assert reason is not None and "410 Gone" in reason


def test_disable_reason_needs_count_and_time() -> None:
    month = NOW - timedelta(days=31)
    assert disable_reason(500, "HTTP 500", 9, month, NOW, 30 * 86400, 10) is None
    week = NOW - timedelta(days=7)
    assert disable_reason(500, "HTTP 500", 50, week, NOW, 30 * 86400, 10) is None
    reason = disable_reason(None, "could not connect", 10, month, NOW, 30 * 86400, 10)
    assert reason is not None
    assert "10 times in a row over 31 days" in reason and "could not connect" in reason


def test_interleave_by_host_round_robin_keeps_order() -> None:
    urls = ["a/1", "a/2", "a/3", "b/1", "c/1", "c/2"]
    assert interleave_by_host(urls, lambda u: u.split("/")[0]) == [
        "a/1",
        "b/1",
        "c/1",
        "a/2",
        "c/2",
        "a/3",
    ]
    assert interleave_by_host([], str) == []
