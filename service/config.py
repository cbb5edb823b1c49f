"""Settings: one declared table, loaded from a TOML file plus ``DW_*`` environment variables.

Every scalar setting is a row of ``SETTINGS`` (section, key, type, default, help). The
example config must mention every row (a test checks it), unknown keys are errors, and each
error names the file, the key and the fix (``ConfigError``). Any scalar can be overridden by
``DW_<SECTION>_<KEY>`` (e.g. ``DW_DATABASE_URL``, ``DW_HTTP_PORT``); the config path itself
comes from ``--config`` or ``DW_CONFIG``. Secrets come from the environment.

This module reads files and the environment it is handed; it creates nothing at import.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from service.decide import parse_duration
from service.errors import ConfigError

DEFAULT_CONFIG_PATH = "config/detainer-watch.toml"
WEBHOOK_FORMATS = ("standard", "slack", "discord")
TOPICS = ("detainer", "sanctuary", "287g")


@dataclass(frozen=True, slots=True)
class Setting:
    section: str
    key: str
    type: str  # "str" | "int" | "float" | "bool" | "duration" | "path"
    default: Any
    help: str
    env_only: bool = False  # secrets: never read from the file

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
    Setting("http", "host", "str", "127.0.0.1", "address the API binds (0.0.0.0 in Docker)"),
    Setting("http", "port", "int", 8080, "port the API listens on"),
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
    Setting("delivery", "tick", "duration", 5.0, "how often pending webhook deliveries are sent"),
    Setting("delivery", "timeout", "duration", 10.0, "seconds a webhook receiver gets to answer"),
    Setting(
        "delivery",
        "max_attempts",
        "int",
        12,
        "attempts before a delivery is marked failed (backoff doubles from 30s, capped 12h)",
    ),
    Setting("logging", "level", "str", "INFO", "DEBUG, INFO, WARNING or ERROR"),
)

_BY_NAME = {s.name: s for s in SETTINGS}
_SECTIONS = {s.section for s in SETTINGS}
_FEED_KEYS = {"url": "feed URL (http or https)", "name": "display name", "interval": "duration"}
_WEBHOOK_KEYS = {
    "url": "receiver URL",
    "name": "display name",
    "secret": "whsec_ + base64 secret",
    "secret_env": "environment variable holding the secret",
    "format": "standard | slack | discord",
    "min_score": "only hits scoring at least this",
    "topics": "only hits with one of these topics",
}


@dataclass(frozen=True, slots=True)
class FeedConfig:
    url: str
    name: str | None = None
    interval_s: float | None = None


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    url: str
    secret: str
    name: str | None = None
    format: str = "standard"
    min_score: float = 0.0
    topics: tuple[str, ...] = ()


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
            if isinstance(raw, bool):
                raise ValueError("expected a whole number")
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
            return parse_duration(raw)
    except (TypeError, ValueError) as e:
        raise ConfigError(
            where,
            key,
            f"bad value {raw!r}: {e}",
            f"set it to a {setting.type} such as {setting.default!r}",
        ) from e
    raise AssertionError(f"unknown setting type {setting.type}")  # a bug in SETTINGS


def _check_url(file: str, key: str, url: Any) -> str:
    if (
        not isinstance(url, str)
        or urlsplit(url).scheme not in {"http", "https"}
        or not urlsplit(url).hostname
    ):
        raise ConfigError(
            file,
            key,
            f"{url!r} is not an http(s) URL",
            "write a full URL such as https://example.org/feed.xml",
        )
    return url


def is_private_url(url: str) -> bool:
    """True when the URL's host is a loopback, private or link-local address or localhost."""
    host = urlsplit(url).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved


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
        url = _check_url(file, f"{where}.url", item["url"])
        if not allow_private and is_private_url(url):
            raise ConfigError(
                file,
                f"{where}.url",
                f"{url} is a loopback/private address",
                "set [network] allow_private_addresses = true to allow it",
            )
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


def check_secret(secret: str) -> str | None:
    """Return why a Standard Webhooks secret is unusable, or None when it is fine."""
    if not secret.startswith("whsec_"):
        return "must start with whsec_"
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except binascii.Error:
        return "the part after whsec_ is not valid base64"
    if len(key) < 16:
        return "is shorter than 16 bytes (24 base64 characters)"
    return None


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
        for k in item:
            if k not in _WEBHOOK_KEYS:
                raise ConfigError(
                    file, f"{where}.{k}", "unknown key", f"allowed keys: {', '.join(_WEBHOOK_KEYS)}"
                )
        if "url" not in item:
            raise ConfigError(file, f"{where}.url", "missing", 'add url = "https://..."')
        url = _check_url(file, f"{where}.url", item["url"])
        if not allow_private and is_private_url(url):
            raise ConfigError(
                file,
                f"{where}.url",
                f"{url} is a loopback/private address",
                "set [network] allow_private_addresses = true to allow it",
            )
        if "secret" in item and "secret_env" in item:
            raise ConfigError(file, where, "has both secret and secret_env", "keep one")
        if "secret_env" in item:
            var = item["secret_env"]
            if not isinstance(var, str) or not env.get(var):
                raise ConfigError(
                    file,
                    f"{where}.secret_env",
                    f"environment variable {var!r} is not set",
                    f"export {var}=whsec_... before starting",
                )
            secret = env[var]
            key = f"{where}.secret_env"
        elif "secret" in item:
            secret = item["secret"]
            key = f"{where}.secret"
            if not isinstance(secret, str):
                raise ConfigError(file, key, "must be a string", "quote the secret")
        else:
            raise ConfigError(
                file,
                f"{where}.secret",
                "missing",
                'add secret_env = "NAME" (preferred) or secret = "whsec_..."',
            )
        problem = check_secret(secret)
        if problem:
            raise ConfigError(
                file,
                key,
                f"the secret {problem}",
                'generate one: python -c "import base64,os;'
                "print('whsec_'+base64.b64encode(os.urandom(24)).decode())\"",
            )
        fmt = item.get("format", "standard")
        if fmt not in WEBHOOK_FORMATS:
            raise ConfigError(
                file,
                f"{where}.format",
                f"unknown format {fmt!r}",
                f"use one of {', '.join(WEBHOOK_FORMATS)}",
            )
        min_score = item.get("min_score", 0.0)
        if (
            isinstance(min_score, bool)
            or not isinstance(min_score, int | float)
            or not 0 <= min_score <= 1
        ):
            raise ConfigError(
                file,
                f"{where}.min_score",
                f"bad value {min_score!r}",
                "use a number between 0 and 1",
            )
        topics = item.get("topics", [])
        if not isinstance(topics, list) or any(t not in TOPICS for t in topics):
            raise ConfigError(
                file,
                f"{where}.topics",
                f"bad value {topics!r}",
                f"use a list drawn from {list(TOPICS)}",
            )
        name = item.get("name")
        out.append(
            WebhookConfig(
                url=url,
                secret=secret,
                name=name if isinstance(name, str) else None,
                format=fmt,
                min_score=float(min_score),
                topics=tuple(topics),
            )
        )
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
    if not rules.is_file():
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
    if not 1 <= v["http.port"] <= 65535:
        raise ConfigError(file, "http.port", "must be between 1 and 65535", "e.g. 8080")
    if v["polling.min_interval"] > v["polling.max_interval"]:
        raise ConfigError(
            file,
            "polling.min_interval",
            "is larger than max_interval",
            "make min_interval <= max_interval",
        )
    for name in ("polling.concurrency", "polling.max_bytes", "delivery.max_attempts"):
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
