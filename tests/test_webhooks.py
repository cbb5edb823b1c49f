"""Subscriptions, routing, ordering, rotation, digests and the webhook API."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from service.alerts.digest import latest_period
from service.alerts.payload import render_digest
from service.alerts.sender import WebhookSender, build_webhook_client
from service.alerts.subscription import parse_webhook
from service.api import create_app
from service.config import WebhookConfig
from service.errors import ConfigError
from service.storage import Storage
from service.types import Jurisdiction, MatchResult, NewArticle
from tests.conftest import free_port, serve_app
from tests.receiver import WebhookReceiver
from tests.test_api_feeds import fake_resolver
from tests.test_storage import NOW, SECRET, article, match, poll_update

OTHER = "whsec_YW5vdGhlci1zZWNyZXQtZm9yLXJvdGF0aW9u"


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def sender(storage: Storage, clock: Clock, **kw: object) -> WebhookSender:
    return WebhookSender(storage, build_webhook_client(2, "t"), 30, clock, random.Random(0), **kw)  # type: ignore[arg-type]


def hit_in(state: str, place: str, event: str, topics: tuple[str, ...]) -> MatchResult:
    return MatchResult(
        flagged=True,
        score=0.8,
        topics=topics,
        event_type=event,
        jurisdictions=(Jurisdiction(place, "city", state),),
        entities=(),
        evidence=(),
        ruleset_version="t",
    )


def test_filters_route_hits_to_the_right_subscriptions(storage: Storage) -> None:
    hooks = [
        WebhookConfig(url="https://h.example/ma", secret=SECRET, states=("MA",)),
        WebhookConfig(url="https://h.example/287g", secret=SECRET, events=("287g_signed",)),
        WebhookConfig(
            url="https://h.example/chicago", secret=SECRET, jurisdictions=("Chicago, IL",)
        ),
        WebhookConfig(
            url="https://h.example/feed-b", secret=SECRET, feeds=("https://b.example/rss",)
        ),
        WebhookConfig(url="https://h.example/digest", secret=SECRET, digest="daily"),
    ]
    storage.sync_config_webhooks(hooks, NOW)
    a, _ = storage.add_feed("https://a.example/rss", NOW)
    b, _ = storage.add_feed("https://b.example/rss", NOW)
    storage.record_poll(
        poll_update(a.id),
        [
            NewArticle(article(1), hit_in("MA", "Boston", "detainer_declined", ("detainer",))),
            NewArticle(article(2), hit_in("TX", "Houston", "287g_signed", ("287g",))),
            NewArticle(article(3), hit_in("IL", "Chicago", "policy_adopted", ("sanctuary",))),
        ],
        NOW,
    )
    storage.record_poll(
        poll_update(b.id),
        [NewArticle(article(4), hit_in("CA", "Fresno", "lawsuit_or_ruling", ("sanctuary",)))],
        NOW,
    )
    subs = {s.id: s.url.rsplit("/", 1)[1] for s in storage.list_subscriptions()}
    routed = sorted((subs[d.subscription_id], d.hit_id) for d in storage.list_deliveries())
    assert routed == [("287g", 2), ("chicago", 3), ("feed-b", 4), ("ma", 1)]


def test_receiver_down_then_back_gets_everything_in_order(storage: Storage) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"
    storage.sync_config_webhooks([WebhookConfig(url=url, secret=SECRET)], NOW)
    feed, _ = storage.add_feed("https://a.example/rss", NOW)
    for n in range(5):
        storage.record_poll(poll_update(feed.id), [NewArticle(article(n), match())], NOW)
    clock = Clock(NOW)
    s = sender(storage, clock)
    for _ in range(3):  # the port is closed: one attempt a tick, the rest wait in order
        report = s.tick()
        assert report.retried == 1 and report.delivered == 0
        clock.now += timedelta(hours=7)
    rec = WebhookReceiver(port=port)
    with rec:
        clock.now += timedelta(hours=7)
        report = s.tick()
    assert report.delivered == 5
    ids = [json.loads(body)["data"]["id"] for _, body in rec.delivered()]
    assert ids == sorted(ids) and len(ids) == 5
    assert {d.status for d in storage.list_deliveries()} == {"delivered"}


def test_gives_up_after_the_retry_span(storage: Storage) -> None:
    storage.sync_config_webhooks([WebhookConfig(url="http://127.0.0.1:9/x", secret=SECRET)], NOW)
    feed, _ = storage.add_feed("https://a.example/rss", NOW)
    storage.record_poll(poll_update(feed.id), [NewArticle(article(1), match())], NOW)
    clock = Clock(NOW)
    s = sender(storage, clock, retry_span_s=3 * 86400)
    for _ in range(40):
        s.tick()
        clock.now += timedelta(hours=6, minutes=30)
    failed = storage.list_deliveries("failed")
    assert len(failed) == 1 and 5 <= failed[0].attempts <= 30


def test_secret_rotation_signs_with_both_secrets(storage: Storage) -> None:
    hook = parse_webhook(
        {"url": "http://127.0.0.1/x", "secret": [SECRET, OTHER]}, "f", "w", {}, True
    )
    assert hook.secrets == (SECRET, OTHER)
    with WebhookReceiver() as rec:
        storage.sync_config_webhooks([WebhookConfig(url=rec.url, secret=hook.secret)], NOW)
        feed, _ = storage.add_feed("https://a.example/rss", NOW)
        storage.record_poll(poll_update(feed.id), [NewArticle(article(1), match())], NOW)
        now = datetime.now(UTC)
        sender(storage, Clock(now)).tick()
        headers, body = rec.delivered()[0]
    assert len(headers["webhook-signature"].split()) == 2
    for secret in (SECRET, OTHER):
        assert Webhook(secret).verify(body, headers)["type"] == "hit.created"


@pytest.mark.parametrize(
    ("item", "key"),
    [
        ({"url": "https://h.example/x", "secret": SECRET, "digest": "hourly"}, "w.digest"),
        ({"url": "https://h.example/x", "secret": SECRET, "digest_hour": 24}, "w.digest_hour"),
        (
            {"url": "https://h.example/x", "secret": SECRET, "digest_timezone": "Mars/Base"},
            "w.digest_timezone",
        ),
        ({"url": "https://h.example/x", "secret": SECRET, "topics": ["ice"]}, "w.topics"),
        ({"url": "https://h.example/x", "secret": [SECRET, "bad"]}, "w.secret"),
        ({"url": "http://10.0.0.5/x", "secret": SECRET}, "w.url"),
        ({"url": "http://[::1/x", "secret": SECRET}, "w.url"),  # urlsplit raised
        ({"url": "https://h.example/" + "x" * 2_100, "secret": SECRET}, "w.url"),
    ],
)
def test_bad_subscriptions_are_refused_with_the_key(item: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_webhook(item, "f", "w", {}, False)
    assert err.value.key == key


def test_digest_periods() -> None:
    now = datetime(2025, 1, 23, 14, 30, tzinfo=UTC)  # 09:30 in New York
    p = latest_period(now, "daily", 8, "America/New_York")
    assert p.label == "2025-01-23"
    assert p.end == datetime(2025, 1, 23, 13, 0, tzinfo=UTC)
    assert p.end - p.start == timedelta(days=1)
    early = latest_period(datetime(2025, 1, 23, 12, 0, tzinfo=UTC), "daily", 8, "America/New_York")
    assert early.label == "2025-01-22"
    week = latest_period(now, "weekly", 8, "UTC")
    assert week.label == "2025-W04" and week.end.weekday() == 0


def test_daily_digest_is_sent_once_and_skipped_when_empty(storage: Storage) -> None:
    with WebhookReceiver() as rec:
        storage.sync_config_webhooks(
            [WebhookConfig(url=rec.url, secret=SECRET, digest="daily", digest_hour=8)], NOW
        )
        feed, _ = storage.add_feed("https://a.example/rss", NOW)
        day = datetime(2025, 1, 23, 20, 0, tzinfo=UTC)
        storage.record_poll(
            poll_update(feed.id),
            [
                NewArticle(article(1), hit_in("MA", "Boston", "detainer_declined", ("detainer",))),
                NewArticle(
                    article(2), hit_in("MA", "Worcester", "detainer_declined", ("detainer",))
                ),
            ],
            day,
        )
        clock = Clock(day + timedelta(hours=13))  # 09:00 UTC the next day: the period ended
        s = sender(storage, clock)
        assert s.tick().delivered == 1
        assert s.tick().delivered == 0  # once per period
        clock.now += timedelta(days=1)  # the next period has no hits: nothing is sent
        assert s.tick().delivered == 0
        body = json.loads(rec.delivered()[0][1])
    assert body["type"] == "digest.created" and body["data"]["count"] == 2
    assert body["data"]["groups"][0]["event_type"] == "detainer_declined"
    assert body["data"]["groups"][0]["state"] == "MA"
    assert storage.list_deliveries("skipped")[0].digest_period == "2025-01-25"
    assert storage.list_deliveries("delivered")[0].digest_period == "2025-01-24"


def test_digest_formats_stay_within_limits() -> None:
    hits = [
        {
            "id": i,
            "title": "T" * 400,
            "url": f"https://x.example/{i}",
            "source": "S",
            "event_type": f"event_{i % 70}",
            "jurisdictions": [{"state": "MA"}],
            "score": 1.0,
        }
        for i in range(300)
    ]
    slack = json.loads(render_digest("slack", "2025-01-23", hits, NOW))
    assert len(slack["blocks"]) <= 50
    assert all(len(b["text"]["text"]) <= 3000 for b in slack["blocks"])
    discord = json.loads(render_digest("discord", "2025-01-23", hits, NOW))
    assert len(discord["embeds"]) <= 10
    assert all(len(e["description"]) <= 4096 for e in discord["embeds"])


def test_webhook_api_needs_the_token_and_never_shows_secrets(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    feed, _ = storage.add_feed("https://a.example/rss", NOW)
    hit_id = storage.record_poll(poll_update(feed.id), [NewArticle(article(1), match())], NOW)[0]
    body = {"url": "https://hooks.example/new", "secret": SECRET, "topics": ["detainer"]}
    with serve_app(create_app(storage)) as base:
        r = httpx.post(f"{base}/api/v1/webhooks", json=body)
        assert r.status_code == 403 and "DW_API_TOKEN" in r.json()["error"]
    auth = {"Authorization": "Bearer tok"}
    # hooks.example is a public address here, from a table: no test asks the real resolver.
    public = fake_resolver({"hooks.example": ["93.184.216.34"]})
    with serve_app(create_app(storage, api_token="tok", resolve=public)) as base:
        assert httpx.post(f"{base}/api/v1/webhooks", json=body).status_code == 401
        created = httpx.post(f"{base}/api/v1/webhooks", json=body, headers=auth)
        assert created.status_code == 201, created.text
        sub = created.json()
        assert SECRET not in created.text and sub["secrets"] == 1
        assert httpx.post(f"{base}/api/v1/webhooks", json=body, headers=auth).status_code == 409
        bad = httpx.post(
            f"{base}/api/v1/webhooks", json={**body, "url": "http://127.0.0.1/x"}, headers=auth
        )
        assert bad.status_code == 422 and "allow_private_addresses" in bad.json()["error"]
        listed = httpx.get(f"{base}/api/v1/webhooks", headers=auth)
        assert SECRET not in listed.text and listed.json()["items"][0]["id"] == sub["id"]
        redo = httpx.post(f"{base}/api/v1/hits/{hit_id}/redeliver", headers=auth).json()
        assert [d["hit_id"] for d in redo["items"]] == [hit_id]
        d_id = redo["items"][0]["id"]
        storage.mark_attempt_failed(d_id, "HTTP 500", 500, None)
        failed = httpx.get(
            f"{base}/api/v1/deliveries", params={"status": "failed"}, headers=auth
        ).json()["items"]
        assert [d["id"] for d in failed] == [d_id]
        retried = httpx.post(f"{base}/api/v1/deliveries/{d_id}/retry", headers=auth).json()
        assert retried["status"] == "pending" and retried["webhook_id"] == failed[0]["webhook_id"]
        assert httpx.delete(f"{base}/api/v1/webhooks/{sub['id']}", headers=auth).status_code == 204
        assert httpx.get(f"{base}/api/v1/webhooks", headers=auth).json()["items"] == []
        assert httpx.post(f"{base}/api/v1/deliveries/999/retry", headers=auth).status_code == 404


def test_webhook_names_resolving_to_inside_addresses_are_refused(storage: Storage) -> None:
    from fastapi import FastAPI

    from service.api.auth import token_checks
    from service.api.webhooks import add_webhook_routes

    def resolve(host: str, port: int | None) -> list[tuple[object, ...]]:
        table = {"inside.example": "10.1.2.3", "outside.example": "93.184.216.34"}
        if host not in table:
            raise OSError("unknown host")
        return [(2, 1, 6, "", (table[host], port or 443))]

    app = FastAPI()
    read, write = token_checks("tok")
    add_webhook_routes(app, storage, read, write, False, lambda: NOW, resolve)
    auth = {"Authorization": "Bearer tok"}
    with serve_app(app) as base:
        inside = httpx.post(
            f"{base}/api/v1/webhooks",
            headers=auth,
            json={"url": "https://inside.example/hook", "secret": SECRET},
        )
        assert inside.status_code == 422 and "10.1.2.3" in inside.text
        outside = httpx.post(
            f"{base}/api/v1/webhooks",
            headers=auth,
            json={"url": "https://outside.example/hook", "secret": SECRET},
        )
        assert outside.status_code == 201
        unknown = httpx.post(
            f"{base}/api/v1/webhooks",
            headers=auth,
            json={"url": "https://not-yet.example/hook", "secret": SECRET},
        )
        assert unknown.status_code == 201


def test_a_receivers_error_body_with_control_characters_is_recorded(store: Storage) -> None:
    """A receiver's error body goes into the delivery's last error: its NUL (which
    PostgreSQL refuses, so the attempt was never recorded and the delivery was sent again
    at every tick) and escape sequences are shown as U+FFFD."""
    with WebhookReceiver(default_status=500, answer=b"bad\x00gate\x1b[2Jway") as rec:
        store.sync_config_webhooks([WebhookConfig(url=rec.url, secret=SECRET)], NOW)
        feed, _ = store.add_feed("https://a.example/rss", NOW)
        store.record_poll(poll_update(feed.id), [NewArticle(article(1), match())], NOW)
        clock = Clock(NOW)
        s = sender(store, clock)
        for _ in range(2):
            assert s.tick().retried == 1
            clock.now += timedelta(hours=1)
    (delivery,) = store.list_deliveries()
    assert delivery.attempts == 2
    assert delivery.last_error == "HTTP 500: bad\ufffdgate\ufffd[2Jway"
