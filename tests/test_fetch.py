"""service.fetch against a real HTTP server on 127.0.0.1 (tests/servers.py)."""

from __future__ import annotations

import gzip
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from service.decide import parse_retry_after
from service.fetch import DEFAULT_USER_AGENT, DRAIN_BYTES, Fetcher, build_client, parsed_url
from service.types import FeedForUpdate, FetchStatus
from tests.servers import FeedServer

RSS = b"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>T</title><link>http://example.com/</link>
<item><title>ICE detainer</title><link>http://example.com/a</link></item>
</channel></rss>"""

LAST_MODIFIED = "Wed, 01 Jan 2025 10:00:00 GMT"
NOW = datetime(2025, 1, 6, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer() as srv:
        yield srv


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    client = build_client(DEFAULT_USER_AGENT, 2.0, 2.0, 8)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def fetcher(client: httpx.Client) -> Fetcher:
    return Fetcher(client, max_bytes=100_000, total_timeout=5.0, clock=lambda: NOW)


def feed(url: str, **kwargs: object) -> FeedForUpdate:
    return FeedForUpdate(id=1, url=url, **kwargs)  # type: ignore[arg-type]


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_ok_then_not_modified_with_etag(server: FeedServer, fetcher: Fetcher) -> None:
    server.route(
        "/feed.xml", body=RSS, etag='"v1"', headers={"Content-Type": "application/rss+xml"}
    )
    first = fetcher.fetch(feed(server.url("/feed.xml")))
    assert first.status is FetchStatus.OK
    assert first.http_status == 200
    assert first.body == RSS
    assert first.etag == '"v1"'
    assert first.headers["content-type"] == "application/rss+xml"
    assert first.final_url == server.url("/feed.xml")
    assert first.error is None

    second = fetcher.fetch(feed(server.url("/feed.xml"), etag=first.etag))
    assert second.status is FetchStatus.NOT_MODIFIED
    assert second.http_status == 304
    assert second.body is None
    assert second.etag == '"v1"'

    (path1, headers1), (path2, headers2) = server.requests
    assert path1 == path2 == "/feed.xml"
    assert "if-none-match" not in headers1
    assert headers2["if-none-match"] == '"v1"'
    assert headers1["user-agent"] == DEFAULT_USER_AGENT
    assert server.count("/feed.xml", status=200) == 1
    assert server.count("/feed.xml", status=304) == 1


def test_changed_etag_gets_full_body(server: FeedServer, fetcher: Fetcher) -> None:
    server.route("/feed.xml", body=RSS, etag='"v2"')
    result = fetcher.fetch(feed(server.url("/feed.xml"), etag='"v1"'))
    assert result.status is FetchStatus.OK
    assert result.etag == '"v2"'


def test_not_modified_with_last_modified(server: FeedServer, fetcher: Fetcher) -> None:
    server.route("/feed.xml", body=RSS, last_modified=LAST_MODIFIED)
    first = fetcher.fetch(feed(server.url("/feed.xml")))
    assert first.status is FetchStatus.OK
    assert first.last_modified == LAST_MODIFIED

    second = fetcher.fetch(feed(server.url("/feed.xml"), last_modified=first.last_modified))
    assert second.status is FetchStatus.NOT_MODIFIED
    assert second.last_modified == LAST_MODIFIED
    assert server.requests[1][1]["if-modified-since"] == LAST_MODIFIED


@pytest.mark.parametrize(
    ("route", "answers"),
    [
        ({"body": RSS, "etag": '"v1"'}, (200, 304, 304)),
        ({"body": b"<html>" + b"x" * 10_000 + b"</html>", "status": 503}, (503, 503, 503)),
    ],
    ids=["not-modified", "small-error-page"],
)
def test_answers_without_a_body_we_use_keep_the_connection(
    server: FeedServer, fetcher: Fetcher, route: dict[str, Any], answers: tuple[int, ...]
) -> None:
    """A 304 (or an error page) is read to its end so its connection goes back to the
    pool: polls of an unchanged feed cost no new TCP connection each."""
    server.route("/feed.xml", **route)
    etag = None
    for status in answers:
        result = fetcher.fetch(feed(server.url("/feed.xml"), etag=etag))
        assert result.http_status == status
        etag = result.etag
    assert server.connections == 1


def test_a_big_error_page_is_not_read(server: FeedServer, fetcher: Fetcher) -> None:
    server.route("/feed.xml", body=b"x" * (DRAIN_BYTES * 4), status=500)
    for _ in range(2):
        assert fetcher.fetch(feed(server.url("/feed.xml"))).http_status == 500
    assert server.connections == 2  # dropped unread, not drained


def test_http_500_is_an_error_value(server: FeedServer, fetcher: Fetcher) -> None:
    server.route("/feed.xml", body=b"oops", status=500)
    result = fetcher.fetch(feed(server.url("/feed.xml")))
    assert result.status is FetchStatus.ERROR
    assert result.http_status == 500
    assert result.error == "HTTP 500 Internal Server Error"
    assert result.body is None
    assert result.retry_after_s is None


def test_unknown_path_is_404(server: FeedServer, fetcher: Fetcher) -> None:
    result = fetcher.fetch(feed(server.url("/missing.xml")))
    assert result.status is FetchStatus.ERROR
    assert result.http_status == 404
    assert result.error == "HTTP 404 Not Found"


def test_connection_refused(fetcher: Fetcher) -> None:
    result = fetcher.fetch(feed(f"http://127.0.0.1:{closed_port()}/feed.xml"))
    assert result.status is FetchStatus.ERROR
    assert result.http_status is None
    assert result.error is not None and result.error.startswith("could not connect")


def test_dropped_connection(server: FeedServer, fetcher: Fetcher) -> None:
    server.drop("/feed.xml")
    result = fetcher.fetch(feed(server.url("/feed.xml")))
    assert result.status is FetchStatus.ERROR
    assert result.http_status is None
    assert result.error is not None and "disconnected" in result.error
    assert server.count("/feed.xml") >= 1


def test_invalid_url(fetcher: Fetcher) -> None:
    result = fetcher.fetch(feed("ftp://127.0.0.1/feed.xml"))
    assert result.status is FetchStatus.ERROR
    assert result.error is not None and "unsupported URL scheme" in result.error


def test_unparseable_url_is_an_error_each_time(fetcher: Fetcher) -> None:
    """A URL httpx cannot parse is the feed's error, on every poll: the parsed-URL cache
    keeps only URLs that parse."""
    parsed_url.cache_clear()
    for _ in range(2):
        result = fetcher.fetch(feed("http://[::1/feed.xml"))
        assert result.status is FetchStatus.ERROR
        assert result.error is not None and result.error.startswith("invalid URL")
    assert parsed_url.cache_info().currsize == 0


def test_feed_urls_are_parsed_once(server: FeedServer, fetcher: Fetcher) -> None:
    """Each feed's URL is parsed for httpx once and kept for its later polls."""
    server.route("/feed.xml", body=RSS, headers={"Content-Type": "application/rss+xml"})
    url = server.url("/feed.xml")
    parsed_url.cache_clear()
    for _ in range(3):
        assert fetcher.fetch(feed(url)).status is FetchStatus.OK
    info = parsed_url.cache_info()
    assert (info.misses, info.hits) == (1, 2)
    assert parsed_url(url) == httpx.URL(url)


def test_body_over_max_bytes_by_content_length(server: FeedServer, client: httpx.Client) -> None:
    server.route("/big.xml", body=b"x" * 1000)
    result = Fetcher(client, max_bytes=100, total_timeout=5.0).fetch(feed(server.url("/big.xml")))
    assert result.status is FetchStatus.ERROR
    assert result.http_status == 200
    assert result.error is not None and result.error.startswith("body larger than 100 bytes")
    assert result.body is None


def test_body_over_max_bytes_while_streaming(server: FeedServer, client: httpx.Client) -> None:
    # 1 MB of zeros gzips to about 1 KB: only the streamed, decoded size shows the excess.
    compressed = gzip.compress(b"\0" * 1_000_000)
    server.route("/bomb.xml", body=compressed, headers={"Content-Encoding": "gzip"})
    fetcher = Fetcher(client, max_bytes=100_000, total_timeout=5.0)
    result = fetcher.fetch(feed(server.url("/bomb.xml")))
    assert len(compressed) < 100_000
    assert result.status is FetchStatus.ERROR
    assert result.error == "body larger than 100000 bytes"


def test_gzip_body_is_decoded(server: FeedServer, fetcher: Fetcher) -> None:
    server.route("/feed.xml", body=gzip.compress(RSS), headers={"Content-Encoding": "gzip"})
    result = fetcher.fetch(feed(server.url("/feed.xml")))
    assert result.status is FetchStatus.OK
    assert result.body == RSS


def test_429_with_retry_after_seconds(server: FeedServer, fetcher: Fetcher) -> None:
    server.route("/feed.xml", status=429, headers={"Retry-After": "120"})
    result = fetcher.fetch(feed(server.url("/feed.xml")))
    assert result.status is FetchStatus.ERROR
    assert result.http_status == 429
    assert result.error == "HTTP 429 Too Many Requests"
    assert result.retry_after_s == 120.0


def test_429_with_retry_after_http_date(server: FeedServer, fetcher: Fetcher) -> None:
    when = format_datetime(NOW + timedelta(minutes=5), usegmt=True)
    server.route("/feed.xml", status=429, headers={"Retry-After": when})
    result = fetcher.fetch(feed(server.url("/feed.xml")))
    assert result.retry_after_s == pytest.approx(300.0)


def test_503_with_retry_after(server: FeedServer, fetcher: Fetcher) -> None:
    server.route("/feed.xml", status=503, headers={"Retry-After": "30"})
    result = fetcher.fetch(feed(server.url("/feed.xml")))
    assert result.http_status == 503
    assert result.retry_after_s == 30.0


def test_retry_after_ignored_on_other_statuses(server: FeedServer, fetcher: Fetcher) -> None:
    server.route("/feed.xml", status=500, headers={"Retry-After": "30"})
    assert fetcher.fetch(feed(server.url("/feed.xml"))).retry_after_s is None


def test_redirect_followed_and_final_url_reported(server: FeedServer, fetcher: Fetcher) -> None:
    server.redirect("/old.xml", "/feed.xml", status=301)
    server.route("/feed.xml", body=RSS)
    result = fetcher.fetch(feed(server.url("/old.xml")))
    assert result.status is FetchStatus.OK
    assert result.body == RSS
    assert result.final_url == server.url("/feed.xml")
    assert server.count("/old.xml", status=301) == 1


def test_redirect_loop_is_an_error(server: FeedServer, fetcher: Fetcher) -> None:
    server.redirect("/a.xml", "/b.xml")
    server.redirect("/b.xml", "/a.xml")
    result = fetcher.fetch(feed(server.url("/a.xml")))
    assert result.status is FetchStatus.ERROR
    assert result.error is not None and "too many redirects" in result.error


def test_slow_server_times_out(server: FeedServer, client: httpx.Client) -> None:
    server.route("/slow.xml", body=RSS, delay_s=1.5)
    result = Fetcher(client, max_bytes=100_000, total_timeout=0.3).fetch(
        feed(server.url("/slow.xml"))
    )
    assert result.status is FetchStatus.ERROR
    assert result.error is not None and result.error.startswith("timed out")
    assert result.elapsed_s < 1.5


def test_shared_client_across_threads(server: FeedServer, fetcher: Fetcher) -> None:
    for n in range(8):
        server.route(f"/feed{n}.xml", body=RSS + str(n).encode(), etag=f'"{n}"')
    urls = [server.url(f"/feed{n % 8}.xml") for n in range(40)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda url: fetcher.fetch(feed(url)), urls))
    for url, result in zip(urls, results, strict=True):
        assert result.status is FetchStatus.OK
        assert result.final_url == url
        assert result.body is not None and result.body.endswith(url[-5].encode())
    assert len(server.requests) == 40


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 0 ", 0.0),
        ("Mon, 06 Jan 2025 12:01:00 GMT", 60.0),
        ("Mon, 06 Jan 2025 11:00:00 GMT", 0.0),  # in the past
        ("soon", None),
        ("-5", None),
        ("", None),
        (None, None),
        ("\u00b9", None),  # str.isdigit() is true, float() raised (a Latin-1 byte 0xB9)
        ("\u0663", None),  # an Arabic-Indic 3: HTTP's digits are ASCII
        ("9" * 400, None),  # float() gives inf
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected
