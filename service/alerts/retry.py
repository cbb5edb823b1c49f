"""When to try a failed webhook delivery again (pure)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

# First retry after 30 s, doubling: 30 s, 1 m, 2 m ... until the cap.
FIRST_RETRY_S = 30.0
# No single wait is longer than 6 h, so a receiver that recovers hears from us within hours.
MAX_RETRY_WAIT_S = 6 * 3600.0
# A Retry-After beyond a day is treated as a day: we do not park alerts for weeks.
MAX_RETRY_AFTER_S = 24 * 3600.0
JITTER = 0.2  # +-20 % so many failed deliveries do not all retry in the same second


def next_attempt_at(
    now: datetime,
    attempts_done: int,
    max_attempts: int,
    retry_after_s: float | None,
    rng: random.Random,
    created_at: datetime | None = None,
    retry_span_s: float | None = None,
) -> datetime | None:
    """The time of the next attempt after ``attempts_done`` failures, or None to give up.

    Gives up after ``max_attempts`` attempts, or when the next attempt would fall more than
    ``retry_span_s`` after the delivery was created (Standard Webhooks suggests days).
    """
    if attempts_done >= max_attempts:
        return None
    wait = min(FIRST_RETRY_S * 2 ** max(attempts_done - 1, 0), MAX_RETRY_WAIT_S)
    wait *= 1 + rng.uniform(-JITTER, JITTER)
    if retry_after_s is not None:
        wait = max(wait, min(retry_after_s, MAX_RETRY_AFTER_S))
    when = now + timedelta(seconds=wait)
    if created_at is not None and retry_span_s is not None:
        if when > created_at + timedelta(seconds=retry_span_s):
            return None
    return when
