"""Hostile XML: entity expansion ("billion laughs", quadratic blowup) and external entities
(XXE) are refused before parsing, and are harmless even past that check; served by a real
server on 127.0.0.1 and polled end to end (issue 4)."""

from __future__ import annotations

import random
import resource
import time
from datetime import UTC, datetime

import pytest

import service.parse
from service.errors import ParseError
from service.fetch import Fetcher, build_client
from service.match import Matcher
from service.parse import parse_feed
from service.pipeline import Poller, PollSettings
from service.storage import Storage
from service.types import FetchStatus
from tests.conftest import RULES
from tests.servers import FeedServer

# A parse of these small documents takes milliseconds; generous bounds for slow machines.
MAX_SECONDS = 5.0
MAX_GROWTH_MB = 100


def billion_laughs(levels: int = 10) -> bytes:
    decls = ['<!ENTITY lol0 "lol">']
    decls += [f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, levels)]
    return (
        '<?xml version="1.0"?>\n<!DOCTYPE rss [\n' + "\n".join(decls) + "\n]>\n"
        '<rss version="2.0"><channel><title>t</title>'
        f"<item><title>&lol{levels - 1};</title><link>https://example.org/1</link></item>"
        "</channel></rss>"
    ).encode()


def quadratic_blowup() -> bytes:
    return (
        b'<?xml version="1.0"?>\n<!DOCTYPE rss [<!ENTITY a "'
        + b"A" * 100_000
        + b'">]>\n<rss version="2.0"><channel><title>t</title><item><title>x</title>'
        + b"<description>"
        + b"&a;" * 50_000
        + b"</description><link>https://example.org/1</link></item></channel></rss>"
    )


XXE = (
    b'<?xml version="1.0"?>\n<!DOCTYPE rss [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
    b'<rss version="2.0"><channel><title>t</title><item><title>&xxe;</title>'
    b"<description>&xxe;</description><link>https://example.org/1</link></item>"
    b"</channel></rss>"
)

HOSTILE = {
    "billion-laughs": billion_laughs(),
    "quadratic-blowup": quadratic_blowup(),
    "xxe": XXE,
    "xxe-utf16": XXE.decode().replace('"1.0"?', '"1.0" encoding="utf-16"?').encode("utf-16"),
}


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_documents_are_refused(name: str) -> None:
    with pytest.raises(ParseError, match="declares XML entities"):
        parse_feed(HOSTILE[name], {"content-type": "application/rss+xml"}, "https://e.org/f")


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_past_the_check_the_parser_stays_bounded(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Defence in depth: without our refusal, feedparser (dropping entity declarations)
    # and expat (amplification limits) still neither expand nor read a file.
    monkeypatch.setattr(service.parse, "ENTITY_DECLARATIONS", ())
    before, started = _rss_mb(), time.monotonic()
    parsed = parse_feed(HOSTILE[name], {}, "https://e.org/f")
    assert time.monotonic() - started < MAX_SECONDS
    assert _rss_mb() - before < MAX_GROWTH_MB
    for entry in parsed.entries:
        for text in (entry.title, entry.summary_html):
            assert "root:" not in text  # /etc/passwd was not read
            assert len(text) < 1_000_000  # nothing was expanded


def test_hostile_feed_polled_from_a_server_is_an_error_on_the_feed(storage: Storage) -> None:
    client = build_client("detainer-watch-test", 5, 5, 4)
    poller = Poller(
        storage,
        Fetcher(client, 10_000_000, 10),
        Matcher.load(RULES),
        PollSettings(interval_s=600, min_interval_s=60, max_interval_s=3600, concurrency=2),
        time_now,
        random.Random(0),
    )
    try:
        with FeedServer() as srv:
            for name, body in HOSTILE.items():
                srv.route(f"/{name}.xml", body=body)
                storage.add_feed(srv.url(f"/{name}.xml"), time_now())
            reports = poller.poll(storage.list_feeds())
    finally:
        client.close()
    assert len(reports) == len(HOSTILE)
    for report in reports:
        assert report.status is FetchStatus.ERROR and report.new_items == 0
        assert report.error is not None and "declares XML entities" in report.error


def time_now() -> datetime:
    return datetime.now(UTC)
