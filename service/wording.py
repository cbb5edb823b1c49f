"""Wording shared by messages: counts with their nouns. Pure."""

from __future__ import annotations


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` and the noun, plural unless ``n`` is 1: "1 feed", "0 webhooks", "2 entries"
    (``plural`` for nouns that do not just take an s)."""
    return f"{n} {noun}" if n == 1 else f"{n} {plural or noun + 's'}"
