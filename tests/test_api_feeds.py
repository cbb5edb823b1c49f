"""POST/DELETE /api/v1/feeds with the SSRF check, and feed health in GET /api/v1/feeds
(real uvicorn on 127.0.0.1, real SQLite) (issue 4)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from service.addresses import private_address_reason
from service.api import create_app
from service.storage import Storage
from service.types import FeedUpdate, FetchStatus
from tests.conftest import serve_app

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NOW = datetime(2025, 1, 23, 15, 0, tzinfo=UTC)


@contextmanager
def api(storage: Storage, allow_private: bool = False) -> Iterator[httpx.Client]:
    app = create_app(storage, TOKEN, allow_private_addresses=allow_private, clock=lambda: NOW)
    with serve_app(app) as base, httpx.Client(base_url=base, timeout=10) as client:
        yield client


def test_add_list_conflict_and_delete(storage: Storage) -> None:
    with api(storage, allow_private=True) as client:
        body = {"url": "http://127.0.0.1:9/feed.xml", "name": "Local", "interval": "20m"}
        created = client.post("/api/v1/feeds", json=body, headers=AUTH)
        assert created.status_code == 201, created.text
        feed = created.json()
        assert feed["url"] == body["url"] and feed["name"] == "Local"
        assert feed["interval_s"] == 1200 and feed["enabled"] is True
        assert feed["origin"] == "user" and feed["next_check_at"] == "2025-01-23T15:00:00Z"

        again = client.post("/api/v1/feeds", json=body, headers=AUTH)
        assert again.status_code == 409 and f"feed {feed['id']}" in again.json()["error"]
        # The same feed spelled otherwise (scheme and host case, default port): still 409.
        spelled = client.post(
            "/api/v1/feeds", json={"url": "HTTP://127.0.0.1:9/feed.xml#x"}, headers=AUTH
        )
        assert spelled.status_code == 409 and f"feed {feed['id']}" in spelled.json()["error"]

        listed = client.get("/api/v1/feeds", headers=AUTH).json()["items"]
        assert [f["id"] for f in listed] == [feed["id"]]

        gone = client.delete(f"/api/v1/feeds/{feed['id']}", headers=AUTH)
        assert gone.status_code == 200 and gone.json()["removed"]["id"] == feed["id"]
        assert client.get("/api/v1/feeds", headers=AUTH).json()["items"] == []
        assert client.delete("/api/v1/feeds/999", headers=AUTH).status_code == 404

        # Adding it again brings the removed feed back.
        back = client.post("/api/v1/feeds", json=body, headers=AUTH)
        assert back.status_code == 201 and back.json()["id"] == feed["id"]


def test_one_feed_by_id_with_its_health(storage: Storage) -> None:
    with api(storage, allow_private=True) as client:
        feed = client.post(
            "/api/v1/feeds", json={"url": "http://127.0.0.1:9/one.xml"}, headers=AUTH
        ).json()
        one = client.get(f"/api/v1/feeds/{feed['id']}", headers=AUTH)
        assert one.status_code == 200 and one.json() == feed
        assert [one.json()] == client.get("/api/v1/feeds", headers=AUTH).json()["items"]
        assert client.get(f"/api/v1/feeds/{feed['id']}").status_code == 401  # reads too
        # A removed feed is gone from the list but can still be looked up, with the reason.
        client.delete(f"/api/v1/feeds/{feed['id']}", headers=AUTH)
        gone = client.get(f"/api/v1/feeds/{feed['id']}", headers=AUTH).json()
        assert gone["enabled"] is False and gone["disabled_reason"] == "removed"
        missing = client.get("/api/v1/feeds/999", headers=AUTH)
        assert missing.status_code == 404 and missing.json() == {"error": "no feed 999"}


def test_unknown_paths_and_methods_answer_in_the_error_shape(storage: Storage) -> None:
    """The router's own 404 and 405 said {"detail": ...}; every other error says
    {"error": ...}."""
    with api(storage) as client:
        nowhere = client.get("/api/v1/nowhere", headers=AUTH)
        assert nowhere.status_code == 404 and nowhere.json() == {"error": "Not Found"}
        put = client.put("/api/v1/feeds", headers=AUTH)
        assert put.status_code == 405 and put.json() == {"error": "Method Not Allowed"}
        assert put.headers["allow"]  # the methods the path takes, as before


def test_writes_need_the_token(storage: Storage) -> None:
    with api(storage, allow_private=True) as client:
        body = {"url": "http://127.0.0.1:9/feed.xml"}
        assert client.post("/api/v1/feeds", json=body).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert client.post("/api/v1/feeds", json=body, headers=wrong).status_code == 401
        assert client.delete("/api/v1/feeds/1").status_code == 401
    assert storage.list_feeds() == []


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/feed.xml",
        "http://localhost/feed.xml",
        "http://10.1.2.3/rss",
        "http://192.168.0.1/rss",
        "http://169.254.169.254/latest/meta-data/",  # cloud metadata
        "http://[::1]/feed",
        "http://[::ffff:127.0.0.1]/feed",
        "http://0.0.0.0/feed",
    ],
)
def test_private_addresses_are_refused(storage: Storage, url: str) -> None:
    with api(storage) as client:
        answer = client.post("/api/v1/feeds", json={"url": url}, headers=AUTH)
    assert answer.status_code == 422
    assert "allow_private_addresses" in answer.json()["error"]
    assert storage.list_feeds() == []


@pytest.mark.parametrize(
    "body",
    [
        {"url": "ftp://example.org/feed"},
        {"url": "not a url"},
        {"url": 42},
        {"name": "no url"},
        {"url": "https://example.org/feed", "interval": "soon"},
        {"url": "https://example.org/feed", "colour": "red"},
    ],
)
def test_bad_bodies_are_422(storage: Storage, body: dict[str, Any]) -> None:
    with api(storage) as client:
        answer = client.post("/api/v1/feeds", json=body, headers=AUTH)
    assert answer.status_code == 422, answer.text


@pytest.mark.parametrize(
    "url",
    [
        "https://example.org/" + "x" * 2_029,  # 2,049 bytes
        "https://example.org/" + "\u00e9" * 1_015,  # 1,035 characters, 2,050 bytes
    ],
)
def test_urls_too_long_to_store_are_422(storage: Storage, url: str) -> None:
    """Feed URLs are indexed, and PostgreSQL holds at most 2,704 bytes an index entry."""
    with api(storage) as client:
        answer = client.post("/api/v1/feeds", json={"url": url}, headers=AUTH)
    assert answer.status_code == 422
    assert answer.json()["error"] == (
        "url must be a string of at most 2048 characters (bytes in UTF-8)"
    )


@pytest.mark.parametrize(
    "url", ["ftp://example.org/feed", "http://[::1/feed", "https://e.org:99999/f"]
)
def test_what_is_not_an_http_url_is_422_saying_so(storage: Storage, url: str) -> None:
    """urlsplit raises on the last two; the answer is the same as for any other non-URL."""
    with api(storage) as client:
        answer = client.post("/api/v1/feeds", json={"url": url}, headers=AUTH)
    assert answer.status_code == 422
    assert answer.json()["error"] == f"{url!r} is not an http(s) URL; give the feed's full URL"


def test_feed_health_shows_why_a_feed_is_disabled(storage: Storage) -> None:
    feed, _ = storage.add_feed("https://gone.example/rss", NOW)
    storage.update_feed(
        FeedUpdate(
            feed_id=feed.id,
            checked_at=NOW,
            status=FetchStatus.ERROR,
            http_status=410,
            error="HTTP 410 Gone",
            error_count=1,
            next_check_at=NOW + timedelta(hours=1),
            failing_since=NOW,
            disabled_reason="410 Gone: the server says this feed was removed for good",
        )
    )
    with api(storage) as client:
        [item] = client.get("/api/v1/feeds", headers=AUTH).json()["items"]
    assert item["enabled"] is False
    assert item["disabled_reason"].startswith("410 Gone")
    assert item["disabled_at"] == "2025-01-23T15:00:00Z"
    assert item["next_check_at"] is None and item["last_http_status"] == 410


# ------------------------------------------------------------ name resolution (pure seam)


def fake_resolver(table: dict[str, list[str]]) -> Any:
    def resolve(host: str, port: int | None) -> list[tuple[Any, ...]]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port or 80)) for ip in table[host]]

    return resolve


def test_names_resolving_to_private_addresses_are_refused() -> None:
    resolve = fake_resolver(
        {
            "news.example": ["93.184.216.34"],
            "intranet.example": ["10.0.0.7"],
            "mixed.example": ["93.184.216.34", "127.0.0.1"],
            "v6.example": ["fe80::1%eth0"],
        }
    )
    assert private_address_reason("https://news.example/rss", resolve) is None
    reason = private_address_reason("https://intranet.example/rss", resolve)
    assert reason == "intranet.example resolves to the non-public address 10.0.0.7"
    assert "127.0.0.1" in (private_address_reason("http://mixed.example/", resolve) or "")
    assert "fe80::1" in (private_address_reason("http://v6.example/", resolve) or "")
    assert "does not resolve" in (private_address_reason("http://nx.example/", resolve) or "")
    assert private_address_reason("https://93.184.216.34/rss", resolve) is None


def test_a_bad_interval_is_refused_before_the_host_is_looked_up(storage: Storage) -> None:
    asked: list[str] = []

    def resolve(host: str, port: int | None) -> list[tuple[Any, ...]]:
        asked.append(host)
        return fake_resolver({host: ["93.184.216.34"]})(host, port)

    app = create_app(storage, TOKEN, clock=lambda: NOW, resolve=resolve)
    with serve_app(app) as base, httpx.Client(base_url=base, timeout=10) as client:
        body = {"url": "https://news.example/feed", "interval": "soon"}
        refused = client.post("/api/v1/feeds", json=body, headers=AUTH)
        assert refused.status_code == 422 and "invalid duration 'soon'" in refused.json()["error"]
        assert asked == []
        body["interval"] = "20m"
        assert client.post("/api/v1/feeds", json=body, headers=AUTH).status_code == 201
        assert asked == ["news.example"]  # the resolver given to create_app is the one used
