"""Config: the shipped file is valid and documents every setting; bad files fail clearly."""

from __future__ import annotations

import base64
import json
import math
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.config import SETTINGS, Setting, load_config
from service.errors import ConfigError
from tests.conftest import REPO, RULES

SHIPPED = REPO / "config" / "detainer-watch.toml"
GOOD_SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123").decode()


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(f'[matcher]\nrules = "{RULES}"\n' + body, encoding="utf-8")
    return path


def test_shipped_config_is_valid_with_enough_real_feeds() -> None:
    cfg = load_config(SHIPPED, env={})
    assert len(cfg.feeds) >= 12
    assert sum("news.google.com/rss/search" in f.url for f in cfg.feeds) >= 4
    assert cfg.database_url == "sqlite:///data/detainer-watch.db"
    assert cfg["http.port"] == 8080


def test_every_setting_is_documented_in_the_shipped_config_and_readme() -> None:
    text = SHIPPED.read_text(encoding="utf-8")
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for s in SETTINGS:
        section = re.search(rf"^#? ?\[{s.section}\]$", text, re.M)
        assert section, f"[{s.section}] is not in {SHIPPED.name}"
        assert re.search(rf"^#? ?{s.key}\b", text[section.end() :], re.M) or s.key in text, (
            f"{s.name} is not in {SHIPPED.name}"
        )
        assert f"`{s.name}`" in readme, f"{s.name} is not in the README's configuration table"


def test_environment_overrides_file(tmp_path: Path) -> None:
    cfg = load_config(
        write(tmp_path, "[http]\nport = 9000\n"),
        env={"DW_HTTP_PORT": "9100", "DW_DATABASE_URL": "sqlite:///x.db", "DW_API_TOKEN": "t0ken"},
    )
    assert cfg["http.port"] == 9100
    assert cfg.database_url == "sqlite:///x.db"
    assert cfg["api.token"] == "t0ken"
    assert cfg.sources["http.port"] == "$DW_HTTP_PORT"


def test_durations_and_feed_intervals(tmp_path: Path) -> None:
    cfg = load_config(
        write(
            tmp_path,
            '[polling]\ninterval = "2h"\ntick = 45\n'
            '[[feeds]]\nurl = "https://a.example/feed"\n'
            'interval = "90s"\n',
        ),
        env={},
    )
    assert cfg["polling.interval"] == 7200
    assert cfg["polling.tick"] == 45
    assert cfg.feeds[0].interval_s == 90


@pytest.mark.parametrize("raw", ["0", '"0s"', "0.0"])
def test_per_host_delay_may_be_zero(tmp_path: Path, raw: str) -> None:
    # No spacing between requests to one host (a mirror, an aggregator one trusts); only
    # per_host_concurrency then holds the host back. Other durations stay positive.
    cfg = load_config(write(tmp_path, f"[polling]\nper_host_delay = {raw}\n"), env={})
    assert cfg["polling.per_host_delay"] == 0
    env = load_config(write(tmp_path, ""), env={"DW_POLLING_PER_HOST_DELAY": "0s"})
    assert env["polling.per_host_delay"] == 0


def test_webhook_secret_from_environment(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[[webhooks]]\nurl = "https://hooks.example/x"\n'
        'secret_env = "HOOK_SECRET"\nformat = "slack"\n',
    )
    cfg = load_config(path, env={"HOOK_SECRET": GOOD_SECRET})
    assert cfg.webhooks[0].secret == GOOD_SECRET
    assert cfg.webhooks[0].format == "slack"


# (file body, key named in the error, a word the fix must contain)
BAD_CONFIGS = [
    ("[polling\n", "", "syntax"),
    ("[pollng]\ninterval = 5\n", "pollng", "known sections"),
    ("[polling]\nintervall = 5\n", "polling.intervall", "known keys"),
    ('[polling]\ninterval = "soon"\n', "polling.interval", "duration"),
    ('[polling]\ninterval = "0s"\n', "polling.interval", "duration"),  # only spacings may be 0
    ("[polling]\nper_host_delay = -1\n", "polling.per_host_delay", "duration"),
    ('[http]\nport = "eighty"\n', "http.port", "int"),
    ("[http]\nport = 70000\n", "http.port", "65535"),
    ("[polling]\nparse_processes = -1\n", "polling.parse_processes", "such as 0"),
    ("[polling]\nparse_nice = 20\n", "polling.parse_nice", "0 for the poller's own priority"),
    ("[polling]\nparse_nice = -5\n", "polling.parse_nice", "such as 10"),
    ("[matcher]\nthreshold = 2\n", "matcher.threshold", "0.5"),
    ("[polling]\nconcurrency = inf\n", "polling.concurrency", "8"),  # int(inf) raised
    ("[polling]\nconcurrency = 2.5\n", "polling.concurrency", "8"),  # was taken as 2
    ('[api]\ntoken = "x"\n', "api.token", "DW_API_TOKEN"),
    ('[database]\nurl = "mysql://x"\n', "database.url", "sqlite"),
    ("[database]\nsqlite_cache_mb = 0\n", "database.sqlite_cache_mb", "positive"),
    ("[database]\nsqlite_checkpoint_mb = 0\n", "database.sqlite_checkpoint_mb", "positive"),
    # SQLite reads more than 32 bits as 0: no checkpoints, a log growing without end.
    ("[database]\nsqlite_checkpoint_mb = 9000000\n", "database.sqlite_checkpoint_mb", "1 TB"),
    ("[database]\nsqlite_cache_mb = 3000000\n", "database.sqlite_cache_mb", "1 TB"),
    ('[polling]\nmin_interval = "2h"\nmax_interval = "1h"\n', "polling.min_interval", "<="),
    ('[[feeds]]\nname = "no url"\n', "feeds[0].url", "url ="),
    ('[[feeds]]\nurl = "ftp://x.example/feed"\n', "feeds[0].url", "https://"),
    (  # two spellings of one URL (the database stores feed URLs normalised)
        '[[feeds]]\nurl = "https://a.example/f"\n[[feeds]]\nurl = "HTTPS://A.example:443/f"\n',
        "feeds[1].url",
        "remove one",
    ),
    (f'[matcher]\nrules = "{"r" * 400}"\n', "matcher.rules", "rules TOML"),  # OSError: too long
    ('[matcher]\nrules = "a\\u0000b"\n', "matcher.rules", "rules TOML"),  # ValueError: NUL
    ('[[feeds]]\nurl = "http://[::1/feed"\n', "feeds[0].url", "https://"),  # urlsplit raised
    ('[[feeds]]\nurl = "https://x.example:99999/feed"\n', "feeds[0].url", "https://"),
    (f'[[feeds]]\nurl = "https://x.example/{"x" * 2_100}"\n', "feeds[0].url", "shorter URL"),
    (
        '[[webhooks]]\nurl = "http://[::1/hook"\nsecret = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM="\n',
        "webhooks[0].url",
        "https://",
    ),
    ('[[feeds]]\nurl = "http://127.0.0.1:8000/feed"\n', "feeds[0].url", "allow_private_addresses"),
    ('[[feeds]]\nurl = "https://a.example/f"\ncolour = "red"\n', "feeds[0].colour", "allowed keys"),
    ('[[webhooks]]\nurl = "https://h.example/x"\n', "webhooks[0].secret", "secret_env"),
    (
        '[[webhooks]]\nurl = "https://h.example/x"\nsecret = "plain"\n',
        "webhooks[0].secret",
        "generate",
    ),
    (
        '[[webhooks]]\nurl = "https://h.example/x"\nsecret_env = "UNSET_VAR"\n',
        "webhooks[0].secret_env",
        "export",
    ),
    (
        f'[[webhooks]]\nurl = "https://h.example/x"\nsecret = "{GOOD_SECRET}"\nformat = "xml"\n',
        "webhooks[0].format",
        "standard",
    ),
]


@pytest.mark.parametrize(("body", "key", "fix"), BAD_CONFIGS)
def test_bad_config_names_file_key_and_fix(tmp_path: Path, body: str, key: str, fix: str) -> None:
    path = write(tmp_path, body) if not body.startswith("[matcher]") else tmp_path / "c.toml"
    if body.startswith("[matcher]"):  # a body that names its own rules file keeps it
        rules = "" if "\nrules = " in body else f'rules = "{RULES}"\n'
        path.write_text(body + rules, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    message = str(err.value)
    assert message.startswith(str(path))
    assert err.value.key == key
    assert fix in message


def test_missing_rules_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[matcher]\nrules = "nope.toml"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="matcher.rules: rules file .*nope.toml not found"):
        load_config(path, env={})


def test_bad_env_value_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\$DW_HTTP_PORT: http.port"):
        load_config(write(tmp_path, ""), env={"DW_HTTP_PORT": "many"})


@pytest.mark.parametrize(
    "command", [["check-config"], ["migrate"], ["hits"], ["feeds", "list"], ["poll"]]
)
def test_every_command_rejects_a_bad_config_with_exit_1(tmp_path: Path, command: list[str]) -> None:
    path = write(tmp_path, "[polling]\nintervall = 5\n")
    proc = subprocess.run(
        [sys.executable, "-m", "service", "--config", str(path), *command],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert proc.returncode == 1
    assert f"{path}: polling.intervall: unknown key" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_check_config_accepts_the_shipped_file() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "service", "--config", str(SHIPPED), "check-config"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "OK" in proc.stdout


@pytest.mark.parametrize("configured,expected", [(1, 1), (3, 3), (0, os.cpu_count() or 1)])
def test_parse_processes_size_the_parse_pool(
    tmp_path: Path, configured: int, expected: int
) -> None:
    from service.cli import build

    body = (
        f'[database]\nurl = "sqlite:///{tmp_path / "dw.db"}"\n'
        f"[polling]\nparse_processes = {configured}\n"
    )
    with build(load_config(write(tmp_path, body), env={})) as parts:
        assert parts.poller is not None
        assert parts.poller.parse_pool.processes == expected


@pytest.mark.parametrize("configured", [0, 3, None])
def test_parse_processes_run_below_the_pollers_priority(
    tmp_path: Path, configured: int | None
) -> None:
    """The worker started for a document runs ``parse_nice`` steps of niceness below this
    process (the default when unset); Unix caps niceness at 19."""
    from service.cli import build
    from service.config import DEFAULT_PARSE_NICE

    body = f'[database]\nurl = "sqlite:///{tmp_path / "dw.db"}"\n[polling]\nparse_processes = 1\n'
    if configured is not None:
        body += f"parse_nice = {configured}\n"
    added = DEFAULT_PARSE_NICE if configured is None else configured
    own = os.getpriority(os.PRIO_PROCESS, 0)
    with build(load_config(write(tmp_path, body), env={})) as parts:
        assert parts.poller is not None
        pool = parts.poller.parse_pool
        doc = pool.parse(b"<rss><channel><item><title>t</title></item></channel></rss>", {}, "")
        assert doc.error is None and len(doc.articles) == 1
        [worker] = pool.worker_pids()
        assert os.getpriority(os.PRIO_PROCESS, worker) == min(19, own + added)


ODD_VALUES = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.sampled_from([math.inf, -math.inf, math.nan, 2.5, 1e308]),
    st.booleans(),
    st.sampled_from(["", "0", "-1s", "1e308s", "9" * 400, "\u00b9", "x", "r" * 400, "a\u0000b"]),
)


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value)  # a TOML basic string, escapes included


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(SETTINGS), ODD_VALUES)
def test_any_value_of_any_setting_is_taken_or_refused_naming_it(
    setting: Setting, value: object
) -> None:
    """Odd values (inf, 2.5, 400 nines, a 400-character path) raised OverflowError and
    OSError out of load_config before; every value is now taken or refused with the key."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.toml"
        rules = "" if setting.name == "matcher.rules" else f'[matcher]\nrules = "{RULES}"\n'
        path.write_text(
            f"{rules}[{setting.section}]\n{setting.key} = {_toml(value)}\n", encoding="utf-8"
        )
        try:
            load_config(path, env={})
        except ConfigError as e:
            # The key itself, or the one it is checked against (min_interval, max_interval).
            assert e.key.startswith(f"{setting.section}.") or e.key in ("", "matcher.rules"), e
