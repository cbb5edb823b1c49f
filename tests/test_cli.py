"""The command line as a user's script drives it: subprocesses, real files, real SQLite."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, RULES
from tests.seedfeed import seed_parts


def dw(
    *args: str, config: Path | None = None, stdin: str | None = None, cwd: Path = REPO
) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "service"]
    if config is not None:
        cmd += ["--config", str(config)]
    return subprocess.run(
        [*cmd, *args], input=stdin, capture_output=True, text=True, cwd=cwd, timeout=120
    )


def config(tmp_path: Path, database: str = "", more: str = "") -> Path:
    """A config in ``tmp_path``: a fresh SQLite database and the rules; ``database`` adds
    keys to [database], ``more`` further tables."""
    path = tmp_path / "c.toml"
    path.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "dw.db"}"\n{database}'
        f'[matcher]\nrules = "{RULES}"\n{more}',
        encoding="utf-8",
    )
    return path


def test_classify_keeps_order_and_shape() -> None:
    title, summary, text = seed_parts()
    lines = [
        {"id": "seed", "title": title, "summary": summary, "text": text},
        {
            "id": "ice",
            "title": "Ice storm closes schools across Massachusetts",
            "summary": "Black ice made roads treacherous.",
        },
        {"id": "empty", "title": "", "summary": ""},
    ]
    out = dw(
        "classify", "--rules", str(RULES), stdin="\n".join(json.dumps(x) for x in lines) + "\n"
    )
    assert out.returncode == 0, out.stderr
    rows = [json.loads(x) for x in out.stdout.splitlines()]
    assert [r["id"] for r in rows] == ["seed", "ice", "empty"]
    for r in rows:
        assert {
            "id",
            "flagged",
            "score",
            "topics",
            "event_type",
            "jurisdictions",
            "entities",
            "evidence",
        } <= set(r)
    assert rows[0]["flagged"] and {"detainer", "sanctuary"} <= set(rows[0]["topics"])
    assert not rows[1]["flagged"] and not rows[2]["flagged"]


def test_classify_reads_html_as_the_poller_does() -> None:
    # A feed item's summary as a feed gives it: tags, and entities for the apostrophes. As
    # plain text the same words are flagged; left as markup, "anyone&#39;s" is no word the
    # rules know, and the item was missed.
    plain = (
        "The bill would keep state and local officers from asking about anyone's "
        "immigration status or holding people for federal agents."
    )
    marked = "<p>" + plain.replace("'", "&#39;") + "</p>"
    title = "Lawmakers move to shield immigrants from local police"
    lines = [
        {"id": "plain", "title": title, "summary": plain},
        {"id": "html", "title": title, "summary": marked},
    ]
    out = dw(
        "classify", "--rules", str(RULES), stdin="\n".join(json.dumps(x) for x in lines) + "\n"
    )
    assert out.returncode == 0, out.stderr
    plain_row, html_row = (json.loads(x) for x in out.stdout.splitlines())
    assert plain_row["flagged"] and html_row["flagged"]
    assert html_row["topics"] == plain_row["topics"]
    assert [e["sentence"] for e in html_row["evidence"]] == [
        e["sentence"] for e in plain_row["evidence"]
    ]


def test_classify_rejects_a_bad_line_with_its_number() -> None:
    out = dw("classify", "--rules", str(RULES), stdin='{"id": 1, "title": "x"}\nnot json\n')
    assert out.returncode == 1
    assert "stdin line 2" in out.stderr


# `feeds add` fetches the URL to look for the feed a page announces; a feed outside
# 127.0.0.1 is added without that fetch, so that no test sends traffic off the machine.
OFFLINE = ("--no-discover",)


def test_feeds_add_list_remove(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    assert dw("migrate", config=cfg).returncode == 0
    added = dw(
        "feeds", "add", "https://example.org/rss.xml", "--name", "Example", *OFFLINE, config=cfg
    )
    assert added.returncode == 0 and "added: feed 1" in added.stdout
    assert (
        "already present"
        in dw("feeds", "add", "https://example.org/rss.xml", *OFFLINE, config=cfg).stdout
    )
    bad = dw("feeds", "add", "example.org/rss", config=cfg)
    assert bad.returncode == 1 and "not an http(s) URL" in bad.stderr
    # A bad --interval was a traceback after the feed's page had been fetched; now an error
    # before any request, and nothing is added.
    for interval in ("5x", "0", "-10m"):
        typo = dw(
            "feeds", "add", "https://example.org/other.xml", f"--interval={interval}", config=cfg
        )
        assert typo.returncode == 1, typo.stderr
        assert "error: --interval: invalid duration" in typo.stderr
        assert "Traceback" not in typo.stderr
    listed = dw("feeds", "list", "--format", "json", config=cfg)
    feeds = [json.loads(x) for x in listed.stdout.splitlines()]
    assert [f["url"] for f in feeds] == ["https://example.org/rss.xml"]
    assert feeds[0]["next_check_at"] and feeds[0]["error_count"] == 0
    assert "example.org/rss.xml" in dw("feeds", "list", config=cfg).stdout
    assert dw("feeds", "remove", "https://example.org/rss.xml", config=cfg).returncode == 0
    assert dw("feeds", "list", "--format", "json", config=cfg).stdout == ""
    assert dw("feeds", "remove", "https://nope.example/", config=cfg).returncode == 1


def test_migrate_reports_revisions_and_hits_on_empty_db(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    first = dw("migrate", config=cfg)
    assert first.returncode == 0 and "upgraded from empty" in first.stdout
    assert "up to date" in dw("migrate", config=cfg).stdout
    hits = dw("hits", config=cfg)
    assert hits.returncode == 0 and hits.stdout.startswith("id")
    assert dw("hits", "--format", "csv", config=cfg).stdout.startswith("id,first_seen_at")


def test_config_from_environment_variable(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    out = subprocess.run(
        [sys.executable, "-m", "service", "check-config"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        env={"DW_CONFIG": str(cfg), "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr
    assert str(cfg) in out.stdout


HOOK_SECRET = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3"  # 24 bytes


@pytest.mark.parametrize(
    ("feeds", "hooks", "said"),
    [(0, 0, "0 feeds, 0 webhooks"), (1, 1, "1 feed, 1 webhook"), (2, 3, "2 feeds, 3 webhooks")],
)
def test_check_config_counts_feeds_and_webhooks(
    tmp_path: Path, feeds: int, hooks: int, said: str
) -> None:
    tables = "".join(f'[[feeds]]\nurl = "https://example.org/{i}.xml"\n' for i in range(feeds))
    tables += "".join(
        f'[[webhooks]]\nurl = "https://hooks.example.org/{i}"\nsecret = "{HOOK_SECRET}"\n'
        for i in range(hooks)
    )
    out = dw("check-config", config=config(tmp_path, more=tables))
    assert out.returncode == 0, out.stderr
    assert f"OK — {said}, rules" in out.stdout
