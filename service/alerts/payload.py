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
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from service.alerts.digest import group_hits
from service.normalize import is_web_url


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


def _escape_slack(text: str) -> str:
    """Slack mrkdwn needs &, < and > escaped (https://api.slack.com/reference/surfaces/formatting)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _escape_discord(text: str) -> str:
    return "".join("\\" + c if c in "*_~`|>" else c for c in text)


def _slack_link(url: str, text: str) -> str:
    """``<url|text>``, or the text alone for an article without a web link (an entry
    without one, or one too long to keep): ``<|text>`` shows as it is written. ``|`` and ``>`` end a
    Slack link, so they are percent-encoded in the URL."""
    if not is_web_url(url):  # rows stored before links were held to http(s)
        return text
    return f"<{url.replace('|', '%7C').replace('>', '%3E')}|{text}>"


def _discord_link(url: str, text: str) -> str:
    """``[text](url)``, or the text alone without a link; ``)`` ends the link."""
    return f"[{text}]({url.replace(')', '%29')})" if is_web_url(url) else text


def emphasised_evidence(
    hit: dict[str, Any], limit: int, mark: str, escape: Callable[[str], str]
) -> str:
    """The first evidence sentence, escaped, with its matched terms wrapped in ``mark``."""
    ev = (hit.get("evidence") or [None])[0]
    if not ev:
        return ""
    sentence = str(ev.get("sentence", ""))
    base = int(ev.get("start", 0))
    spans = sorted(
        (int(t["start"]) - base, int(t["end"]) - base)
        for t in ev.get("terms", [])
        if 0 <= int(t["start"]) - base < int(t["end"]) - base <= len(sentence)
    )
    out, pos = [], 0
    for start, end in spans:
        if start < pos:  # overlapping terms: the first one wins
            continue
        out.append(escape(sentence[pos:start]))
        out.append(mark + escape(sentence[start:end]) + mark)
        pos = end
    out.append(escape(sentence[pos:]))
    text = "".join(out)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# Slack: a section's text is limited to 3000 characters, a message to 50 blocks
# (https://api.slack.com/reference/block-kit/blocks#section).
SLACK_SECTION_MAX = 3000
SLACK_BLOCKS_MAX = 50
SLACK_TITLE_MAX = 150
# Discord: embed title 256, description 4096, footer 2048 characters, 10 embeds a message
# (https://discord.com/developers/docs/resources/message#embed-object-embed-limits).
DISCORD_TITLE_MAX = 256
DISCORD_DESCRIPTION_MAX = 4096
DISCORD_FOOTER_MAX = 2048
DISCORD_EMBEDS_MAX = 10


def _slack_section(hit: dict[str, Any]) -> dict[str, Any]:
    title = _escape_slack(str(hit["title"])[:SLACK_TITLE_MAX])
    lines = [
        f"*{_slack_link(str(hit['url'] or ''), title)}*",
        f"{_escape_slack(str(hit['source']))} · score {hit['score']:.2f}",
    ]
    headline = _headline(hit)
    if headline:
        lines.append(_escape_slack(headline))
    evidence = emphasised_evidence(hit, 1500, "*", _escape_slack)
    if evidence:
        lines.append("> " + evidence)
    return {
        "type": "section",
        "text": {"type": "mrkdwn", "text": "\n".join(lines)[:SLACK_SECTION_MAX]},
    }


def slack_body(hit: dict[str, Any]) -> bytes:
    doc = {"text": str(hit["title"])[:SLACK_TITLE_MAX], "blocks": [_slack_section(hit)]}
    return json.dumps(doc, ensure_ascii=False).encode()


def _discord_embed(hit: dict[str, Any]) -> dict[str, Any]:
    desc = "\n".join(
        b
        for b in (
            _escape_discord(_headline(hit)),
            emphasised_evidence(hit, 2000, "**", _escape_discord),
        )
        if b
    )
    embed = {
        "title": str(hit["title"])[:DISCORD_TITLE_MAX],
        "url": hit["url"],
        "description": desc[:DISCORD_DESCRIPTION_MAX],
        "footer": {"text": f"{hit['source']} · score {hit['score']:.2f}"[:DISCORD_FOOTER_MAX]},
    }
    if not is_web_url(hit["url"]):  # Discord refuses an embed whose url is not a URL
        del embed["url"]
    return embed


def discord_body(hit: dict[str, Any]) -> bytes:
    return json.dumps({"embeds": [_discord_embed(hit)]}, ensure_ascii=False).encode()


def render(fmt: str, hit: dict[str, Any], now: datetime) -> bytes:
    if fmt == "slack":
        return slack_body(hit)
    if fmt == "discord":
        return discord_body(hit)
    return standard_body(hit, now)


def render_digest(fmt: str, period: str, hits: Sequence[dict[str, Any]], now: datetime) -> bytes:
    """One message listing a period's hits grouped by event and state."""
    groups = group_hits(hits)
    if fmt == "slack":
        blocks: list[dict[str, Any]] = [
            {
                "type": "header",
                "text": {
                    "type": "plain_text",
                    "text": f"detainer-watch digest {period}: {len(hits)} hits",
                },
            }
        ]
        for event, state, items in groups:
            lines = [f"*{_escape_slack(event.replace('_', ' '))} — {state}*"]
            lines += [
                "• "
                + _slack_link(str(h["url"] or ""), _escape_slack(str(h["title"])[:SLACK_TITLE_MAX]))
                + f" ({_escape_slack(str(h['source']))})"
                for h in items
            ]
            blocks.append(
                {
                    "type": "section",
                    "text": {"type": "mrkdwn", "text": "\n".join(lines)[:SLACK_SECTION_MAX]},
                }
            )
        if len(blocks) > SLACK_BLOCKS_MAX:
            blocks = blocks[: SLACK_BLOCKS_MAX - 1] + [
                {
                    "type": "section",
                    "text": {
                        "type": "mrkdwn",
                        "text": f"…and {len(groups) - SLACK_BLOCKS_MAX + 2} more groups",
                    },
                }
            ]
        return json.dumps(
            {"text": f"detainer-watch digest {period}", "blocks": blocks}, ensure_ascii=False
        ).encode()
    if fmt == "discord":
        embeds = []
        for event, state, items in groups[:DISCORD_EMBEDS_MAX]:
            lines = [
                _discord_link(str(h["url"] or ""), _escape_discord(str(h["title"])[:200]))
                + f" ({_escape_discord(str(h['source']))})"
                for h in items
            ]
            embeds.append(
                {
                    "title": f"{event.replace('_', ' ')} — {state}"[:DISCORD_TITLE_MAX],
                    "description": "\n".join(lines)[:DISCORD_DESCRIPTION_MAX],
                }
            )
        return json.dumps(
            {"content": f"detainer-watch digest {period}: {len(hits)} hits", "embeds": embeds},
            ensure_ascii=False,
        ).encode()
    doc = {
        "type": "digest.created",
        "timestamp": now.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "data": {
            "period": period,
            "count": len(hits),
            "groups": [
                {"event_type": event, "state": state, "hits": items}
                for event, state, items in groups
            ],
        },
    }
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
