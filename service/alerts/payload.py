"""Webhook bodies and Standard Webhooks signatures (pure).

Spec: https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md
The signature is ``v1,`` + base64(HMAC-SHA256(key, f"{id}.{timestamp}.{body}")) where the
key is the base64 part of ``whsec_...``. Several secrets (rotation) give several
space-separated signatures, any of which a receiver may accept.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any


def secret_key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix("whsec_"))


def sign(secrets: Sequence[str], webhook_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value for a body, one signature per secret."""
    to_sign = f"{webhook_id}.{timestamp}.".encode() + body
    sigs = []
    for secret in secrets:
        digest = hmac.new(secret_key(secret), to_sign, hashlib.sha256).digest()
        sigs.append("v1," + base64.b64encode(digest).decode())
    return " ".join(sigs)


def standard_body(hit: dict[str, Any], now: datetime, event: str = "hit.created") -> bytes:
    """DESIGN.md §8: ``{"type": ..., "timestamp": ..., "data": <hit>}`` as compact JSON."""
    doc = {
        "type": event,
        "timestamp": now.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "data": hit,
    }
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


def _headline(hit: dict[str, Any]) -> str:
    places = ", ".join(
        f"{j['name']}, {j['state']}" if j.get("kind") != "state" else j["name"]
        for j in hit.get("jurisdictions", [])[:3]
    )
    event = (hit.get("event_type") or "").replace("_", " ")
    bits = [b for b in (event, places) if b]
    return " — ".join(bits)


def _evidence_text(hit: dict[str, Any], limit: int) -> str:
    ev = hit.get("evidence") or []
    if not ev:
        return ""
    sentence = str(ev[0].get("sentence", ""))
    return sentence if len(sentence) <= limit else sentence[: limit - 1] + "…"


# Slack: section text is limited to 3000 characters; header text to 150.
SLACK_SECTION_MAX = 3000
SLACK_HEADER_MAX = 150
# Discord: embed title 256, description 4096, footer 2048 characters.
DISCORD_TITLE_MAX = 256
DISCORD_DESCRIPTION_MAX = 4096


def slack_body(hit: dict[str, Any]) -> bytes:
    title = str(hit["title"])[:SLACK_HEADER_MAX]
    lines = [f"*<{hit['url']}|{title}>*", f"{hit['source']} · score {hit['score']:.2f}"]
    headline = _headline(hit)
    if headline:
        lines.append(headline)
    evidence = _evidence_text(hit, 1000)
    if evidence:
        lines.append("> " + evidence)
    text = "\n".join(lines)[:SLACK_SECTION_MAX]
    doc = {"text": title, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}
    return json.dumps(doc, ensure_ascii=False).encode()


def discord_body(hit: dict[str, Any]) -> bytes:
    desc = "\n".join(b for b in (_headline(hit), _evidence_text(hit, 1500)) if b)
    embed = {
        "title": str(hit["title"])[:DISCORD_TITLE_MAX],
        "url": hit["url"],
        "description": desc[:DISCORD_DESCRIPTION_MAX],
        "footer": {"text": f"{hit['source']} · score {hit['score']:.2f}"},
    }
    return json.dumps({"embeds": [embed]}, ensure_ascii=False).encode()


def render(fmt: str, hit: dict[str, Any], now: datetime) -> bytes:
    if fmt == "slack":
        return slack_body(hit)
    if fmt == "discord":
        return discord_body(hit)
    return standard_body(hit, now)
