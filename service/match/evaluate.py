"""Evaluation of a matcher against a labelled corpus (the ``eval`` command and the dev test).

Grading follows the corpus README: grade 2 items must be flagged (a miss is a false negative),
grade 0 items must not be (a flag is a false positive, counted by ``kind``), grade 1 items may
go either way and are only reported. Topic agreement compares the predicted topics of flagged
grade 1-2 items with their labelled ``topics``. Items may also carry ``event_types``: the event
types a reader accepts for the story, the best first (tests/data/match/events.jsonl); a flagged
item's ``event_type`` is then scored against the first (``primary``) and against any of them.

Does not: read files — the caller passes parsed JSONL objects, so this stays pure.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from service.types import MatchResult


class Classifier(Protocol):
    def classify(self, title: str, summary: str = "", text: str = "") -> MatchResult: ...


@dataclass(frozen=True, slots=True)
class Outcome:
    id: str
    title: str
    grade: int
    kind: str
    score: float
    flagged: bool
    topics: tuple[str, ...]
    gold_topics: tuple[str, ...]
    event_type: str | None = None
    gold_events: tuple[str, ...] = ()  # accepted event types, the best first; () = unlabelled

    @property
    def event_judged(self) -> bool:
        return self.flagged and bool(self.gold_events)


@dataclass(frozen=True, slots=True)
class Report:
    outcomes: tuple[Outcome, ...]
    tp: int
    fp: int
    fn: int
    tn: int
    grade1_flagged: int
    grade1_total: int
    fp_by_kind: Mapping[str, int] = field(default_factory=dict)
    negatives_by_kind: Mapping[str, int] = field(default_factory=dict)
    topic_exact: float = 0.0  # share of flagged positives whose topics equal the labels
    topic_jaccard: float = 0.0  # mean Jaccard overlap of predicted and labelled topics

    @property
    def event_outcomes(self) -> tuple[Outcome, ...]:
        """Flagged items labelled with ``event_types``."""
        return tuple(o for o in self.outcomes if o.event_judged)

    @property
    def event_primary(self) -> int:
        return sum(o.event_type == o.gold_events[0] for o in self.event_outcomes)

    @property
    def event_accepted(self) -> int:
        return sum(o.event_type in o.gold_events for o in self.event_outcomes)

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def misses(self) -> tuple[Outcome, ...]:
        return tuple(o for o in self.outcomes if o.grade == 2 and not o.flagged)

    @property
    def false_positives(self) -> tuple[Outcome, ...]:
        return tuple(o for o in self.outcomes if o.grade == 0 and o.flagged)


def evaluate(matcher: Classifier, items: Iterable[Mapping[str, Any]]) -> Report:
    outcomes: list[Outcome] = []
    for it in items:
        r = matcher.classify(
            str(it.get("title") or ""), str(it.get("summary") or ""), str(it.get("text") or "")
        )
        outcomes.append(
            Outcome(
                id=str(it.get("id", "")),
                title=str(it.get("title") or ""),
                grade=int(it.get("grade", 0)),
                kind=str(it.get("kind") or ""),
                score=r.score,
                flagged=r.flagged,
                topics=r.topics,
                gold_topics=tuple(it.get("topics") or ()),
                event_type=r.event_type,
                gold_events=tuple(it.get("event_types") or ()),
            )
        )
    tp = sum(o.grade == 2 and o.flagged for o in outcomes)
    fn = sum(o.grade == 2 and not o.flagged for o in outcomes)
    fp = sum(o.grade == 0 and o.flagged for o in outcomes)
    tn = sum(o.grade == 0 and not o.flagged for o in outcomes)
    pos = [o for o in outcomes if o.grade >= 1 and o.flagged and o.gold_topics]
    exact = sum(set(o.topics) == set(o.gold_topics) for o in pos)
    jac = sum(
        len(set(o.topics) & set(o.gold_topics)) / len(set(o.topics) | set(o.gold_topics))
        for o in pos
    )
    return Report(
        outcomes=tuple(outcomes),
        tp=tp,
        fp=fp,
        fn=fn,
        tn=tn,
        grade1_flagged=sum(o.grade == 1 and o.flagged for o in outcomes),
        grade1_total=sum(o.grade == 1 for o in outcomes),
        fp_by_kind=dict(Counter(o.kind for o in outcomes if o.grade == 0 and o.flagged)),
        negatives_by_kind=dict(Counter(o.kind for o in outcomes if o.grade == 0)),
        topic_exact=exact / len(pos) if pos else 0.0,
        topic_jaccard=jac / len(pos) if pos else 0.0,
    )


def format_report(report: Report) -> str:
    """A plain-text report: figures, false positives by kind, misses, topic agreement."""
    lines = [
        f"items: {len(report.outcomes)}  grade 2: {report.tp + report.fn}  "
        f"grade 1: {report.grade1_total}  grade 0: {report.fp + report.tn}",
        f"precision: {report.precision:.3f}  recall: {report.recall:.3f}  F1: {report.f1:.3f}",
        f"  (tp {report.tp}, fp {report.fp}, fn {report.fn}, tn {report.tn}; "
        f"grade 1 flagged {report.grade1_flagged}/{report.grade1_total})",
        f"topic agreement on flagged positives: exact {report.topic_exact:.3f}, "
        f"mean Jaccard {report.topic_jaccard:.3f}",
        "false positives by kind:",
    ]
    for kind in sorted(report.negatives_by_kind):
        lines.append(
            f"  {kind:<18} {report.fp_by_kind.get(kind, 0)} / {report.negatives_by_kind[kind]}"
        )
    for o in report.false_positives:
        lines.append(f"  FP {o.id} [{o.kind}] {o.score:.2f} {o.title}")
    lines.append(f"misses (grade 2 not flagged): {len(report.misses)}")
    for o in report.misses:
        lines.append(f"  {o.id} {o.score:.2f} {o.title}")
    judged = report.event_outcomes
    if judged:
        n, first, accepted = len(judged), report.event_primary, report.event_accepted
        lines.append(
            f"event type on {n} flagged items labelled with event_types: "
            f"first choice {first}/{n} ({first / n:.3f}), "
            f"accepted {accepted}/{n} ({accepted / n:.3f})"
        )
        for o in judged:
            if o.event_type not in o.gold_events:
                lines.append(f"  {o.id} {o.event_type} (want {'|'.join(o.gold_events)}) {o.title}")
    return "\n".join(lines)
