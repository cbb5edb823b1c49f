"""rematch: stories stored without a hit get one when the current rules flag them."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from service.cli import main
from service.config import WebhookConfig
from service.match import Matcher
from service.rematch import rematch
from service.storage import Storage, make_engine, migrate
from service.types import Article, NewArticle
from tests.conftest import REPO, RULES
from tests.seedfeed import seed_parts
from tests.test_storage import NOW, SECRET, match, poll_update


def seed_article() -> Article:
    title, summary, text = seed_parts()
    return Article(
        url="https://news.example/seed",
        guid="seed",
        title=title,
        summary=summary,
        text=text,
        published_at=NOW,
        source="Fox News",
        content_hash="seed-hash",
    )


def off_topic() -> Article:
    return Article(
        url="https://news.example/budget",
        guid="budget",
        title="City council passes the parks budget",
        summary="The council approved new playgrounds and road repairs.",
        text="",
        published_at=NOW,
        source="Example",
        content_hash="budget-hash",
    )


def fill(storage: Storage) -> None:
    storage.sync_config_webhooks([WebhookConfig(url="https://h.example/x", secret=SECRET)], NOW)
    feed, _ = storage.add_feed("https://a.example/rss", NOW)
    # The seed story was stored under older rules that did not flag it ...
    unflagged = replace(match(), flagged=False, score=0.1)
    # ... and an off-topic story was flagged by them.
    storage.record_poll(
        poll_update(feed.id),
        [NewArticle(seed_article(), unflagged), NewArticle(off_topic(), match())],
        NOW,
    )


def test_rematch_adds_new_hits_without_deliveries_and_reports_stale_ones(storage: Storage) -> None:
    fill(storage)
    assert storage.count_hits() == 1
    pending_before = len(storage.list_deliveries("pending"))
    report = rematch(storage, Matcher.load(RULES), lambda: datetime.now(UTC))
    assert report.stories == 2
    assert len(report.new_hits) == 1
    assert len(report.no_longer_flagged) == 1
    hit = storage.get_hit(report.new_hits[0])
    assert hit is not None and {"detainer", "sanctuary"} <= set(hit.topics)
    assert len(storage.list_deliveries("pending")) == pending_before  # not delivered
    again = rematch(storage, Matcher.load(RULES), lambda: datetime.now(UTC))
    assert again.new_hits == [] and again.still_flagged == 1


def test_rematch_deliver_and_since(storage: Storage) -> None:
    fill(storage)
    later = rematch(
        storage, Matcher.load(RULES), lambda: NOW, since=datetime(2030, 1, 1, tzinfo=UTC)
    )
    assert later.stories == 0
    report = rematch(storage, Matcher.load(RULES), lambda: NOW, deliver=True)
    assert [
        d.hit_id for d in storage.list_deliveries("pending") if d.hit_id == report.new_hits[0]
    ] == report.new_hits


def filled_config(tmp_path: Path) -> tuple[Path, Path]:
    """A config file and its migrated SQLite database, filled (``fill``)."""
    db = tmp_path / "dw.db"
    engine = make_engine(f"sqlite:///{db}")
    migrate(engine)
    fill(Storage(engine))
    engine.dispose()
    config = tmp_path / "c.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{db}"\n[matcher]\nrules = "{RULES}"\n', encoding="utf-8"
    )
    return config, db


def test_rematch_command(tmp_path: Path) -> None:
    config, _ = filled_config(tmp_path)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "service",
            "--config",
            str(config),
            "rematch",
            "--since",
            "2020-01-01",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "2 stories re-checked" in out.stdout
    assert "new hits: 1" in out.stdout
    assert "no longer flag: 1" in out.stdout
    assert "--deliver" in out.stdout


@pytest.mark.parametrize("since", ["2026-13-01", "yesterday"])
def test_rematch_with_a_bad_date_says_so_and_changes_nothing(
    tmp_path: Path, since: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config, db = filled_config(tmp_path)
    # "2026-13-01" raised a traceback (month must be in 1..12) instead of an error line.
    assert main(["--config", str(config), "rematch", "--since", since]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: --since:") and "2025-01-31" in err, err
    assert "Traceback" not in err
    storage = Storage(make_engine(f"sqlite:///{db}"))
    assert storage.count_hits() == 1  # as filled: nothing re-matched
    storage.close()
