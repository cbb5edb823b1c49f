"""The HTTP API over a real SQLite storage (and PostgreSQL where set), served by uvicorn."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from sqlalchemy import text

from service.api import create_app
from service.storage import Storage, make_engine, migrate
from service.types import NewArticle
from tests.conftest import serve_app
from tests.fleet import scratch_database
from tests.test_storage import NOW, article, match, poll_update


@contextmanager
def TestClient(app: Any) -> Iterator[httpx.Client]:
    with serve_app(app) as base, httpx.Client(base_url=base, timeout=10) as client:
        yield client


def _fill(storage: Storage, n: int = 3) -> None:
    feed, _ = storage.add_feed("https://a.example/rss", NOW)
    for i in range(n):
        storage.record_poll(poll_update(feed.id), [NewArticle(article(i), match())], NOW)


def test_hits_list_get_csv_and_errors(storage: Storage) -> None:
    _fill(storage)
    with TestClient(create_app(storage)) as client:
        page = client.get("/api/v1/hits", params={"limit": 2}).json()
        assert [h["title"] for h in page["items"]] == ["Story 2", "Story 1"]
        rest = client.get("/api/v1/hits", params={"limit": 2, "cursor": page["next_cursor"]}).json()
        assert [h["title"] for h in rest["items"]] == ["Story 0"] and rest["next_cursor"] is None
        hit = page["items"][0]
        for key in (
            "id",
            "title",
            "url",
            "source",
            "published_at",
            "first_seen_at",
            "score",
            "topics",
            "event_type",
            "jurisdictions",
            "entities",
            "evidence",
            "ruleset_version",
            "articles",
        ):
            assert key in hit
        assert client.get(f"/api/v1/hits/{hit['id']}").json() == hit
        missing = client.get("/api/v1/hits/999")
        assert missing.status_code == 404 and missing.json() == {"error": "no hit 999"}
        csv = client.get("/api/v1/hits", headers={"Accept": "text/csv"})
        assert csv.headers["content-type"].startswith("text/csv")
        assert csv.text.splitlines()[0].startswith("id,first_seen_at")
        assert len(csv.text.splitlines()) == 4
        bad_since = client.get("/api/v1/hits", params={"since": "yesterday"})
        assert bad_since.status_code == 422 and bad_since.json()["error"].startswith("since:")
        too_many = client.get("/api/v1/hits", params={"limit": 501})
        assert too_many.status_code == 422 and too_many.json()["error"].startswith("limit:")


def test_feeds_health_and_deliveries(storage: Storage) -> None:
    _fill(storage, 1)
    with TestClient(create_app(storage)) as client:
        feeds = client.get("/api/v1/feeds").json()["items"]
        assert feeds[0]["url"] == "https://a.example/rss"
        assert feeds[0]["last_status"] == "ok" and feeds[0]["next_check_at"]
        assert client.get("/api/v1/deliveries", params={"status": "failed"}).json() == {"items": []}
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/readyz").status_code == 200
        assert "Story 0" in client.get("/").text


def test_token_guards_the_api_but_not_health(storage: Storage) -> None:
    with TestClient(create_app(storage, api_token="s3cret")) as client:
        denied = client.get("/api/v1/hits")
        assert denied.status_code == 401 and "error" in denied.json()
        assert "s3cret" not in denied.text
        assert (
            client.get("/api/v1/hits", headers={"Authorization": "Bearer wrong"}).status_code == 401
        )
        assert (
            client.get("/api/v1/hits", headers={"Authorization": "Bearer s3cret"}).status_code
            == 200
        )
        assert client.get("/healthz").status_code == 200


def test_readyz_reports_a_dead_scheduler(storage: Storage) -> None:
    with TestClient(create_app(storage, scheduler_alive=lambda: False)) as client:
        r = client.get("/readyz")
        assert r.status_code == 503 and r.json()["scheduler"] is False


def test_a_value_the_database_refuses_is_the_requests_error(pg_url: str) -> None:
    """PostgreSQL will not hold a NUL character or an integer past its range: a request
    carrying one gets 400 naming the value's fault, not 500 (before: the driver's error)."""
    with scratch_database(pg_url) as url:
        storage = Storage(make_engine(url))
        migrate(storage.engine)
        _fill(storage, 1)
        try:
            with TestClient(create_app(storage)) as client:
                for params in ({"source": "a\x00"}, {"event": "\x00"}, {"feed": 2**70}):
                    r = client.get("/api/v1/hits", params=params)
                    assert r.status_code == 400, (params, r.text)
                    assert r.json()["error"].startswith("the database refused a value: ")
                assert len(client.get("/api/v1/hits").json()["items"]) == 1
        finally:
            storage.close()


def test_a_failing_database_is_503_with_retry_after(storage: Storage) -> None:
    """A database that fails (here: its hits table gone) answers 503 with Retry-After and what
    failed, where the client can wait and try again (before: a bare 500)."""
    _fill(storage, 1)
    with TestClient(create_app(storage)) as client:
        with storage.engine.begin() as conn:
            conn.execute(text("ALTER TABLE hits RENAME TO hits_gone"))
        r = client.get("/api/v1/hits")
    assert r.status_code == 503 and r.headers["retry-after"] == "5"
    assert r.json()["error"].startswith("database error: ")
    assert r.json()["error"].endswith("the database is unavailable, try again shortly")


def test_digits_python_reads_but_int_refuses_are_not_ids(storage: Storage) -> None:
    """``"¹".isdigit()`` is true and ``int("¹")`` raises: a cursor or feed filter of such
    digits was a 500. A cursor is refused like any other unknown one; a feed filter names a
    feed by URL, and no feed has that URL."""
    _fill(storage, 1)
    with TestClient(create_app(storage)) as client:
        bad = client.get("/api/v1/hits", params={"cursor": "\u00b9"})
        assert bad.status_code == 422 and bad.json()["error"].startswith("cursor: ")
        none = client.get("/api/v1/hits", params={"feed": "\u00b9\u00b2"})
        assert none.status_code == 200 and none.json()["items"] == []
    assert storage.remove_feed("\u00b9") is None


def test_text_that_is_not_unicode_is_the_requests_error(storage: Storage) -> None:
    """JSON can escape a lone surrogate, which neither SQLite nor PostgreSQL stores: 422
    naming it, where it was a 500 (UnicodeEncodeError)."""
    app = create_app(storage, api_token="t", allow_private_addresses=True)
    with TestClient(app) as client:
        answer = client.post(
            "/api/v1/feeds",
            content=b'{"url": "https://127.0.0.1/feed.xml", "name": "x\\ud800"}',
            headers={"Authorization": "Bearer t", "Content-Type": "application/json"},
        )
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"] == (
        "the request holds text that is not valid Unicode (surrogates not allowed: "
        "'\\ud800'); send it as UTF-8 text"
    )
    assert storage.list_feeds() == []
