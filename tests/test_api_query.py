"""The query side of the HTTP API: filters, sorts, cursors, search, exports, stats, metrics."""

from __future__ import annotations

import csv
import io
import json
import tracemalloc
from dataclasses import replace
from datetime import timedelta

import pytest

from service.api import create_app
from service.api.hits import hits_csv
from service.metrics import ServiceMetrics
from service.storage import Storage
from service.types import Article, FetchStatus, HitQuery, Jurisdiction, NewArticle, PollReport
from tests.test_api import TestClient
from tests.test_storage import NOW, match, poll_update


def _article(n: int, words: str = "") -> Article:
    return Article(
        url=f"https://news.example/{n}",
        guid=f"g{n}",
        title=f"Story {n} {words}".strip(),
        summary=f"Sheriff number {n} answered a detainer. {words}",
        # Distinct words, so near-duplicate grouping keeps every article its own story.
        text=" ".join(f"t{n}w{i}" for i in range(60)),
        published_at=NOW - timedelta(hours=n),
        source="Globe" if n % 2 else "Herald",
        content_hash=f"h{n}",
    )


def fill(storage: Storage, n: int) -> None:
    feed, _ = storage.add_feed("https://a.example/rss", NOW)
    items = [
        NewArticle(
            _article(i, "sanctuary vote" if i % 3 == 0 else ""),
            replace(
                match(0.5 + (i % 5) / 10, ("sanctuary",) if i % 3 == 0 else ("detainer",)),
                jurisdictions=(
                    Jurisdiction("Boston" if i % 2 else "Chicago", "city", "MA" if i % 2 else "IL"),
                ),
            ),
        )
        for i in range(n)
    ]
    for start in range(0, n, 500):
        storage.record_poll(poll_update(feed.id), items[start : start + 500], NOW)


def test_sort_cursor_and_filters(storage: Storage) -> None:
    fill(storage, 12)
    with TestClient(create_app(storage)) as client:
        seen: list[int] = []
        params: dict[str, str | int] = {"sort": "score", "limit": 5}
        while True:
            page = client.get("/api/v1/hits", params=params).json()
            seen += [h["id"] for h in page["items"]]
            if page["next_cursor"] is None:
                break
            assert isinstance(page["next_cursor"], str)
            params["cursor"] = page["next_cursor"]
        assert len(seen) == len(set(seen)) == 12
        first = client.get("/api/v1/hits", params={"limit": 1}).json()["items"][0]["id"]
        older = client.get("/api/v1/hits", params={"cursor": first, "limit": 500}).json()
        assert [h["id"] for h in older["items"]] == list(range(first - 1, 0, -1))  # int cursor
        globe = client.get("/api/v1/hits", params={"source": "globe", "state": "MA"}).json()
        assert {h["source"] for h in globe["items"]} == {"Globe"} and len(globe["items"]) == 6
        found = client.get("/api/v1/hits", params={"q": '"sanctuary vote" NOT "story 9"'}).json()
        assert [h["title"] for h in found["items"]] == [
            f"Story {n} sanctuary vote" for n in (6, 3, 0)
        ]
        found = client.get("/api/v1/hits", params={"q": "sanctuary vote"}).json()["items"]
        assert len(found) == 4 and all("<mark>" in h["snippet"] for h in found)
        assert "snippet" not in client.get("/api/v1/hits").json()["items"][0]
        # Event types match in any case, with hyphens or spaces for underscores, as topics,
        # places and outlets do.
        events = [
            client.get("/api/v1/hits", params={"event": e, "limit": 500}).json()["items"]
            for e in ("detainer_declined", "Detainer-Declined", " detainer declined ")
        ]
        assert len(events[0]) == 12 and events[1] == events[2] == events[0]


@pytest.mark.parametrize(
    ("params", "status", "names"),
    [
        ({"limit": 501}, 422, "limit:"),
        ({"limit": 0}, 422, "limit:"),
        ({"sort": "random"}, 422, "sort:"),
        ({"format": "xml"}, 422, "format:"),
        ({"min_score": 2}, 422, "min_score:"),
        ({"state": "Massachusetts"}, 422, "state:"),
        ({"until": "soon"}, 422, "until:"),
        ({"cursor": "not-a-cursor"}, 422, "cursor:"),
        ({"cursor": "12", "sort": "score"}, 422, "cursor:"),
        ({"q": '"unclosed'}, 400, "q:"),
        ({"q": "NOT texas", "format": "csv"}, 400, "q:"),
        ({"topic": "ice"}, 422, "topic: unknown topic 'ice'; use detainer, sanctuary, 287g"),
        ({"topic": "287", "format": "csv"}, 422, "topic:"),
    ],
)
def test_bad_parameters_are_named(
    storage: Storage, params: dict[str, object], status: int, names: str
) -> None:
    with TestClient(create_app(storage)) as client:
        r = client.get("/api/v1/hits", params=params)  # type: ignore[arg-type]
        assert r.status_code == status and r.json()["error"].startswith(names), r.text
        if "q" in params or "topic" in params:
            s = client.get("/api/v1/stats", params=params)  # type: ignore[arg-type]
            assert s.status_code == status


def test_exports_stream_every_matching_row(storage: Storage) -> None:
    fill(storage, 620)
    with TestClient(create_app(storage)) as client:
        body = client.get("/api/v1/hits", headers={"Accept": "text/csv"}).text
        rows = list(csv.reader(io.StringIO(body)))
        assert rows[0][0] == "id" and len(rows) == 621  # no page limit when exporting
        assert [int(r[0]) for r in rows[1:]] == list(range(620, 0, -1))
        lines = client.get("/api/v1/hits", params={"format": "jsonl", "topic": "sanctuary"}).text
        hits = [json.loads(line) for line in lines.splitlines()]
        assert len(hits) == 207 and all(h["topics"] == ["sanctuary"] for h in hits)
        upper = client.get("/api/v1/hits", params={"format": "jsonl", "topic": " Sanctuary"})
        assert upper.text == lines  # topics in any case
        capped = client.get("/api/v1/hits", params={"format": "csv", "limit": 10, "sort": "score"})
        assert capped.headers["content-type"].startswith("text/csv")
        assert len(capped.text.splitlines()) == 11


def test_export_memory_does_not_grow_with_rows(storage: Storage) -> None:
    fill(storage, 3000)

    def peak(total: int) -> int:
        tracemalloc.start()
        chars = sum(len(chunk) for chunk in hits_csv(storage.iter_hits(HitQuery(), total=total)))
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert chars > total * 100
        return top

    peak(500)  # warm caches (compiled statements, imports) outside the comparison
    small, large = peak(1000), peak(3000)
    # Three times the rows in pages of 500: the peak is a page's worth either way.
    assert large < small * 1.3, (small, large)


def test_stats_jurisdictions_and_metrics(storage: Storage) -> None:
    fill(storage, 6)
    metrics = ServiceMetrics()
    metrics.observe_polls(
        [PollReport("https://a.example/rss", FetchStatus.OK, 200, 6, 6, None, 0.2)]
    )
    with TestClient(create_app(storage, metrics=metrics)) as client:
        stats = client.get("/api/v1/stats").json()
        assert stats["total"] == 6
        assert {t["topic"]: t["count"] for t in stats["by_topic"]} == {
            "detainer": 4,
            "sanctuary": 2,
        }
        assert {s["state"]: s["count"] for s in stats["by_state"]} == {"MA": 3, "IL": 3}
        assert (
            sum(d["count"] for d in stats["by_day"])
            == 6
            == sum(w["count"] for w in stats["by_week"])
        )
        assert stats["by_week"][0]["week"].startswith("2025-W")
        assert (
            client.get("/api/v1/stats", params={"state": "IL", "topic": "sanctuary"}).json()[
                "total"
            ]
            == 1
        )
        places = client.get("/api/v1/jurisdictions").json()["items"]
        assert {(p["name"], p["hits"]) for p in places} == {("Boston", 3), ("Chicago", 3)}
        boston = next(p for p in places if p["name"] == "Boston")
        assert boston["latest_event"] == "detainer_declined" and boston["latest_hit"]["id"]
        text = client.get("/metrics").text
        assert "dw_hits 6.0" in text and 'dw_polls_total{result="ok",status="200"} 1.0' in text
        assert "dw_poll_duration_seconds_count 1.0" in text and "dw_articles 6.0" in text


def test_new_routes_need_the_token(storage: Storage) -> None:
    with TestClient(create_app(storage, api_token="s3cret")) as client:
        for path in ("/api/v1/stats", "/api/v1/jurisdictions", "/api/v1/hits?format=csv"):
            r = client.get(path)
            assert r.status_code == 401 and "s3cret" not in r.text
            ok = client.get(path, headers={"Authorization": "Bearer s3cret"})
            assert ok.status_code == 200
        assert client.get("/metrics").status_code == 200


def test_dashboard_pages_with_the_new_cursor_and_survives_bad_searches(storage: Storage) -> None:
    fill(storage, 60)
    with TestClient(create_app(storage)) as client:
        first = client.get("/")
        assert first.status_code == 200 and "cursor=" in first.text
        bad = client.get("/", params={"q": '"unclosed'})
        assert bad.status_code == 200 and "closing quote" in bad.text
        stale = client.get("/", params={"cursor": "not-a-cursor"})
        assert stale.status_code == 200 and "cursor:" in stale.text
        unknown = client.get("/", params={"topic": "ice"})
        assert unknown.status_code == 200 and "unknown topic" in unknown.text


def test_ids_too_large_for_the_database_are_422_not_500(storage: Storage) -> None:
    """Found by the schemathesis run: an id past 2**63 - 1 reached SQLite (OverflowError)."""
    fill(storage, 2)
    huge = str(2**63)
    auth = {"Authorization": "Bearer s3cret"}
    app = create_app(storage, api_token="s3cret")
    with TestClient(app) as client:
        for method, path in (
            ("GET", f"/api/v1/deliveries?hit_id={huge}"),
            ("POST", f"/api/v1/deliveries/{huge}/retry"),
            ("POST", f"/api/v1/hits/{huge}/redeliver"),
            ("DELETE", f"/api/v1/webhooks/{huge}"),
            ("POST", f"/api/v1/webhooks/{huge}/enable"),
            ("DELETE", f"/api/v1/feeds/{huge}"),
            ("GET", f"/hits/{huge}"),
        ):
            r = client.request(method, path, headers=auth)
            assert r.status_code == 422, (method, path, r.status_code, r.text)
        assert client.get("/api/v1/deliveries?hit_id=1", headers=auth).status_code == 200
