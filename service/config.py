"""Settings: one declared table, loaded from a TOML file plus ``DW_*`` environment variables.

Every scalar setting is a row of ``SETTINGS`` (section, key, type, default, help). The
example config must mention every row (a test checks it), unknown keys are errors, and each
error names the file, the key and the fix (``ConfigError``). Any scalar can be overridden by
``DW_<SECTION>_<KEY>`` (e.g. ``DW_DATABASE_URL``, ``DW_HTTP_PORT``); the config path itself
comes from ``--config`` or ``DW_CONFIG``. Secrets come from the environment.

This module reads files and the environment it is handed; it creates nothing at import.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.alerts.subscription import (
    WEBHOOK_FORMATS,
    WebhookConfig,
    check_secret,
    check_target_url,
    is_private_url,
    parse_webhook,
)
from service.decide import parse_duration
from service.errors import ConfigError
from service.normalize import feed_url
from service.types import TOPICS

__all__ = [
    "DEFAULT_PARSE_NICE",
    "DEFAULT_SQLITE_CACHE_MB",
    "DEFAULT_SQLITE_CHECKPOINT_MB",
    "MAX_SQLITE_MB",
    "SETTINGS",
    "TOPICS",
    "WEBHOOK_FORMATS",
    "Config",
    "ConfigError",
    "FeedConfig",
    "Setting",
    "WebhookConfig",
    "check_secret",
    "is_private_url",
    "load_config",
]

DEFAULT_CONFIG_PATH = "config/detainer-watch.toml"

# SQLite's page cache per connection, in MB ([database].sqlite_cache_mb; also what
# ``storage.make_engine`` uses when not told). SQLite's own default is 2 MB: a first poll's
# band-key inserts (32 an article, at random places of one index) then fetch most pages
# from the OS again (bench/bench_stages.py --sqlite-cache-mb N compares sizes). 8 MB against
# 16 (bench/bench_poll.py --compare-sqlite-cache-mb, 2026-12-01, two 3-round runs with the
# two in either order, 500 feeds): 9 MB less PSS in every round (147 against 156-157, within
# the 150 MB target) for ~3 % more main-process CPU (medians 3.70 against 3.60 s) and a
# first poll ~1-3 % slower; at 5,000 feeds 2-3 % slower (2 runs) with 5-9 MB less.
DEFAULT_SQLITE_CACHE_MB = 8

# Size of SQLite's write-ahead log, in MB, at which a commit copies it into the database
# file ([database].sqlite_checkpoint_mb; SQLite's own default is 1,000 pages, ~4 MB). A
# checkpoint copies each page in the log once, however many commits changed it: a first
# poll changes the same band-index pages in batch after batch, so a longer log writes less
# (bench/bench_poll.py --compare-sqlite-checkpoint-mb 4, 500 feeds: 516 MB written against
# 678, and 1.14x the items/s, faster in 3 of 3 rounds; 5,000 feeds: 24,227 MB against
# 27,984). 256 MB wrote less again but was not faster. The log file keeps its largest size
# on disk.
DEFAULT_SQLITE_CHECKPOINT_MB = 64

# Largest sqlite_cache_mb and sqlite_checkpoint_mb (1 TB). SQLite reads both pragmas as
# 32-bit numbers (KiB and pages) and takes a larger one as 0: no page cache to speak of,
# or a write-ahead log that is never checkpointed and grows without end.
MAX_SQLITE_MB = 2**20

# How much lower the parse processes' CPU priority is than the poller's ([polling]
# parse_nice; Unix niceness, so at most 19). A first poll keeps every core busy, and its
# narrow side is the poller's one storing thread: at equal priority the parse processes took
# cores from it (in a probe, its thread spent a second of a 5 s poll runnable but not
# running) while they themselves waited for it to take their documents.
# bench/bench_poll.py --compare-parse-nice 0 measures the difference. 10 rather than 19 so
# that parsing still gets a tenth of a core that other programs keep busy, not next to none.
DEFAULT_PARSE_NICE = 10
MAX_PARSE_NICE = 19


@dataclass(frozen=True, slots=True)
class Setting:
    section: str
    key: str
    type: str  # "str" | "int" | "float" | "bool" | "duration" | "path"
    default: Any
    help: str
    env_only: bool = False  # secrets: never read from the file
    zero_ok: bool = False  # a duration that may be 0 (a spacing of none)

    @property
    def name(self) -> str:
        return f"{self.section}.{self.key}"

    @property
    def env(self) -> str:
        return f"DW_{self.section.upper()}_{self.key.upper()}"


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "database",
        "url",
        "str",
        "sqlite:///data/detainer-watch.db",
        "SQLAlchemy URL. SQLite paths are relative to the working directory; "
        "PostgreSQL: postgresql+psycopg://user@host/db",
    ),
    Setting(
        "database",
        "sqlite_cache_mb",
        "int",
        DEFAULT_SQLITE_CACHE_MB,
        "SQLite page cache of each connection, in MB: a first poll inserts 32 band keys an "
        "article at random places of one index, and SQLite's 2 MB default re-reads those "
        "pages from the OS at every insert (ignored for PostgreSQL)",
    ),
    Setting(
        "database",
        "sqlite_checkpoint_mb",
        "int",
        DEFAULT_SQLITE_CHECKPOINT_MB,
        "SQLite write-ahead log size, in MB, at which a commit copies the log into the "
        "database file (SQLite's default is ~4): a page changed by several commits in "
        "between is copied once, so polls write less; the log file keeps its largest size "
        "on disk (ignored for PostgreSQL)",
    ),
    Setting("http", "host", "str", "127.0.0.1", "address the API binds (0.0.0.0 in Docker)"),
    Setting("http", "port", "int", 8080, "port the API listens on"),
    Setting(
        "http",
        "worker_metrics_port",
        "int",
        0,
        "port on which each `worker` process serves its own /metrics (polls, deliveries); "
        "0 means none",
    ),
    Setting(
        "api",
        "token",
        "str",
        "",
        "bearer token for /api/* (set DW_API_TOKEN; never in the file)",
        env_only=True,
    ),
    Setting("polling", "interval", "duration", 900.0, "default time between polls of one feed"),
    Setting("polling", "min_interval", "duration", 60.0, "shortest interval any feed may get"),
    Setting("polling", "max_interval", "duration", 21600.0, "longest interval any feed may get"),
    Setting("polling", "tick", "duration", 30.0, "how often the scheduler looks for due feeds"),
    Setting("polling", "concurrency", "int", 8, "feeds fetched at once, all hosts together"),
    Setting("polling", "per_host_concurrency", "int", 2, "feeds fetched at once from one host"),
    Setting(
        "polling",
        "parse_processes",
        "int",
        0,
        "processes that parse fetched feeds; 0 means one per CPU core",
    ),
    Setting(
        "polling",
        "parse_nice",
        "int",
        DEFAULT_PARSE_NICE,
        "how much lower than the poller's own CPU priority the parse processes run (niceness "
        "added, 0-19): storing a poll, which only the poller's process does, then comes "
        "first when the cores are busy; 0 runs them at the poller's priority",
    ),
    Setting(
        "polling",
        "pin_poller",
        "bool",
        True,
        "keep the polling process's own threads (fetching, storing, scheduling, and the API "
        "of run) on one CPU, chosen by process id, and its parse processes on all: Python "
        "threads on several cores hand their lock (the GIL) from core to core, which nearly "
        "doubled the CPU of each fetch; Linux only, and nothing changes with one CPU",
    ),
    Setting(
        "polling",
        "per_host_delay",
        "duration",
        1.0,
        "shortest time between the starts of two requests to one host; 0 means none (only "
        "per_host_concurrency holds the host back)",
        zero_ok=True,
    ),
    Setting(
        "polling",
        "disable_after",
        "duration",
        30 * 86400.0,
        "a feed failing without a break for this long (and disable_after_errors times) is disabled",
    ),
    Setting(
        "polling",
        "disable_after_errors",
        "int",
        10,
        "consecutive failures needed, besides disable_after, before a feed is disabled",
    ),
    Setting("polling", "connect_timeout", "duration", 10.0, "seconds to open a connection"),
    Setting("polling", "read_timeout", "duration", 30.0, "seconds to wait for each read"),
    Setting("polling", "total_timeout", "duration", 60.0, "seconds for a whole fetch"),
    Setting("polling", "max_bytes", "int", 10_000_000, "largest feed body accepted, in bytes"),
    Setting(
        "polling",
        "user_agent",
        "str",
        "",
        "User-Agent header; empty means detainer-watch/VERSION (+project URL)",
    ),
    Setting(
        "network",
        "allow_private_addresses",
        "bool",
        False,
        "allow feeds and webhooks on loopback/private addresses (tests need true)",
    ),
    Setting(
        "matcher",
        "rules",
        "path",
        "rules/detainer-sanctuary.toml",
        "rules file, relative to this config file",
    ),
    Setting("matcher", "threshold", "float", 0.5, "score in [0, 1] at which a story is a hit"),
    Setting(
        "stories",
        "threshold",
        "float",
        0.3,
        "resemblance (Jaccard of word 3-shingles, 0..1) at which two articles are one story "
        "(measured in docs/stories.md)",
    ),
    Setting(
        "stories",
        "window",
        "duration",
        7 * 86400.0,
        "near-duplicate copies join a story only when published this close together",
    ),
    Setting("delivery", "tick", "duration", 5.0, "how often pending webhook deliveries are sent"),
    Setting("delivery", "timeout", "duration", 10.0, "seconds a webhook receiver gets to answer"),
    Setting(
        "delivery",
        "max_attempts",
        "int",
        30,
        "attempts before a delivery is marked failed (waits double from 30s, at most 6h apart)",
    ),
    Setting(
        "delivery",
        "retry_span",
        "duration",
        3 * 86400.0,
        "how long after a hit its delivery is retried before it is marked failed",
    ),
    Setting(
        "delivery",
        "batch",
        "int",
        100,
        "deliveries one delivery tick sends at most",
    ),
    Setting("logging", "level", "str", "INFO", "DEBUG, INFO, WARNING or ERROR"),
)

_BY_NAME = {s.name: s for s in SETTINGS}
_SECTIONS = {s.section for s in SETTINGS}
_FEED_KEYS = {"url": "feed URL (http or https)", "name": "display name", "interval": "duration"}


@dataclass(frozen=True, slots=True)
class FeedConfig:
    url: str  # normalised (normalize.feed_url), as the database stores feed URLs
    name: str | None = None
    interval_s: float | None = None


@dataclass(frozen=True, slots=True)
class Config:
    """Validated settings. ``values`` maps ``section.key`` to the typed value."""

    path: Path
    values: Mapping[str, Any]
    feeds: tuple[FeedConfig, ...] = ()
    webhooks: tuple[WebhookConfig, ...] = ()
    sources: Mapping[str, str] = field(default_factory=dict)  # where each value came from

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    @property
    def database_url(self) -> str:
        return str(self.values["database.url"])

    @property
    def sqlite_cache_mb(self) -> int:
        return int(self.values["database.sqlite_cache_mb"])

    @property
    def sqlite_checkpoint_mb(self) -> int:
        return int(self.values["database.sqlite_checkpoint_mb"])

    @property
    def rules_path(self) -> Path:
        return Path(self.values["matcher.rules"])


def _convert(setting: Setting, raw: Any, where: str) -> Any:
    """Turn a file or environment value into the setting's type, or raise ConfigError."""
    key = setting.name
    try:
        if setting.type == "str":
            if not isinstance(raw, str):
                raise ValueError("expected a string")
            return raw
        if setting.type == "path":
            if not isinstance(raw, str) or not raw:
                raise ValueError("expected a path string")
            return raw
        if setting.type == "bool":
            if isinstance(raw, bool):
                return raw
            if isinstance(raw, str) and raw.lower() in {
                "1",
                "true",
                "yes",
                "on",
                "0",
                "false",
                "no",
                "off",
            }:
                return raw.lower() in {"1", "true", "yes", "on"}
            raise ValueError("expected true or false")
        if setting.type == "int":
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError("expected a whole number")  # not 2.5, inf or nan
            value = int(raw)
            if value < 0:
                raise ValueError("must not be negative")
            return value
        if setting.type == "float":
            if isinstance(raw, bool):
                raise ValueError("expected a number")
            return float(raw)
        if setting.type == "duration":
            if isinstance(raw, bool):
                raise ValueError("expected a duration")
            return parse_duration(raw, allow_zero=setting.zero_ok)
    except (TypeError, ValueError) as e:
        raise ConfigError(
            where,
            key,
            f"bad value {raw!r}: {e}",
            f"set it to a {setting.type} such as {setting.default!r}",
        ) from e
    raise AssertionError(f"unknown setting type {setting.type}")  # a bug in SETTINGS


def _feeds(file: str, raw: Any, allow_private: bool) -> tuple[FeedConfig, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError(
            file,
            "feeds",
            "must be a list of [[feeds]] tables",
            'write each feed as a [[feeds]] table with url = "..."',
        )
    out: list[FeedConfig] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        where = f"feeds[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(file, where, "must be a table", 'use [[feeds]] with url = "..."')
        for k in item:
            if k not in _FEED_KEYS:
                raise ConfigError(
                    file, f"{where}.{k}", "unknown key", f"allowed keys: {', '.join(_FEED_KEYS)}"
                )
        if "url" not in item:
            raise ConfigError(file, f"{where}.url", "missing", 'every [[feeds]] needs url = "..."')
        # Normalised as the database stores feeds, so two spellings of one URL are caught here.
        url = feed_url(check_target_url(file, f"{where}.url", item["url"], allow_private))
        if url in seen:
            raise ConfigError(file, f"{where}.url", f"{url} is listed twice", "remove one")
        seen.add(url)
        interval = None
        if "interval" in item:
            interval = _convert(
                Setting("feeds", "interval", "duration", 900, ""), item["interval"], file
            )
        name = item.get("name")
        if name is not None and not isinstance(name, str):
            raise ConfigError(file, f"{where}.name", "must be a string", "quote the name")
        out.append(FeedConfig(url=url, name=name, interval_s=interval))
    return tuple(out)


def _webhooks(
    file: str, raw: Any, env: Mapping[str, str], allow_private: bool
) -> tuple[WebhookConfig, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError(
            file,
            "webhooks",
            "must be a list of [[webhooks]] tables",
            "write each receiver as a [[webhooks]] table",
        )
    out: list[WebhookConfig] = []
    for i, item in enumerate(raw):
        where = f"webhooks[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(file, where, "must be a table", "use [[webhooks]]")
        out.append(parse_webhook(item, file, where, env, allow_private))
    return tuple(out)


def load_config(
    path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> Config:
    """Read, validate and type the config file and environment. Raises ConfigError."""
    env = os.environ if env is None else env
    cfg_path = Path(path or env.get("DW_CONFIG") or DEFAULT_CONFIG_PATH)
    file = str(cfg_path)
    try:
        data = tomllib.loads(cfg_path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ConfigError(file, "", "file not found", "pass --config PATH or set DW_CONFIG") from e
    except OSError as e:
        raise ConfigError(file, "", f"cannot read it: {e.strerror}", "check permissions") from e
    except UnicodeDecodeError as e:
        raise ConfigError(file, "", "is not UTF-8 text", "save it as UTF-8") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(file, "", f"invalid TOML: {e}", "fix the syntax at that line") from e

    values: dict[str, Any] = {s.name: s.default for s in SETTINGS}
    sources: dict[str, str] = {s.name: "default" for s in SETTINGS}
    for section, table in data.items():
        if section in ("feeds", "webhooks"):
            continue
        if section not in _SECTIONS:
            raise ConfigError(
                file,
                section,
                "unknown section",
                f"known sections: {', '.join(sorted(_SECTIONS))}, feeds, webhooks",
            )
        if not isinstance(table, dict):
            raise ConfigError(file, section, "must be a table", f"write it as [{section}]")
        for key, raw in table.items():
            setting = _BY_NAME.get(f"{section}.{key}")
            if setting is None:
                known = ", ".join(s.key for s in SETTINGS if s.section == section)
                raise ConfigError(file, f"{section}.{key}", "unknown key", f"known keys: {known}")
            if setting.env_only:
                raise ConfigError(
                    file,
                    setting.name,
                    "secrets are not read from the file",
                    f"remove it and set {setting.env} in the environment",
                )
            values[setting.name] = _convert(setting, raw, file)
            sources[setting.name] = file
    for setting in SETTINGS:
        if setting.env in env:
            values[setting.name] = _convert(setting, env[setting.env], f"${setting.env}")
            sources[setting.name] = f"${setting.env}"

    _check_ranges(file, values)
    rules = Path(values["matcher.rules"])
    if not rules.is_absolute():
        rules = cfg_path.parent / rules
    try:
        found = rules.is_file()
    except (OSError, ValueError):  # a name too long for the file system, a NUL character
        found = False
    if not found:
        raise ConfigError(
            file,
            "matcher.rules",
            f"rules file {rules} not found",
            "point it at a rules TOML file (relative to this config file)",
        )
    values["matcher.rules"] = str(rules)
    allow_private = bool(values["network.allow_private_addresses"])
    return Config(
        path=cfg_path,
        values=values,
        feeds=_feeds(file, data.get("feeds"), allow_private),
        webhooks=_webhooks(file, data.get("webhooks"), env, allow_private),
        sources=sources,
    )


def _check_ranges(file: str, v: dict[str, Any]) -> None:
    if not 0.0 <= v["matcher.threshold"] <= 1.0:
        raise ConfigError(file, "matcher.threshold", "must be between 0 and 1", "e.g. 0.5")
    if not 0.0 < v["stories.threshold"] <= 1.0:
        raise ConfigError(file, "stories.threshold", "must be above 0 and at most 1", "e.g. 0.3")
    if not 1 <= v["http.port"] <= 65535:
        raise ConfigError(file, "http.port", "must be between 1 and 65535", "e.g. 8080")
    if not 0 <= v["http.worker_metrics_port"] <= 65535:
        raise ConfigError(
            file, "http.worker_metrics_port", "must be between 0 and 65535", "0 (off) or e.g. 9108"
        )
    if not 0 <= v["polling.parse_nice"] <= MAX_PARSE_NICE:
        raise ConfigError(
            file,
            "polling.parse_nice",
            f"must be between 0 and {MAX_PARSE_NICE}",
            f"use {DEFAULT_PARSE_NICE} (the default), or 0 for the poller's own priority",
        )
    for name in ("database.sqlite_cache_mb", "database.sqlite_checkpoint_mb"):
        if v[name] > MAX_SQLITE_MB:
            raise ConfigError(
                file,
                name,
                f"must be at most {MAX_SQLITE_MB:,} (1 TB): SQLite would take more as 0",
                "use a size in MB such as the default",
            )
    if v["polling.min_interval"] > v["polling.max_interval"]:
        raise ConfigError(
            file,
            "polling.min_interval",
            "is larger than max_interval",
            "make min_interval <= max_interval",
        )
    for name in (
        "polling.concurrency",
        "polling.per_host_concurrency",
        "polling.disable_after_errors",
        "polling.max_bytes",
        "delivery.max_attempts",
        "database.sqlite_cache_mb",
        "database.sqlite_checkpoint_mb",
    ):
        if v[name] < 1:
            raise ConfigError(file, name, "must be at least 1", "use a positive number")
    for name in ("polling.tick", "delivery.tick", "polling.interval"):
        if v[name] <= 0:
            raise ConfigError(file, name, "must be longer than zero", 'e.g. "30s"')
    if v["logging.level"].upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ConfigError(
            file,
            "logging.level",
            f"unknown level {v['logging.level']!r}",
            "use DEBUG, INFO, WARNING or ERROR",
        )
    url = v["database.url"]
    if not (url.startswith(("sqlite", "postgresql"))):
        raise ConfigError(
            file,
            "database.url",
            f"unsupported database {url.split(':')[0]!r}",
            "use sqlite:///PATH or postgresql+psycopg://...",
        )
