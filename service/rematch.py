"""Re-run the current rules over stored stories (``detainer-watch rematch``).

Orchestration only: the matcher decides, storage reads and writes. Stories without a hit
that the current rules flag get one (delivered to subscriptions only when asked); stories
with a hit are compared and reported, never changed: a hit that went out stays the record
of what was sent.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from service.match import Matcher
from service.storage import Storage


@dataclass
class RematchReport:
    stories: int = 0
    new_hits: list[int] = field(default_factory=list)
    still_flagged: int = 0
    no_longer_flagged: list[int] = field(default_factory=list)  # hit ids
    changed: Counter[str] = field(default_factory=Counter)  # "score", "topics", "event"

    def lines(self, ruleset: str) -> list[str]:
        return [
            f"rules {ruleset}: {self.stories} stories re-checked",
            f"new hits: {len(self.new_hits)}"
            + (
                f" (ids {', '.join(map(str, self.new_hits[:20]))}"
                f"{', ...' if len(self.new_hits) > 20 else ''})"
                if self.new_hits
                else ""
            ),
            f"existing hits still flagged: {self.still_flagged}; with a different event "
            f"{self.changed['event']}, topics {self.changed['topics']}, score "
            f"{self.changed['score']}",
            f"existing hits the rules no longer flag: {len(self.no_longer_flagged)}"
            + (
                f" (ids {', '.join(map(str, self.no_longer_flagged[:20]))})"
                if self.no_longer_flagged
                else ""
            ),
        ]


# A score moving less than this is not reported as a change.
SCORE_CHANGE = 0.05


def rematch(
    storage: Storage,
    matcher: Matcher,
    clock: Callable[[], datetime],
    since: datetime | None = None,
    deliver: bool = False,
) -> RematchReport:
    report = RematchReport()
    for story in storage.stored_stories(since):
        report.stories += 1
        results = [
            (aid, a, feed, matcher.classify(a.title, a.summary, a.text))
            for aid, a, feed in story.articles
        ]
        flagged = [r for r in results if r[3].flagged]
        if story.hit_id is None:
            if flagged:
                aid, a, feed, m = flagged[0]
                hit_id = storage.add_hit_for_story(
                    story.story_id, aid, a, m, clock(), feed, deliver
                )
                if hit_id is not None:
                    report.new_hits.append(hit_id)
            continue
        if not flagged:
            report.no_longer_flagged.append(story.hit_id)
            continue
        report.still_flagged += 1
        best = max(flagged, key=lambda r: r[3].score)[3]
        if abs(best.score - (story.hit_score or 0.0)) >= SCORE_CHANGE:
            report.changed["score"] += 1
        if set(best.topics) != set(story.hit_topics):
            report.changed["topics"] += 1
        if best.event_type != story.hit_event:
            report.changed["event"] += 1
    return report
