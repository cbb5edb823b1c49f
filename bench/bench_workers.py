"""Scale-out benchmark: 1, 2 and 4 ``worker`` processes on PostgreSQL beside one SQLite ``poll``.

    DW_TEST_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \\
        .venv/bin/python bench/bench_workers.py [--feeds 200] [--items 20]

Serves N generated feeds of K distinct detainer stories each from 127.0.0.1 (the test
suite's threaded FeedServer), then for each setting stores every item once, from a fresh
database: a scratch PostgreSQL database per run for the workers (which share the feeds through
leases), a fresh SQLite file for the single ``detainer-watch poll``. Time runs from the first
feed request to the last article stored (process start-up excluded). Prints a markdown table
(items/s, feeds/s, speed-up over one worker) for the README.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine, text

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.fleet import scratch_database, story  # noqa: E402
from tests.seedfeed import rss  # noqa: E402
from tests.servers import FeedServer  # noqa: E402

RULES = REPO / "config" / "rules" / "detainer-sanctuary.toml"
CONCURRENCY = 4


def config(tmp: Path, db_url: str, feeds: FeedServer, n_feeds: int) -> Path:
    tables = "".join(f'[[feeds]]\nurl = "{feeds.url(f"/f{i}.xml")}"\n\n' for i in range(n_feeds))
    path = tmp / "bench.toml"
    path.write_text(
        f"""
[database]
url = "{db_url}"
[polling]
tick = "1s"
interval = "1h"
concurrency = {CONCURRENCY}
per_host_concurrency = {CONCURRENCY}
per_host_delay = 0.001
[network]
allow_private_addresses = true
[matcher]
rules = "{RULES}"
[logging]
level = "WARNING"
{tables}""",
        encoding="utf-8",
    )
    return path


def articles(db_url: str) -> int:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM articles")).scalar_one())
    except Exception:  # no schema yet
        return 0
    finally:
        engine.dispose()


def run_workers(feeds: FeedServer, pg_url: str, n: int, n_feeds: int, total: int) -> float:
    with scratch_database(pg_url) as db, tempfile.TemporaryDirectory() as tmp:
        cfg = config(Path(tmp), db, feeds, n_feeds)
        # Migrate first so that the workers' start-up is not in the measurement.
        subprocess.run(
            [sys.executable, "-m", "service", "--config", str(cfg), "migrate"],
            cwd=REPO,
            check=True,
            capture_output=True,
        )
        feeds.timings.clear()
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "service", "--config", str(cfg), "worker"],
                cwd=REPO,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(n)
        ]
        try:
            while articles(db) < total:
                time.sleep(0.1)
            done = time.monotonic()
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(timeout=60)
        return done - min(t[1] for t in feeds.timings)


def run_sqlite_poll(feeds: FeedServer, n_feeds: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = config(Path(tmp), f"sqlite:///{tmp}/dw.db", feeds, n_feeds)
        subprocess.run(
            [sys.executable, "-m", "service", "--config", str(cfg), "migrate"],
            cwd=REPO,
            check=True,
            capture_output=True,
        )
        feeds.timings.clear()
        subprocess.run(
            [sys.executable, "-m", "service", "--config", str(cfg), "poll", "--no-deliver"],
            cwd=REPO,
            check=True,
            capture_output=True,
        )
        done = time.monotonic()
        return done - min(t[1] for t in feeds.timings)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--feeds", type=int, default=200)
    ap.add_argument("--items", type=int, default=20)
    ap.add_argument("--workers", default="1,2,4")
    args = ap.parse_args()
    pg_url = os.environ.get("DW_TEST_POSTGRES_URL")
    total = args.feeds * args.items
    rows = []
    with FeedServer() as feeds:
        n = 0
        for i in range(args.feeds):
            items = [story(n + k) for k in range(args.items)]
            n += args.items
            feeds.route(f"/f{i}.xml", body=rss(items))
        secs = run_sqlite_poll(feeds, args.feeds)
        rows.append(("SQLite, one `poll` process", secs, None))
        if pg_url:
            base = None
            for w in (int(x) for x in args.workers.split(",")):
                secs = run_workers(feeds, pg_url, w, args.feeds, total)
                base = base or secs
                rows.append(
                    (f"PostgreSQL, {w} worker process{'es' if w > 1 else ''}", secs, base / secs)
                )
        else:
            print("DW_TEST_POSTGRES_URL is not set: PostgreSQL rows skipped", file=sys.stderr)
    print(
        f"{args.feeds} feeds x {args.items} items = {total} items on 127.0.0.1; "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, concurrency {CONCURRENCY}\n"
    )
    print("| setting | seconds | items/s | feeds/s | vs 1 worker |")
    print("|---|---:|---:|---:|---:|")
    for name, secs, speedup in rows:
        print(
            f"| {name} | {secs:.1f} | {total / secs:.0f} | {args.feeds / secs:.1f} | "
            f"{'' if speedup is None else f'{speedup:.2f}x'} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
