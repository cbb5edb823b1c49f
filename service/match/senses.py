"""Word senses: does this match of "ICE", "sanctuary", "detainer" or "Trust Act" mean our beat?

Owns: applying a ``Sense`` from the rules file to one match — negative contexts near the match,
negative contexts anywhere in the item, and the item-level requirement (e.g. a bare "detainer"
counts only in an item that is about immigration at all).

Does not: know any word itself. Every context lives in the rules file; this module only reads
the compiled patterns. One ``SenseChecker`` serves one ``classify`` call (it caches item-level
answers), so it is never shared between threads.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from .lexicon import Sense


def _unmasked(
    pattern: re.Pattern[str], text: str, lo: int, hi: int, masks: Sequence[tuple[int, int]]
) -> bool:
    """Whether ``pattern`` matches in ``text[lo:hi]`` outside every span of ``masks``."""
    pos = lo
    while (m := pattern.search(text, pos, hi)) is not None:
        if not any(s <= m.start() and m.end() <= e for s, e in masks):
            return True
        pos = m.start() + 1
    return False


class SenseChecker:
    """Per-item sense decisions; item-level tests are computed once per sense."""

    def __init__(self, senses: Mapping[str, Sense], item_text: str) -> None:
        self._senses = senses
        self._item = item_text
        self._item_ok: dict[str, bool] = {}

    def accepts(
        self,
        sense_id: str | None,
        text: str,
        start: int,
        end: int,
        bounds: tuple[int, int] | None = None,
        places: Sequence[tuple[int, int]] = (),
    ) -> bool:
        """True when the match ``text[start:end]`` is in sense ``sense_id`` (None = any).

        ``bounds`` (the match's sentence) clips the ``window`` searched for negative
        contexts: a word in the next sentence says nothing about this one's sense ("... gun
        violence. Her department will stay out of federal immigration work").

        ``places`` (spans of the gazetteer's place names in ``text``): a negative context
        inside a place's name is that place, not the word ("parish" in "Orleans Parish",
        "gun" in "Gunnison County", "church" in "Churchill County").
        """
        if sense_id is None:
            return True
        sense = self._senses[sense_id]
        if not self._item_level(sense):
            return False
        if sense.negative_near is not None and sense.window > 0:
            first, last = bounds if bounds is not None else (0, len(text))
            lo = max(first, start - sense.window)
            hi = min(last, end + sense.window)
            if _unmasked(sense.negative_near, text, lo, hi, places):
                return False
        return True

    def _item_level(self, sense: Sense) -> bool:
        ok = self._item_ok.get(sense.id)
        if ok is None:
            ok = True
            if sense.negative_item is not None and sense.negative_item.search(self._item):
                ok = False
            if ok and sense.require_item is not None:
                ok = sense.require_item.search(self._item) is not None
            self._item_ok[sense.id] = ok
        return ok
