"""The news matcher: is this item about immigration detainers or sanctuary policy, and why?

Pure: no network, no database, no clock. ``Matcher.load(rules_path)`` reads the rules file and
the packaged gazetteer once; ``Matcher.classify(title, summary, text)`` returns a
``service.types.MatchResult`` and is safe to call from many threads. See docs/matcher.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .matcher import Matcher

__all__ = ["Matcher"]


def __getattr__(name: str) -> Any:
    if name == "Matcher":
        from .matcher import Matcher

        return Matcher
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
