"""Benchmark of hit queries, printed as a markdown table (README.md keeps the last run).

Builds a SQLite database of ``--hits`` hits (100,000 by default) from the dev corpus texts of
the team's ``shared/`` folder (synthetic text when it is absent), each with its article, the
way the poller stores them (the search index and side tables are filled by the triggers of
migration 0005), then measures p50/p99 latency of:

* the first page (``limit=50``), a filtered page (state + event + since), a deep cursor page
  (newest and score sort), and full-text searches (a phrase and an AND/OR/NOT query);
* in-process (``Storage.list_hits`` + the JSON the route sends) and through uvicorn on
  127.0.0.1 (its own process) with an httpx client loop;
* a CSV export of every hit (streamed over keyset pages): time and tracemalloc peak.

Targets (issue 6): p99 ≤ 50 ms for lists, ≤ 100 ms for search, export peak ≤ 100 MB.

Run: ``.venv/bin/python bench/bench_query.py [--hits N] [--runs N] [--db PATH]``; an existing
``--db`` with hits is reused.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import random
import socket
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from sqlalchemy import text

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from service.api import create_app  # noqa: E402
from service.api.hits import hits_csv  # noqa: E402
from service.search import Cursor, encode_cursor  # noqa: E402
from service.storage import Storage, hit_payload, make_engine, migrate  # noqa: E402
from service.types import HitQuery  # noqa: E402

CORPUS = REPO.parent / "shared" / "corpus" / "dev.jsonl"
NOW = datetime(2026, 11, 1, tzinfo=UTC)
SPAN_DAYS = 730  # hits spread over two years
BATCH = 5000
STATES = ("MA", "IL", "TX", "CA", "NY", "MN", "OR", "FL", "GA", "WA")
PLACES = {
    "MA": "Boston",
    "IL": "Chicago",
    "TX": "Harris County",
    "CA": "Los Angeles",
    "NY": "New York",
    "MN": "Hennepin County",
    "OR": "Portland",
    "FL": "Miami-Dade County",
    "GA": "Atlanta",
    "WA": "King County",
}
EVENTS = ("detainer_declined", "detainer_honored", "policy_passed", "lawsuit", "287g_signed")
TOPICS = (("detainer",), ("sanctuary",), ("287g",), ("detainer", "sanctuary"))


def corpus_texts() -> list[dict[str, str]]:
    if CORPUS.exists():
        return [json.loads(line) for line in CORPUS.read_text().splitlines() if line.strip()]
    rng = random.Random(7)
    words = "county sheriff detainer ice immigration sanctuary policy jail council vote".split()
    return [
        {
            "title": " ".join(rng.choices(words, k=8)),
            "summary": " ".join(rng.choices(words, k=40)),
            "text": " ".join(rng.choices(words, k=300)),
            "source": "Synthetic News",
        }
        for _ in range(100)
    ]


def build(storage: Storage, n: int) -> None:
    """Insert ``n`` hits with their stories and articles in batches (raw SQL, one
    transaction a batch); the 0005 triggers index each hit as it goes in."""
    docs = corpus_texts()
    rng = random.Random(42)
    with storage.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO feeds (url, origin, enabled, error_count, last_new_items) "
                "VALUES ('https://bench.example/rss', 'config', 1, 0, 0)"
            )
        )
    for start in range(1, n + 1, BATCH):
        ids = range(start, min(start + BATCH, n + 1))
        stories, articles, hits = [], [], []
        for i in ids:
            doc = docs[i % len(docs)]
            other = docs[(i * 7 + 3) % len(docs)]
            # A feed item's real size: its summary and text, and a second item's text as the
            # rest of the body (~1-2 KB), plus a token unique to the hit.
            body = f"{doc.get('text', '')} {other.get('text', '')} ref{i}"
            when = NOW - timedelta(seconds=(n - i) * SPAN_DAYS * 86400 / n)
            state = rng.choice(STATES)
            jurisdictions = [
                {"name": PLACES[state], "kind": "city", "state": state},
                {"name": state, "kind": "state", "state": state},
            ]
            evidence = [
                {
                    "field": "summary",
                    "sentence": doc["summary"][:200],
                    "start": 0,
                    "end": 10,
                    "terms": [],
                }
            ]
            stories.append({"id": i, "h": f"h{i}", "t": when})
            articles.append(
                {
                    "id": i,
                    "s": i,
                    "g": f"g{i}",
                    "u": f"https://news.example/{i}",
                    "ti": doc["title"],
                    "su": doc["summary"],
                    "te": body,
                    "so": doc.get("source") or "Example",
                    "h": f"h{i}",
                    "t": when,
                }
            )
            hits.append(
                {
                    "s": i,
                    "a": i,
                    "ti": doc["title"],
                    "u": f"https://news.example/{i}",
                    "so": doc.get("source") or "Example",
                    "t": when,
                    "sc": round(rng.uniform(0.5, 1.0), 4),
                    "to": json.dumps(rng.choice(TOPICS)),
                    "e": rng.choice(EVENTS),
                    "j": json.dumps(jurisdictions),
                    "ev": json.dumps(evidence),
                }
            )
        with storage.engine.begin() as conn:
            conn.execute(
                text("INSERT INTO stories (id, content_hash, first_seen_at) VALUES (:id, :h, :t)"),
                stories,
            )
            conn.execute(
                text(
                    "INSERT INTO articles (id, feed_id, story_id, guid, url, title, summary, "
                    "text, source, content_hash, published_at, first_seen_at) VALUES (:id, 1, "
                    ":s, :g, :u, :ti, :su, :te, :so, :h, :t, :t)"
                ),
                articles,
            )
            conn.execute(
                text(
                    "INSERT INTO hits (story_id, article_id, title, url, source, published_at, "
                    "first_seen_at, score, topics, event_type, jurisdictions, entities, "
                    "evidence, rules, ruleset_version) VALUES (:s, :a, :ti, :u, :so, :t, :t, "
                    ":sc, :to, :e, :j, '[]', :ev, '[]', 'bench')"
                ),
                hits,
            )


def _serve(db: Path, port: int) -> None:
    engine = make_engine(f"sqlite:///{db}")
    uvicorn.run(
        create_app(Storage(engine)),
        host="127.0.0.1",
        port=port,
        lifespan="off",
        log_level="warning",
        access_log=False,
    )


@contextmanager
def serve(db: Path) -> Iterator[str]:
    """The API in its own process (as ``detainer-watch api`` runs it), so the client loop
    and the server do not share one GIL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    proc = multiprocessing.get_context("fork").Process(target=_serve, args=(db, port))
    proc.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"{base}/healthz", timeout=1)
            break
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    try:
        yield base
    finally:
        proc.terminate()
        proc.join(timeout=10)


def timed(fn: Callable[[], Any], runs: int) -> tuple[float, float]:
    fn()  # warm
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.99))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hits", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--db", type=Path)
    args = ap.parse_args()
    db = args.db or Path(tempfile.mkdtemp()) / "bench.db"
    engine = make_engine(f"sqlite:///{db}")
    migrate(engine)
    storage = Storage(engine)
    if storage.count_hits() == 0:
        t0 = time.perf_counter()
        build(storage, args.hits)
        print(f"built {args.hits} hits in {time.perf_counter() - t0:.1f} s ({db})")
    total = storage.count_hits()
    since = (NOW - timedelta(days=180)).date().isoformat()
    deep_id = max(1, total // 20)  # 95% of the way down the newest-first list
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("first page (limit 50)", {}, "list"),
        (
            "filtered: state + event + since",
            {"state": "MA", "event": "lawsuit", "since": since},
            "list",
        ),
        ("deep cursor, newest", {"cursor": str(deep_id)}, "list"),
        (
            "deep cursor, by score",
            {"sort": "score", "cursor": encode_cursor(Cursor("score", deep_id, 0.52))},
            "list",
        ),
        ('search: "sanctuary city"', {"q": '"sanctuary city"'}, "fts"),
        ("search: detainer OR ice NOT texas", {"q": "(detainer OR ice) NOT texas"}, "fts"),
        ("search: rare word", {"q": f"ref{total // 2}"}, "fts"),
    ]

    def in_process(params: dict[str, Any]) -> Callable[[], Any]:
        q = HitQuery(
            state=params.get("state"),
            event=params.get("event"),
            since=datetime.fromisoformat(params["since"]).replace(tzinfo=UTC)
            if "since" in params
            else None,
            q=params.get("q"),
            sort=params.get("sort", "newest"),
            cursor=params.get("cursor"),
        )

        def run() -> Any:
            page, cursor = storage.list_hits(q)
            return json.dumps({"items": [hit_payload(h) for h in page], "next_cursor": cursor})

        return run

    rows = []
    with serve(db) as base, httpx.Client(base_url=base, timeout=30) as client:
        for name, params, kind in cases:
            p50, p99 = timed(in_process(params), args.runs)

            def over_http(params: dict[str, Any] = params) -> None:
                r = client.get("/api/v1/hits", params=params)
                r.raise_for_status()

            h50, h99 = timed(over_http, args.runs)
            target = 100 if kind == "fts" else 50
            ok = "yes" if max(p99, h99) <= target else "**no**"
            rows.append(
                f"| {name} | {p50:.1f} | {p99:.1f} | {h50:.1f} | {h99:.1f} | ≤ {target} | {ok} |"
            )
        t0 = time.perf_counter()
        size = 0
        with client.stream("GET", "/api/v1/hits", params={"format": "csv"}) as r:
            for chunk in r.iter_bytes():
                size += len(chunk)
        http_export_s = time.perf_counter() - t0

    tracemalloc.start()
    t0 = time.perf_counter()
    lines = sum(chunk.count("\n") for chunk in hits_csv(storage.iter_hits(HitQuery())))
    export_s = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    print(f"\n{total:,} hits in SQLite, {args.runs} runs a case (ms)\n")
    print("| query | in-process p50 | in-process p99 | HTTP p50 | HTTP p99 | target p99 | met |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(
        f"\nCSV export of all {lines - 1:,} rows: {export_s:.1f} s in-process "
        f"(tracemalloc peak {peak / 2**20:.1f} MB), {http_export_s:.1f} s over HTTP "
        f"({size / 2**20:.0f} MB streamed)."
    )
    storage.close()


if __name__ == "__main__":
    main()
