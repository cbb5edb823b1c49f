"""One story, however many outlets run it: syndicated copies served by real local feeds.

The seed story (Fox News, January 2025) is run as wire copy by several outlets under their
own headlines, URLs and boilerplate, across feeds and twice within one feed document. One
hit, one ``hit.created`` delivery per subscription, every sighting in the hit's
``articles``. A story about the same event written separately is a story of its own.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from xml.sax.saxutils import escape

import pytest

from service.config import WebhookConfig
from service.fetch import Fetcher, build_client
from service.match import Matcher
from service.pipeline import Poller, PollSettings
from service.storage import Storage
from service.types import HitQuery
from tests.conftest import RULES
from tests.seedfeed import SEED_URL, rss, seed_feed, seed_parts
from tests.servers import FeedServer

T0 = datetime(2025, 1, 23, 15, 0, tzinfo=UTC)
SECRET = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM="
COPYRIGHT = " Copyright 2025 The Associated Press. All rights reserved."

# The same event (Boston declined all 15 detainers in 2024), reported in other words.
SIBLING = {
    "title": "Boston police turned down every ICE detainer last year, commissioner tells council",
    "link": "https://boston-daily.example/2025/01/23/cox-letter-detainers",
    "description": "Commissioner Michael Cox told city councilors in a letter that the "
    "department declined each of the 15 immigration detainers federal agents lodged in "
    "2024, pointing to the city's Trust Act.",
    "content": "<p>Immigration advocates praised the sanctuary policy, while ICE officials said "
    "declining detainers lets dangerous people go free.</p><p>The council is expected to "
    "discuss the letter at a hearing next month.</p>",
}


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def poller(storage: Storage) -> Iterator[tuple[Poller, Clock]]:
    client = build_client("detainer-watch-test", 5, 5, 4)
    clock = Clock()
    p = Poller(
        storage,
        Fetcher(client, 1_000_000, 10),
        Matcher.load(RULES),
        PollSettings(interval_s=600, min_interval_s=60, max_interval_s=3600, concurrency=4),
        clock,
        random.Random(0),
    )
    yield p, clock
    client.close()


def copy(title: str, link: str, lead: str = "", tail: str = "", drop: int | None = None) -> dict:
    """The seed story as another outlet runs it: own headline and URL, optional dateline
    (``lead``), boilerplate (``tail``) and one sentence of the body left out (``drop``)."""
    _, summary, text = seed_parts()
    sentences = text.split(". ")
    if drop is not None:
        del sentences[drop]
    body = "".join(f"<p>{escape(s)}</p>" for s in sentences)
    return {
        "title": title,
        "link": link,
        "description": lead + summary,
        "content": body + (f"<p>{escape(tail)}</p>" if tail else ""),
    }


def test_wire_copies_across_outlets_make_one_hit_and_one_delivery_per_subscription(
    storage: Storage, poller: tuple[Poller, Clock]
) -> None:
    p, clock = poller
    storage.sync_config_webhooks(
        [
            WebhookConfig(url="https://hooks.example/newsroom", secret=SECRET),
            WebhookConfig(url="https://hooks.example/legal", secret=SECRET),
        ],
        T0,
    )
    wire_b = copy(
        "Boston rejected every ICE detainer request in 2024, police commissioner says",
        "https://herald.example/news/boston-detainers-2024/",
        lead="BOSTON (AP) — ",
        tail=COPYRIGHT,
    )
    wire_c = copy(
        "No ICE detainers honored in Boston last year",
        "https://globe.example/metro/no-detainers?utm_source=rss&outputType=amp",
        drop=2,
    )
    # One aggregator's document carries the story twice, under two headlines.
    twice = [
        copy("Boston turned away all 15 ICE detainer requests", "https://agg.example/a/1"),
        copy(
            "Report: Boston ignored ICE detainers",
            "https://agg.example/a/2",
            tail=COPYRIGHT,
        ),
    ]
    with FeedServer() as srv:
        srv.route("/fox.xml", body=seed_feed())
        srv.route("/herald.xml", body=rss([wire_b], title="Herald"))
        srv.route("/globe.xml", body=rss([wire_c], title="Globe"))
        srv.route("/aggregator.xml", body=rss(twice, title="Aggregator"))
        for path in ("/fox.xml", "/herald.xml", "/globe.xml", "/aggregator.xml"):
            storage.add_feed(srv.url(path), T0)
        reports = p.poll()
        assert sum(r.new_items for r in reports) == 5
        assert sum(r.hits for r in reports) == 1

        # A later copy on a new feed is a sighting of the same story, not a new alert.
        late = copy("Boston snubbed ICE 15 times, letter shows", "https://late.example/x")
        srv.route("/late.xml", body=rss([late], title="Late"))
        storage.add_feed(srv.url("/late.xml"), T0)
        clock.now += timedelta(hours=2)
        assert sum(r.hits for r in p.poll()) == 0

    hits, _ = storage.list_hits(HitQuery())
    assert len(hits) == 1
    assert {a.url for a in hits[0].articles} == {
        SEED_URL,
        "https://herald.example/news/boston-detainers-2024",
        "https://globe.example/metro/no-detainers",
        "https://agg.example/a/1",
        "https://agg.example/a/2",
        "https://late.example/x",
    }
    assert {a.source for a in hits[0].articles} >= {"Fox News US", "Herald", "Globe", "Late"}
    deliveries = storage.list_deliveries()
    assert len(deliveries) == 2
    assert {d.hit_id for d in deliveries} == {hits[0].id}
    assert len({d.subscription_id for d in deliveries}) == 2


def test_same_event_written_separately_is_another_story(
    storage: Storage, poller: tuple[Poller, Clock]
) -> None:
    p, _ = poller
    with FeedServer() as srv:
        srv.route("/fox.xml", body=seed_feed())
        srv.route("/daily.xml", body=rss([SIBLING], title="Boston Daily"))
        storage.add_feed(srv.url("/fox.xml"), T0)
        storage.add_feed(srv.url("/daily.xml"), T0)
        reports = p.poll()
    assert sum(r.hits for r in reports) == 2
    hits, _ = storage.list_hits(HitQuery())
    assert sorted(len(h.articles) for h in hits) == [1, 1]


def test_copies_in_one_document_are_matched_once(
    storage: Storage, poller: tuple[Poller, Clock], monkeypatch: pytest.MonkeyPatch
) -> None:
    p, _ = poller
    calls: list[str] = []
    real = p.matcher.classify

    def counting(title: str, summary: str = "", text: str = "") -> object:
        calls.append(title)
        return real(title, summary, text)

    monkeypatch.setattr(p.matcher, "classify", counting)
    items = [
        copy("Boston turned away all 15 ICE detainer requests", "https://agg.example/a/1"),
        copy("Report: Boston ignored ICE detainers", "https://agg.example/a/2", drop=3),
        SIBLING,
    ]
    with FeedServer() as srv:
        srv.route("/aggregator.xml", body=rss(items, title="Aggregator"))
        storage.add_feed(srv.url("/aggregator.xml"), T0)
        report = p.poll()[0]
    assert (report.new_items, report.hits) == (3, 2)
    assert calls == [items[0]["title"], SIBLING["title"]]
