"""wording.counted: a count with its noun, singular only for one."""

from __future__ import annotations

import pytest

from service.wording import counted


@pytest.mark.parametrize(
    ("n", "noun", "plural", "said"),
    [
        (0, "feed", None, "0 feeds"),
        (1, "feed", None, "1 feed"),
        (2, "feed", None, "2 feeds"),
        (1, "new item", None, "1 new item"),
        (1, "delivery", "deliveries", "1 delivery"),
        (3, "delivery", "deliveries", "3 deliveries"),
        (0, "entry", "entries", "0 entries"),
    ],
)
def test_counted(n: int, noun: str, plural: str | None, said: str) -> None:
    assert counted(n, noun, plural) == said
