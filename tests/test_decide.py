"""service.decide: next-check maths, backoff, durations and novelty."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.decide import (
    JITTER_FRACTION,
    MAX_BACKOFF_S,
    MAX_RETRY_AFTER_S,
    backoff_s,
    effective_interval_s,
    is_new_article,
    new_articles,
    next_check_after_error,
    next_check_after_success,
    parse_duration,
)
from service.types import Article

NOW = datetime(2025, 1, 6, 12, 0, tzinfo=UTC)
LOW, HIGH = 1 - JITTER_FRACTION, 1 + JITTER_FRACTION


def delay(moment: datetime) -> float:
    return (moment - NOW).total_seconds()


@given(st.integers(min_value=0), st.floats(min_value=1, max_value=7 * 86400))
def test_success_interval_within_jitter(seed: int, interval: float) -> None:
    seconds = delay(next_check_after_success(NOW, interval, random.Random(seed)))
    assert interval * LOW - 1e-6 <= seconds <= interval * HIGH + 1e-6


def test_success_jitter_actually_spreads() -> None:
    rng = random.Random(1)
    delays = {delay(next_check_after_success(NOW, 900, rng)) for _ in range(50)}
    assert len(delays) > 40
    assert min(delays) < 900 < max(delays)


def test_backoff_doubles_then_caps() -> None:
    assert [backoff_s(900, n) for n in range(1, 6)] == [900, 1800, 3600, 7200, 14400]
    assert backoff_s(900, 0) == 900  # first failure even if the count was not bumped
    assert backoff_s(900, 8) == MAX_BACKOFF_S
    assert backoff_s(900, 10**9) == MAX_BACKOFF_S  # no overflow


@given(
    st.integers(min_value=0),
    st.floats(min_value=1, max_value=86400),
    st.integers(min_value=1, max_value=10_000),
)
def test_error_delay_within_jitter_and_cap(seed: int, interval: float, errors: int) -> None:
    seconds = delay(next_check_after_error(NOW, interval, errors, None, random.Random(seed)))
    base = backoff_s(interval, errors)
    assert base * LOW - 1e-6 <= seconds <= min(base * HIGH, MAX_BACKOFF_S) + 1e-6
    assert seconds <= MAX_BACKOFF_S


def test_error_delay_grows_with_error_count() -> None:
    delays = [
        delay(next_check_after_error(NOW, 600, n, None, random.Random(0))) for n in range(1, 10)
    ]
    assert delays == sorted(delays)
    assert delays[-1] == MAX_BACKOFF_S


def test_retry_after_longer_than_backoff_wins() -> None:
    seconds = delay(next_check_after_error(NOW, 600, 1, 7200, random.Random(3)))
    assert 7200 <= seconds <= 7200 * HIGH


def test_retry_after_shorter_than_backoff_is_ignored() -> None:
    seconds = delay(next_check_after_error(NOW, 600, 3, 10, random.Random(3)))
    assert 2400 * LOW <= seconds <= 2400 * HIGH


def test_retry_after_capped() -> None:
    seconds = delay(next_check_after_error(NOW, 600, 1, 365 * 86400, random.Random(3)))
    assert seconds == MAX_RETRY_AFTER_S
    beyond_backoff = delay(next_check_after_error(NOW, 600, 30, 2 * 86400, random.Random(3)))
    assert 2 * 86400 <= beyond_backoff <= 2 * 86400 * HIGH


def test_naive_now_and_bad_interval_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next_check_after_success(datetime(2025, 1, 1), 60, random.Random(0))
    with pytest.raises(ValueError, match="positive"):
        next_check_after_success(NOW, 0, random.Random(0))
    with pytest.raises(ValueError, match="positive"):
        next_check_after_error(NOW, float("nan"), 1, None, random.Random(0))


def test_next_check_keeps_timezone() -> None:
    assert next_check_after_success(NOW, 60, random.Random(0)).tzinfo is UTC
    assert next_check_after_error(NOW, 60, 2, None, random.Random(0)) > NOW


@pytest.mark.parametrize(
    ("interval", "ttl", "expected"),
    [
        (900, None, 900),
        (900, 60, 3600),  # the feed asks for hourly checks
        (900, 5, 900),  # a shorter ttl does not speed us up
        (900, 10_000, 6 * 3600),  # clamped to max_interval
        (10, None, 60),  # clamped to min_interval
        (900, 0, 900),
    ],
)
def test_effective_interval(interval: float, ttl: int | None, expected: float) -> None:
    assert effective_interval_s(interval, ttl, 60, 6 * 3600) == expected


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("90s", 90),
        ("15m", 900),
        ("2h", 7200),
        ("1d", 86400),
        ("1h30m", 5400),
        (" 2H ", 7200),
        ("1.5m", 90),
        ("90", 90),
        ("2.5", 2.5),
        (90, 90),
        (0.5, 0.5),
    ],
)
def test_parse_duration_good(value: str | int | float, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(
    "value",
    ["", "  ", "15 minutes", "m", "15x", "-5m", "-5", "0", "0s", 0, -1, "nan", "inf",
     float("inf"), True, "1h 30", "h1", "1..5s"],
)  # fmt: skip
def test_parse_duration_bad(value: object) -> None:
    with pytest.raises(ValueError, match="invalid duration") as err:
        parse_duration(value)  # type: ignore[arg-type]
    assert "15m" in str(err.value)  # the message shows accepted forms


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(0, 0), (0.0, 0), ("0", 0), ("0s", 0), (" 0m ", 0), ("0h0m", 0), (2.5, 2.5), ("90s", 90)],
)
def test_parse_duration_may_be_zero_where_allowed(value: str | float, seconds: float) -> None:
    assert parse_duration(value, allow_zero=True) == seconds


@pytest.mark.parametrize("value", ["-1", -0.5, "-5m", "", "nan", "inf", True, "soon"])
def test_parse_duration_allowing_zero_still_refuses_the_rest(value: object) -> None:
    with pytest.raises(ValueError, match="invalid duration") as err:
        parse_duration(value, allow_zero=True)  # type: ignore[arg-type]
    assert "'0s'" in str(err.value)  # the message says zero is allowed here


def article(guid: str, digest: str) -> Article:
    return Article(
        url=f"https://example.org/{guid}",
        guid=guid,
        title="t",
        summary="s",
        text="",
        published_at=NOW - timedelta(hours=1),
        source="Example",
        content_hash=digest,
    )


def test_is_new_article() -> None:
    assert is_new_article(article("g1", "h1"), set(), set())
    assert not is_new_article(article("g1", "h1"), {"g1"}, set())
    assert not is_new_article(article("g2", "h1"), set(), {"h1"})  # re-posted under a new id


def test_new_articles_dedupes_within_batch() -> None:
    batch = [article("g1", "h1"), article("g1", "h2"), article("g3", "h1"), article("g4", "h4")]
    fresh = new_articles(batch, known_guids={"g4"}, known_hashes=set())
    assert [a.guid for a in fresh] == ["g1"]
