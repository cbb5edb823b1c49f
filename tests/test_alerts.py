"""Webhooks: Standard Webhooks signatures, retries with the same id, 410, formats."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from service.alerts.payload import (
    discord_body,
    render,
    render_digest,
    sign,
    slack_body,
    standard_body,
)
from service.alerts.retry import FIRST_RETRY_S, MAX_RETRY_WAIT_S, next_attempt_at
from service.alerts.sender import WebhookSender, build_webhook_client
from service.config import WebhookConfig
from service.storage import Storage, hit_payload
from service.types import NewArticle
from tests.receiver import WebhookReceiver
from tests.test_storage import NOW, SECRET, article, match, poll_update

OTHER_SECRET = "whsec_YW5vdGhlci1zZWNyZXQtZm9yLXJvdGF0aW9u"


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def test_signature_verifies_with_the_standardwebhooks_package() -> None:
    now = datetime.now(UTC)
    body = standard_body({"id": 1, "title": "x"}, now)
    ts = int(now.timestamp())
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(ts),
        "webhook-signature": sign([SECRET, OTHER_SECRET], "msg_1", ts, body),
    }
    for secret in (SECRET, OTHER_SECRET):  # rotation: either secret verifies
        assert Webhook(secret).verify(body, headers) == json.loads(body)
    tampered = body.replace(b'"x"', b'"y"')
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(tampered, headers)
    doc = json.loads(body)
    assert doc["type"] == "hit.created" and doc["data"]["id"] == 1


def test_retry_schedule_doubles_caps_and_honours_retry_after() -> None:
    rng = random.Random(1)
    waits = [
        (next_attempt_at(NOW, n, 20, None, rng) - NOW).total_seconds()  # type: ignore[operator]
        for n in range(1, 16)
    ]
    assert FIRST_RETRY_S * 0.8 <= waits[0] <= FIRST_RETRY_S * 1.2
    assert waits[3] > waits[0] * 4
    assert max(waits) <= MAX_RETRY_WAIT_S * 1.2
    assert next_attempt_at(NOW, 20, 20, None, rng) is None
    wait = next_attempt_at(NOW, 1, 20, 600, rng)
    assert wait is not None and wait - NOW >= timedelta(seconds=600)


def _store_with_hit(storage: Storage, url: str) -> int:
    storage.sync_config_webhooks([WebhookConfig(url=url, secret=SECRET)], NOW)
    feed, _ = storage.add_feed("https://a.example/rss", NOW)
    return storage.record_poll(poll_update(feed.id), [NewArticle(article(1), match())], NOW)[0]


def test_failed_attempts_retry_with_the_same_webhook_id(storage: Storage) -> None:
    with WebhookReceiver(statuses=[500, 500, 500]) as hooks:
        hit_id = _store_with_hit(storage, hooks.url)
        clock = Clock(NOW)
        sender = WebhookSender(storage, build_webhook_client(5, "t"), 10, clock, random.Random(0))
        waits = []
        for _ in range(4):
            sender.tick()
            pending = storage.list_deliveries("pending")
            if pending:  # not due before its backoff: a tick now sends nothing
                assert pending[0].next_attempt_at is not None
                waits.append((pending[0].next_attempt_at - clock.now).total_seconds())
                assert sender.tick().delivered == 0 and len(hooks.received) == len(waits)
                clock.now = pending[0].next_attempt_at
        assert [s for _, _, s in hooks.received] == [500, 500, 500, 200]
        assert waits[0] < waits[1] < waits[2]  # exponential backoff between attempts
        ids = {h["webhook-id"] for h, _, _ in hooks.received}
        assert len(ids) == 1
        headers, body = hooks.delivered()[0]
        # The clock is fake (2025), so check the signature at that time, not today's.
        expected = sign([SECRET], headers["webhook-id"], int(headers["webhook-timestamp"]), body)
        assert headers["webhook-signature"] == expected
        payload = json.loads(body)
        assert payload["data"]["id"] == hit_id
        d = storage.list_deliveries("delivered")[0]
        assert d.attempts == 4


def test_410_disables_the_subscription_and_fails_the_delivery(storage: Storage) -> None:
    with WebhookReceiver(statuses=[410]) as hooks:
        _store_with_hit(storage, hooks.url)
        sender = WebhookSender(
            storage, build_webhook_client(5, "t"), 10, Clock(NOW), random.Random(0)
        )
        report = sender.tick()
        assert report.failed == 1
        sub = storage.list_subscriptions()[0]
        assert not sub.enabled and "410" in (sub.disabled_reason or "")
        assert storage.list_deliveries("failed")[0].last_http_status == 410


def test_dead_receiver_keeps_the_delivery_pending(storage: Storage) -> None:
    _store_with_hit(storage, "http://127.0.0.1:9/closed")  # discard port: connection refused
    sender = WebhookSender(storage, build_webhook_client(2, "t"), 10, Clock(NOW), random.Random(0))
    assert sender.tick().retried == 1
    pending = storage.list_deliveries("pending")
    assert len(pending) == 1 and pending[0].next_attempt_at > NOW  # type: ignore[operator]
    assert pending[0].last_error


def test_retry_after_is_honoured(storage: Storage) -> None:
    with WebhookReceiver(statuses=[429], headers={"Retry-After": "3600"}) as hooks:
        _store_with_hit(storage, hooks.url)
        sender = WebhookSender(
            storage, build_webhook_client(5, "t"), 10, Clock(NOW), random.Random(0)
        )
        sender.tick()
        d = storage.list_deliveries("pending")[0]
        assert d.next_attempt_at is not None
        assert d.next_attempt_at - NOW >= timedelta(seconds=3600)


@pytest.mark.parametrize("fmt", ["slack", "discord", "standard"])
def test_human_formats_stay_within_documented_limits(storage: Storage, fmt: str) -> None:
    hit_id = _store_with_hit(storage, "https://h.example/x")
    hit = storage.get_hit(hit_id)
    assert hit is not None
    doc = hit_payload(hit)
    doc["title"] = "T" * 1000
    doc["evidence"] = [
        {"sentence": "S" * 10000, "field": "text", "start": 0, "end": 1, "terms": []}
    ]
    body = json.loads(render(fmt, doc, NOW))
    if fmt == "slack":
        assert len(body["blocks"]) <= 50
        assert all(len(b["text"]["text"]) <= 3000 for b in body["blocks"])
        assert json.loads(slack_body(doc))["text"]
    elif fmt == "discord":
        embed = json.loads(discord_body(doc))["embeds"][0]
        assert len(embed["title"]) <= 256 and len(embed["description"]) <= 4096
    else:
        assert body["data"]["title"] == doc["title"]


@pytest.mark.parametrize(
    ("url", "slack", "discord"),
    [
        ("", "*Story 1*", "Story 1"),  # no link: the title alone
        ("javascript:alert(1)", "*Story 1*", "Story 1"),  # stored by an older release
        ("https://n.example/a|b>c", "*<https://n.example/a%7Cb%3Ec|Story 1>*", None),
        ("https://n.example/(a)", None, "[Story 1](https://n.example/(a%29)"),
    ],
)
def test_human_formats_link_only_what_can_be_linked(
    storage: Storage, url: str, slack: str | None, discord: str | None
) -> None:
    """An article may have no link (an entry without one, or one too long to keep):
    Slack showed ``<|title>`` and Discord refuses an embed whose url is not a URL, so the
    delivery failed at every attempt. Characters that end a link are percent-encoded."""
    hit = storage.get_hit(_store_with_hit(storage, "https://h.example/x"))
    assert hit is not None
    doc = hit_payload(hit) | {"url": url, "title": "Story 1"}
    section = json.loads(slack_body(doc))["blocks"][0]["text"]["text"]
    embed = json.loads(discord_body(doc))["embeds"][0]
    digest_slack = json.loads(render_digest("slack", "2025-01-23", [doc], NOW))
    digest_discord = json.loads(render_digest("discord", "2025-01-23", [doc], NOW))
    if slack is not None:
        assert section.splitlines()[0] == slack
        assert (
            digest_slack["blocks"][1]["text"]["text"]
            .splitlines()[1]
            .startswith("• " + slack.strip("*"))
        )
    if discord is not None:
        assert digest_discord["embeds"][0]["description"].startswith(discord)
    assert ("url" in embed) == url.startswith("https://")
