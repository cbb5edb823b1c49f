"""The labelled dev corpus is a test: precision and recall at least 0.97 (issue 3)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.match import Matcher
from service.match.evaluate import evaluate, format_report
from tests.conftest import RULES, shared_path

TARGET = 0.97


@pytest.fixture(scope="module")
def report_and_text() -> tuple[object, str]:
    corpus: Path = shared_path("corpus", "dev.jsonl")
    items = [json.loads(line) for line in corpus.read_text(encoding="utf-8").splitlines() if line]
    report = evaluate(Matcher.load(RULES), items)
    return report, format_report(report)


def test_dev_precision_and_recall(report_and_text: tuple[object, str]) -> None:
    report, text = report_and_text
    assert report.precision >= TARGET, text  # type: ignore[attr-defined]
    assert report.recall >= TARGET, text  # type: ignore[attr-defined]


def test_report_names_every_figure(report_and_text: tuple[object, str]) -> None:
    _, text = report_and_text
    for word in ("precision", "recall", "F1", "false positives by kind", "misses", "topic"):
        assert word in text
