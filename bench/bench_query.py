"""Benchmark of hit queries, printed as a markdown table (README.md keeps the last run).

Builds a database of ``--hits`` hits (100,000 by default) from the dev corpus texts of the
team's ``shared/`` folder (synthetic text when it is absent), each with its article, the way
the poller stores them (the search index and side tables are filled by the triggers of
migration 0005), then measures p50/p99 latency of:

* the first page (``limit=50``), a filtered page (state + event + since), a deep cursor page
  (newest and score sort), and full-text searches (a phrase, an AND/OR/NOT query, a rare word);
* in-process (``Storage.list_hits`` + the JSON the route sends) and through uvicorn on
  127.0.0.1 (its own process, built as ``detainer-watch api`` builds it) with an httpx loop;
* a CSV export of every hit (streamed over keyset pages): time, tracemalloc peak in-process,
  and the API process's peak resident memory while it streams the export over HTTP.

Each ``--database-url`` (SQLite and/or PostgreSQL; repeat the option) gets its columns in one
table, measured in one run. Targets (issue 6): p99 ≤ 50 ms for lists, ≤ 100 ms for search,
export peak ≤ 100 MB.

Run: ``.venv/bin/python bench/bench_query.py [--hits N] [--runs N] [--db PATH]
[--database-url URL ...]``; a database that already has hits is reused, so give PostgreSQL
a database of its own (``createdb dw_bench_query``), not the tests' one.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
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
from service.api.hits import hits_csv, hits_page_body  # noqa: E402
from service.heap import freeze_startup_heap  # noqa: E402
from service.search import Cursor, encode_cursor  # noqa: E402
from service.storage import Storage, make_engine, migrate  # noqa: E402
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
                "INSERT INTO feeds (id, url, origin, enabled, error_count, last_new_items) "
                "VALUES (1, 'https://bench.example/rss', 'config', :yes, 0, 0)"
            ),
            {"yes": True},
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


def _serve(url: str, port: int) -> None:
    app = create_app(Storage(make_engine(url)))
    freeze_startup_heap()  # as the api and run commands do before serving
    uvicorn.run(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning")


@contextmanager
def serve(url: str) -> Iterator[tuple[str, int]]:
    """The API in its own process (as ``detainer-watch api`` runs it), so the client loop
    and the server do not share one GIL. Yields its base URL and process id. Spawned, not
    forked: a fork would share this process's database connections."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    proc = multiprocessing.get_context("spawn").Process(target=_serve, args=(url, port))
    proc.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(f"{base}/healthz", timeout=1)
            break
        except httpx.TransportError:
            if time.monotonic() > deadline or not proc.is_alive():
                raise
            time.sleep(0.1)
    try:
        assert proc.pid is not None
        yield base, proc.pid
    finally:
        proc.terminate()
        proc.join(timeout=10)


def memory_mb(pid: int, field: str) -> float:
    """``VmRSS`` (resident now) or ``VmHWM`` (peak resident) of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise LookupError(field)


def reset_peak_memory(pid: int) -> bool:
    """Start ``VmHWM`` afresh from the current RSS (Linux ``clear_refs``); False if refused."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def timed(fn: Callable[[], Any], runs: int) -> tuple[float, float]:
    for _ in range(5):
        fn()  # warm: compiled statements, connections, the page cache
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.99))]


def cases(storage: Storage) -> list[tuple[str, dict[str, Any], str]]:
    total = storage.count_hits()
    since = (NOW - timedelta(days=180)).date().isoformat()
    first_id = storage.list_hits(HitQuery(sort="newest", limit=1))[0][0].id
    deep_id = first_id - total * 95 // 100  # 95% of the way down the newest-first list
    return [
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


def in_process(storage: Storage, params: dict[str, Any]) -> Callable[[], Any]:
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
        return hits_page_body(*storage.list_hits(q))

    return run


def backend_name(url: str) -> str:
    return "PostgreSQL" if url.startswith("postgresql") else "SQLite"


def measure(url: str, hits: int, runs: int) -> dict[str, Any]:
    """Every case in-process and over HTTP, and the CSV export, against one database."""
    engine = make_engine(url)
    migrate(engine)
    storage = Storage(engine)
    if storage.count_hits() == 0:
        t0 = time.perf_counter()
        build(storage, hits)
        print(f"built {hits} hits in {time.perf_counter() - t0:.1f} s ({backend_name(url)})")
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))  # planner statistics, as autovacuum would gather
    total = storage.count_hits()
    freeze_startup_heap()  # the service's own heap is frozen too; see its docstring
    timings: dict[str, tuple[str, float, float, float, float]] = {}
    with serve(url) as (base, pid), httpx.Client(base_url=base, timeout=30) as client:
        for name, params, kind in cases(storage):
            p50, p99 = timed(in_process(storage, params), runs)

            def over_http(params: dict[str, Any] = params) -> None:
                r = client.get("/api/v1/hits", params=params)
                r.raise_for_status()

            h50, h99 = timed(over_http, runs)
            timings[name] = (kind, p50, p99, h50, h99)
        rss_before = memory_mb(pid, "VmRSS")
        peak_reset = reset_peak_memory(pid)
        t0 = time.perf_counter()
        size = 0
        with client.stream("GET", "/api/v1/hits", params={"format": "csv"}) as r:
            for chunk in r.iter_bytes():
                size += len(chunk)
        http_export_s = time.perf_counter() - t0
        server_peak = memory_mb(pid, "VmHWM")

    tracemalloc.start()
    t0 = time.perf_counter()
    lines = sum(chunk.count("\n") for chunk in hits_csv(storage.iter_hits(HitQuery())))
    export_s = time.perf_counter() - t0
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    storage.close()
    return {
        "name": backend_name(url),
        "total": total,
        "timings": timings,
        "export": (
            f"{backend_name(url)}: CSV export of all {lines - 1:,} rows: {http_export_s:.1f} s "
            f"over HTTP ({size / 2**20:.0f} MB streamed; the API process resident "
            f"{rss_before:.0f} MB before, peak {server_peak:.0f} MB during"
            f"{'' if peak_reset else ' (peak since start: clear_refs refused)'}), "
            f"{export_s:.1f} s in-process (tracemalloc peak {traced_peak / 2**20:.1f} MB)."
        ),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hits", type=int, default=100_000)
    ap.add_argument(
        "--runs",
        type=int,
        default=1000,
        help="timed runs a case and mode (the p99 of 1000 is the 10th slowest, of 200 the "
        "2nd: one scheduler hiccup on a shared machine does not decide it)",
    )
    ap.add_argument("--db", type=Path, help="SQLite file (shorthand for a sqlite:/// URL)")
    ap.add_argument(
        "--database-url",
        action="append",
        default=[],
        help="a database to measure (repeat for several); default: a temporary SQLite file",
    )
    args = ap.parse_args()
    urls = list(args.database_url)
    if args.db or not urls:
        db = args.db or Path(tempfile.mkdtemp()) / "bench.db"
        urls.insert(0, f"sqlite:///{db}")
    load_before = os.getloadavg()
    results = [measure(url, args.hits, args.runs) for url in urls]
    load_after = os.getloadavg()

    names = [r["name"] for r in results]
    sizes = ", ".join(f"{r['total']:,} hits in {r['name']}" for r in results)
    print(
        f"\n{sizes}; {args.runs} runs a case and mode; p50 / p99 in ms; {os.cpu_count()} "
        f"cores, load average {load_before[0]:.1f} at the start, {load_after[0]:.1f} at the end\n"
    )
    header = ["query", "target p99"] + [
        f"{n} {mode}" for n in names for mode in ("in-process", "HTTP")
    ]
    print("| " + " | ".join(header) + " | met |")
    print("|" + "---|" * (len(header) + 1))
    for name, (kind, *_) in results[0]["timings"].items():
        target = 100 if kind == "fts" else 50
        cells, worst = [], 0.0
        for r in results:
            _, p50, p99, h50, h99 = r["timings"][name]
            cells += [f"{p50:.1f} / {p99:.1f}", f"{h50:.1f} / {h99:.1f}"]
            worst = max(worst, p99, h99)
        met = "yes" if worst <= target else "**no**"
        print(f"| {name} | ≤ {target} | " + " | ".join(cells) + f" | {met} |")
    print()
    for r in results:
        print(r["export"])


if __name__ == "__main__":
    main()
