"""``detainer-watch hits`` and ``stats``: the API's filters and formats in a terminal."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from service.cli import _parser
from service.cli_hits import print_hits, print_stats
from service.errors import QueryError
from service.storage import Storage
from tests.test_api_query import fill
from tests.test_cli import config, dw


def run(storage: Storage, *argv: str) -> str:
    args = _parser().parse_args(list(argv))
    out = io.StringIO()
    assert (print_hits if args.command == "hits" else print_stats)(storage, args, out) == 0
    return out.getvalue()


def test_hits_filters_sorts_and_formats(storage: Storage) -> None:
    fill(storage, 60)
    table = run(storage, "hits", "--state", "MA", "--sort", "score", "--limit", "3")
    assert table.splitlines()[0].split()[:3] == ["id", "seen", "score"]
    assert len(table.splitlines()) == 4 and "Boston, MA" in table
    rows = list(csv.reader(io.StringIO(run(storage, "hits", "--format", "csv"))))
    assert len(rows) == 61  # csv streams every hit, not a page
    lines = run(storage, "hits", "--format", "jsonl", "--source", "Herald", "--q", "sanctuary")
    hits = [json.loads(line) for line in lines.splitlines()]
    assert hits and all(h["source"] == "Herald" and "<mark>" in h["snippet"] for h in hits)
    assert len(run(storage, "hits", "--format", "json").splitlines()) == 50
    with pytest.raises(QueryError, match="q:"):
        run(storage, "hits", "--q", '"open')


def test_stats_table_and_json(storage: Storage) -> None:
    fill(storage, 6)
    stats = json.loads(run(storage, "stats", "--format", "json", "--topic", "sanctuary"))
    assert stats["total"] == 2 and stats["by_topic"] == [{"topic": "sanctuary", "count": 2}]
    table = run(storage, "stats")
    assert table.startswith("6 hits") and "Boston, MA" in table and "2025-W04" in table


def test_bad_query_exits_1_with_the_parameter_named(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    out = dw("hits", "--q", "NOT texas", config=cfg)
    assert out.returncode == 1 and "error: q: NOT excludes" in out.stderr
    out = dw("stats", "--topic", "ice", config=cfg)
    assert out.returncode == 1 and "error: topic: unknown topic 'ice'; use detainer" in out.stderr
    assert dw("stats", config=cfg).stdout.startswith("0 hits")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["hits", "--state", "Massachusetts"], "--state: expected a two-letter state code"),
        (["stats", "--state", "M"], "--state: expected a two-letter state code"),
        (["hits", "--min-score", "2"], "--min-score: expected a score from 0 to 1, not 2"),
        (["stats", "--min-score", "-0.5"], "--min-score: expected a score from 0 to 1"),
        (["hits", "--min-score", "nan"], "--min-score: expected a score from 0 to 1, not nan"),
        (["hits", "--limit", "0"], "--limit: expected 1 or more rows, not 0"),
        (["hits", "--format", "csv", "--limit", "-1"], "--limit: expected 1 or more rows"),
    ],
)
def test_filters_out_of_the_apis_bounds_are_errors(
    storage: Storage, argv: list[str], message: str
) -> None:
    """The API answers these with 422; the CLI said nothing and printed no rows (or, with
    ``--limit 0``, the default 50)."""
    fill(storage, 6)
    with pytest.raises(QueryError, match=message):
        run(storage, *argv)


def test_filters_within_bounds_still_work(storage: Storage) -> None:
    fill(storage, 6)
    assert "Boston, MA" in run(storage, "hits", "--state", "ma")
    assert len(run(storage, "hits", "--min-score", "0", "--limit", "1").splitlines()) == 2
    assert run(storage, "hits", "--min-score", "1").startswith("id")


def test_deliveries_list_refuses_a_limit_below_one(tmp_path: Path) -> None:
    """SQLite reads ``LIMIT -1`` as no limit: ``--limit -1`` listed every delivery."""
    cfg = config(tmp_path)
    out = dw("deliveries", "list", "--limit", "-1", config=cfg)
    assert out.returncode == 1 and "error: --limit: expected 1 or more rows, not -1" in out.stderr
    assert dw("deliveries", "list", "--limit", "5", config=cfg).returncode == 0
