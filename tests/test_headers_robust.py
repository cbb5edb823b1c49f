"""Whatever a server puts in its caching and retry headers, reading them gives a number of
seconds or None, never an exception: ``max-age=¹`` and ``Retry-After: ¹`` (a Latin-1 byte
0xB9, which ``str.isdigit`` accepts and ``float`` refuses) and dates with a 30-digit offset
(OverflowError in email.utils) raised before, out of a feed's poll and out of a webhook
delivery. Hypothesis builds header values from such pieces."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from service.decide import cache_lifetime_s, effective_interval_s, parse_retry_after

NOW = datetime(2025, 1, 23, 15, 0, tzinfo=UTC)

PIECES = st.one_of(
    st.text(max_size=6),
    st.sampled_from(
        [
            "max-age=", "no-cache", "no-store", "s-maxage=", ",", "=", '"', " ", "-1", "1e400",
            "nan", "inf", "0x10", "9" * 400, "\u00b9", "\u0663", "\u2075", "60",
            "Thu, 01 Jan 1970 00:00:00 GMT", "Fri, 31 Dec 9999 23:59:59 GMT",
            "Mon, 01 Jan 0001 00:00:00 GMT", "Wed, 21 Oct 2015 07:28:00 +9999",
        ]
    ),
)  # fmt: skip
VALUE = st.lists(PIECES, max_size=5).map("".join)
CACHE_CONTROL = st.one_of(VALUE, PIECES.map("max-age={}".format), VALUE.map("max-age={}".format))


def _seconds(value: float | None) -> bool:
    return value is None or (math.isfinite(value) and value >= 0)


@settings(max_examples=500, deadline=None)
@given(CACHE_CONTROL, VALUE, VALUE, VALUE)
def test_caching_and_retry_headers_give_seconds_or_none(
    cache_control: str, expires: str, date: str, retry_after: str
) -> None:
    headers = {"cache-control": cache_control, "expires": expires, "date": date}
    lifetime = cache_lifetime_s(headers, NOW)
    assert _seconds(lifetime)
    assert 60.0 <= effective_interval_s(600.0, None, 60.0, 3600.0, lifetime) <= 3600.0
    assert _seconds(parse_retry_after(retry_after, NOW))


def test_non_ascii_digits_are_not_seconds() -> None:
    for value in ("\u00b9", "\u0663", "9" * 400):
        assert cache_lifetime_s({"cache-control": f"max-age={value}"}, NOW) is None
        assert parse_retry_after(value, NOW) is None


def test_a_date_with_a_huge_offset_is_unreadable() -> None:
    """email.utils raised OverflowError for it (this test's property found it in CI)."""
    date = "Wed, 21 Oct 2015 07:28:00 +" + "9" * 30
    assert parse_retry_after(date, NOW) is None
    assert cache_lifetime_s({"expires": date}, NOW) is None
    assert cache_lifetime_s({"expires": "Wed, 21 Oct 2015 07:28:00 GMT", "date": date}, NOW) == 0
