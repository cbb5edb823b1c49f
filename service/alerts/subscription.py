"""Webhook subscriptions: validation of their settings, shared by the config file and the API.

Pure: takes a mapping (a ``[[webhooks]]`` table or an API body) and returns a
``WebhookConfig`` or raises ``ConfigError`` naming the key and the fix.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from service.errors import ConfigError
from service.normalize import feed_url_too_long, http_host
from service.types import TOPICS

WEBHOOK_FORMATS = ("standard", "slack", "discord")
DIGEST_PERIODS = ("daily", "weekly")
# Shortest secret we accept: Standard Webhooks asks for 24 to 64 bytes; 16 is a hard floor.
MIN_SECRET_BYTES = 16

WEBHOOK_KEYS = {
    "url": "receiver URL",
    "name": "display name",
    "secret": "whsec_ + base64 secret, or a list of them during rotation (first signs first)",
    "secret_env": "environment variable holding the secret(s), space-separated",
    "format": "standard | slack | discord",
    "min_score": "only hits scoring at least this",
    "topics": "only hits with one of these topics",
    "events": "only hits with one of these event types",
    "states": "only hits in one of these states (two-letter codes)",
    "jurisdictions": "only hits naming one of these places",
    "feeds": "only hits seen in one of these feed URLs",
    "digest": "daily | weekly: one message per period instead of one per hit",
    "digest_hour": "hour (0-23) the digest is sent, in digest_timezone",
    "digest_timezone": "IANA time zone of digest_hour, e.g. America/New_York",
}


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    url: str
    secret: str  # one or more whsec_ secrets, space-separated; the first is the current one
    name: str | None = None
    format: str = "standard"
    min_score: float = 0.0
    topics: tuple[str, ...] = ()
    events: tuple[str, ...] = ()
    states: tuple[str, ...] = ()
    jurisdictions: tuple[str, ...] = ()
    feeds: tuple[str, ...] = ()
    digest: str | None = None
    digest_hour: int = 8
    digest_timezone: str = "UTC"

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(self.secret.split())


def check_secret(secret: str) -> str | None:
    """Return why a Standard Webhooks secret is unusable, or None when it is fine."""
    if not secret.startswith("whsec_"):
        return "must start with whsec_"
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except binascii.Error:
        return "the part after whsec_ is not valid base64"
    if len(key) < MIN_SECRET_BYTES:
        return f"is shorter than {MIN_SECRET_BYTES} bytes (24 base64 characters)"
    return None


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


def check_url(file: str, key: str, url: Any) -> str:
    """An http(s) URL short enough to store (``MAX_FEED_URL_BYTES``: URLs are indexed)."""
    if not isinstance(url, str) or http_host(url) is None:
        raise ConfigError(
            file,
            key,
            f"{url!r} is not an http(s) URL",
            "write a full URL that starts with https:// or http://",
        )
    problem = feed_url_too_long(url)
    if problem is not None:
        raise ConfigError(file, key, problem, "use a shorter URL")
    return url


def check_target_url(file: str, key: str, url: Any, allow_private: bool) -> str:
    """An http(s) URL we will send requests to: not a literal loopback/private address
    unless the config allows those."""
    url = check_url(file, key, url)
    if not allow_private and is_private_url(url):
        raise ConfigError(
            file,
            key,
            f"{url} is a loopback/private address",
            "set [network] allow_private_addresses = true to allow it",
        )
    return str(url)


def _str_list(
    file: str, key: str, value: Any, allowed: tuple[str, ...] | None = None
) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(file, key, f"bad value {value!r}", 'use a list of strings: ["a", "b"]')
    if allowed is not None and any(v not in allowed for v in value):
        raise ConfigError(file, key, f"bad value {value!r}", f"use values from {list(allowed)}")
    return tuple(value)


def _secret(file: str, where: str, item: Mapping[str, Any], env: Mapping[str, str]) -> str:
    if "secret" in item and "secret_env" in item:
        raise ConfigError(file, where, "has both secret and secret_env", "keep one")
    if "secret_env" in item:
        var = item["secret_env"]
        key = f"{where}.secret_env"
        if not isinstance(var, str) or not env.get(var):
            raise ConfigError(
                file,
                key,
                f"environment variable {var!r} is not set",
                f"export {var}=whsec_... before starting",
            )
        secrets = env[var].split()
    elif "secret" in item:
        key = f"{where}.secret"
        raw = item["secret"]
        secrets = [raw] if isinstance(raw, str) else raw
        if (
            not isinstance(secrets, list)
            or not secrets
            or not all(isinstance(s, str) for s in secrets)
        ):
            raise ConfigError(
                file,
                key,
                "must be a string or a list of strings",
                'quote the secret: secret = "whsec_..."',
            )
    else:
        raise ConfigError(
            file,
            f"{where}.secret",
            "missing",
            'add secret_env = "NAME" (preferred) or secret = "whsec_..."',
        )
    for s in secrets:
        problem = check_secret(s)
        if problem:
            raise ConfigError(
                file,
                key,
                f"the secret {problem}",
                'generate one: python -c "import base64,os;'
                "print('whsec_'+base64.b64encode(os.urandom(24)).decode())\"",
            )
    return " ".join(secrets)


def parse_webhook(
    item: Mapping[str, Any], file: str, where: str, env: Mapping[str, str], allow_private: bool
) -> WebhookConfig:
    """Validate one subscription table; errors name ``file``, ``where.key`` and the fix."""
    for k in item:
        if k not in WEBHOOK_KEYS:
            raise ConfigError(
                file, f"{where}.{k}", "unknown key", f"allowed keys: {', '.join(WEBHOOK_KEYS)}"
            )
    if "url" not in item:
        raise ConfigError(file, f"{where}.url", "missing", 'add url = "https://..."')
    url = check_target_url(file, f"{where}.url", item["url"], allow_private)
    secret = _secret(file, where, item, env)
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
            file, f"{where}.min_score", f"bad value {min_score!r}", "use a number between 0 and 1"
        )
    digest = item.get("digest")
    if digest is not None and digest not in DIGEST_PERIODS:
        raise ConfigError(
            file,
            f"{where}.digest",
            f"bad value {digest!r}",
            f"use one of {', '.join(DIGEST_PERIODS)}, or leave it out",
        )
    hour = item.get("digest_hour", 8)
    if isinstance(hour, bool) or not isinstance(hour, int) or not 0 <= hour <= 23:
        raise ConfigError(
            file, f"{where}.digest_hour", f"bad value {hour!r}", "use a whole hour from 0 to 23"
        )
    tz = item.get("digest_timezone", "UTC")
    try:
        ZoneInfo(str(tz))
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ConfigError(
            file,
            f"{where}.digest_timezone",
            f"unknown time zone {tz!r}",
            "use an IANA name such as America/New_York",
        ) from e
    name = item.get("name")
    if name is not None and not isinstance(name, str):
        raise ConfigError(file, f"{where}.name", "must be a string", "quote the name")
    return WebhookConfig(
        url=url,
        secret=secret,
        name=name,
        format=fmt,
        min_score=float(min_score),
        topics=_str_list(file, f"{where}.topics", item.get("topics", []), TOPICS),
        events=_str_list(file, f"{where}.events", item.get("events", [])),
        states=tuple(s.upper() for s in _str_list(file, f"{where}.states", item.get("states", []))),
        jurisdictions=_str_list(file, f"{where}.jurisdictions", item.get("jurisdictions", [])),
        feeds=_str_list(file, f"{where}.feeds", item.get("feeds", [])),
        digest=digest,
        digest_hour=hour,
        digest_timezone=str(tz),
    )
