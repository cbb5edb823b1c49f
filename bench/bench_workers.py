"""Scale-out benchmark: 1, 2 and 4 ``worker`` processes on PostgreSQL beside one on SQLite.

    DW_TEST_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \\
        .venv/bin/python bench/bench_workers.py [--feeds 160] [--workers 1,2,4] [--rounds 1]
        [--pin] [--parse-processes N]

One command, a few minutes. The feed set is bench/bench_poll.py's (imported, not copied): the
real feeds of ../shared/feeds plus generated RSS of ~65 KB with 25 items each, one feed in five
carrying detainer stories, served by nginx on 127.0.0.1 (installed by bench_poll when it can;
a threaded Python server otherwise). Each setting starts from a fresh database — PostgreSQL
database ``dw_bench_workers``, dropped and created again, or a new SQLite file — holding every
feed, due only tomorrow. The ``detainer-watch worker`` processes start; once each has logged
that it is up, every feed is made due at once and the clock runs until every feed's poll is
recorded (start-up and migration are not measured). Two passes:

* first poll: every item is new — fetch, parse, match, group into stories, store;
* changed: every document gets new bytes (so a 200, not a 304) but no new item — fetch and
  parse only, the parse-bound load of a monitor's steady state.

Workers get the limits of one loopback host: concurrency 8, per-host concurrency 8 and a
per-host delay of 1 ms (``polling.per_host_delay`` is per process, so N workers make N times
the requests per second to the host). ``--pin`` puts worker i and its parse processes on core
i only. Every wait has a deadline; a worker that dies or a pass that stalls ends the run with
the workers' logs. Prints a markdown table for the README: items/s, feeds/s, speed-up over one
PostgreSQL worker, CPU seconds per 1,000 items of our processes (worker, parse processes,
database server processes) and how busy the whole machine was.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, select, text, update
from sqlalchemy.engine import Engine, make_url
from sqlmodel import col

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.bench_poll import cpu_of, process_tree, served_corpus  # noqa: E402
from service.config import load_config  # noqa: E402
from service.storage import Storage, make_engine, migrate  # noqa: E402
from service.storage.tables import ArticleRow, FeedRow, HitRow  # noqa: E402

RULES = REPO / "config" / "rules" / "detainer-sanctuary.toml"
BENCH_DATABASE = "dw_bench_workers"
CONCURRENCY = 8
# One loopback host serves every feed: its politeness floor, not a public site's (1 s).
PER_HOST_DELAY_S = 0.001
# Workers look for due feeds this often; short, so that the start of a run is not a wait.
TICK_S = 0.2
# Deadlines: a worker's start-up (imports, migrations already done, config sync), and a
# whole run (one worker polls ~6 feeds/s here; far beyond that something is stuck).
START_TIMEOUT_S = 90.0
RUN_TIMEOUT_S = 600.0
STOP_TIMEOUT_S = 60.0
SAMPLE_S = 0.05


@dataclass(frozen=True)
class Phase:
    """One pass over every feed by one setting's workers."""

    seconds: float
    feeds: int
    items: int  # items in the documents (all new in the first pass, none in the second)
    busy: float  # share of the machine's CPU time in use during the pass (anyone's)
    cpu_main_s: float  # CPU seconds of the worker processes (fetch, match, store)
    cpu_parse_s: float  # ... of their parse processes
    cpu_db_s: float  # ... of their PostgreSQL server processes

    @property
    def cpu_s(self) -> float:
        return self.cpu_main_s + self.cpu_parse_s + self.cpu_db_s


@dataclass(frozen=True)
class Run:
    name: str
    workers: int
    first: Phase  # every item new: fetch, parse, match, group into stories, store
    changed: Phase  # every document changed, no item new: fetch and parse, nothing stored
    hits: int
    errors: int
    pollers: int  # workers that polled at least one feed


def cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def process_cpu(roots: list[int]) -> dict[int, float]:
    """CPU seconds (user + system) of each live process in the trees under ``roots``."""
    out = {}
    for pid in set(process_tree(*roots)):
        if (seconds := cpu_of(pid)) is not None:
            out[pid] = seconds
    return out


def backend_pids(engine: Engine) -> list[int]:
    """PostgreSQL server processes of the bench database (none on SQLite)."""
    if engine.dialect.name != "postgresql":
        return []
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT pid FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
        return [int(r[0]) for r in rows]


def write_config(tmp: Path, db_url: str, urls: list[str], parse_processes: int = 0) -> Path:
    tables = "".join(f'[[feeds]]\nurl = "{u}"\n' for u in urls)
    path = tmp / "bench.toml"
    path.write_text(
        f"""
[database]
url = "{db_url}"
[polling]
tick = {TICK_S}
interval = "1h"
concurrency = {CONCURRENCY}
per_host_concurrency = {CONCURRENCY}
per_host_delay = {PER_HOST_DELAY_S}
parse_processes = {parse_processes}
[network]
allow_private_addresses = true
[matcher]
rules = "{RULES}"
[logging]
level = "INFO"
{tables}""",
        encoding="utf-8",
    )
    return path


def fresh_postgres(admin_url: str) -> str:
    """Drop and create the bench database; returns its URL."""
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{BENCH_DATABASE}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{BENCH_DATABASE}"'))
    finally:
        admin.dispose()
    return make_url(admin_url).set(database=BENCH_DATABASE).render_as_string(hide_password=False)


def drop_postgres(admin_url: str) -> None:
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{BENCH_DATABASE}" WITH (FORCE)'))
    finally:
        admin.dispose()


def prepare(cfg_path: Path) -> None:
    """Migrate, and store every feed due tomorrow (the workers keep that schedule)."""
    cfg = load_config(cfg_path, env={})
    engine = make_engine(cfg.database_url)
    migrate(engine)
    storage = Storage(engine)
    storage.sync_config_feeds(cfg.feeds, datetime.now(UTC) + timedelta(days=1))
    storage.close()


class Workers:
    """``n`` ``detainer-watch worker`` processes with their logs."""

    def __init__(self, cfg: Path, n: int, tmp: Path, pin: bool) -> None:
        self.logs = [tmp / f"worker{i}.log" for i in range(n)]
        self.procs: list[subprocess.Popen[bytes]] = []
        cpus = sorted(os.sched_getaffinity(0))
        for i, log in enumerate(self.logs):
            # --pin: worker i and its parse processes on core i only, as if each worker had
            # a machine of one core to itself (the database is not pinned).
            taskset = ["taskset", "-c", str(cpus[i % len(cpus)])] if pin else []
            with log.open("wb") as out:
                self.procs.append(
                    subprocess.Popen(
                        [*taskset, sys.executable, "-m", "service", "--config", str(cfg), "worker"],
                        cwd=REPO,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )

    def tail(self, chars: int = 2000) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-chars:]}" for p in self.logs)

    def check_alive(self) -> None:
        for proc, log in zip(self.procs, self.logs, strict=True):
            if proc.poll() is not None:
                raise SystemExit(f"{log.name} exited {proc.returncode}:\n{self.tail()}")

    def wait_started(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not all(" worker " in log.read_text() for log in self.logs):
            self.check_alive()
            if time.monotonic() > deadline:
                raise SystemExit(f"workers not up after {START_TIMEOUT_S:.0f} s:\n{self.tail()}")
            time.sleep(SAMPLE_S)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                print(f"worker {proc.pid} did not stop in time: killed", file=sys.stderr)
                proc.kill()
                proc.wait()


def change_documents(root: Path) -> None:
    """New bytes (and so a new ETag and body hash) for every document, the same items."""
    for path in root.iterdir():
        with path.open("ab") as f:
            f.write(b"\n<!-- regenerated -->\n")


class Pass:
    """Makes every feed due at once and times until each has been polled again."""

    def __init__(self, engine: Engine, workers: Workers, n_feeds: int) -> None:
        self.engine, self.workers, self.n_feeds = engine, workers, n_feeds

    def run(self, name: str, items: int) -> Phase:
        mains = [p.pid for p in self.workers.procs]
        busy0, total0 = cpu_times()
        cpu0 = process_cpu(mains + backend_pids(self.engine))
        t0 = time.monotonic()
        since = datetime.now(UTC)
        with self.engine.begin() as conn:
            conn.execute(update(FeedRow).values(next_check_at=since))
        polled = (
            select(func.count()).select_from(FeedRow).where(col(FeedRow.last_checked_at) >= since)
        )
        while True:
            with self.engine.connect() as conn:
                if conn.execute(polled).scalar_one() >= self.n_feeds:
                    break
            self.workers.check_alive()
            if time.monotonic() - t0 > RUN_TIMEOUT_S:
                raise SystemExit(
                    f"{name}: not done after {RUN_TIMEOUT_S:.0f} s\n{self.workers.tail()}"
                )
            time.sleep(SAMPLE_S)
        seconds = time.monotonic() - t0
        busy1, total1 = cpu_times()
        backends = backend_pids(self.engine)
        cpu1 = process_cpu(mains + backends)
        used = {pid: t - cpu0.get(pid, 0.0) for pid, t in cpu1.items()}
        main = sum(used[p] for p in mains if p in used)
        db = sum(used[p] for p in backends if p in used)
        parse = sum(used.values()) - main - db
        busy = (busy1 - busy0) / max(1, total1 - total0)
        return Phase(seconds, self.n_feeds, items, busy, main, parse, db)


def count(engine: Engine, query: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def measure(name: str, cfg_path: Path, n: int, root: Path, tmp: Path, pin: bool) -> Run:
    prepare(cfg_path)
    n_feeds = len(list(root.iterdir()))
    engine = make_engine(load_config(cfg_path, env={}).database_url)
    workers = Workers(cfg_path, n, tmp, pin)
    try:
        workers.wait_started()
        passes = Pass(engine, workers, n_feeds)
        # A pass of changed documents whose items are all known would find nothing to
        # store: a second pass of unchanged ones would be 304s.
        first = passes.run(name, 0)
        items = count(engine, select(func.count()).select_from(ArticleRow))
        first = replace(first, items=items)
        change_documents(root)
        changed = passes.run(name, items)
        if count(engine, select(func.count()).select_from(ArticleRow)) != items:
            raise SystemExit(f"{name}: the second pass stored new items; it should find none")
    finally:
        workers.stop()
    failing = list(
        engine.connect().execute(
            select(FeedRow.url, FeedRow.last_error).where(col(FeedRow.last_status) == "error")
        )
    )
    hits = count(engine, select(func.count()).select_from(HitRow))
    pollers = count(engine, select(func.count(func.distinct(col(FeedRow.leased_by)))))
    engine.dispose()
    for url, error in failing:
        print(f"  {name}: feed error: {url.rsplit('/', 1)[1]}: {error}", file=sys.stderr)
    run = Run(name, n, first, changed, hits, len(failing), pollers)
    print(f"{run}", file=sys.stderr)
    return run


def median_run(runs: list[Run]) -> Run:
    return sorted(runs, key=lambda r: r.first.seconds + r.changed.seconds)[len(runs) // 2]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--feeds", type=int, default=160)
    ap.add_argument("--workers", default="1,2,4", help="worker counts on PostgreSQL")
    ap.add_argument("--rounds", type=int, default=1, help="runs per setting (median shown)")
    ap.add_argument("--server", choices=("auto", "nginx", "python"), default="auto")
    ap.add_argument(
        "--pin", action="store_true", help="worker i (and its parse processes) on core i only"
    )
    ap.add_argument(
        "--parse-processes",
        type=int,
        default=0,
        help="polling.parse_processes of each worker (0: one per core, the default)",
    )
    args = ap.parse_args()
    pg_url = os.environ.get("DW_TEST_POSTGRES_URL")
    counts = [int(x) for x in args.workers.split(",")]
    rows: list[Run] = []
    with served_corpus("bench-workers-", args.feeds, args.server) as corpus:
        tmp, root, names, size = corpus.tmp, corpus.root, corpus.names, corpus.size
        servers = corpus.servers
        urls = [f"http://127.0.0.1:{servers.honest}/{n}" for n in names]
        settings: list[tuple[str, int, str | None]] = [("SQLite", 1, None)]
        if pg_url:
            settings += [("PostgreSQL", n, pg_url) for n in counts]
        else:
            print("DW_TEST_POSTGRES_URL is not set: PostgreSQL rows skipped", file=sys.stderr)
        try:
            for label, n, admin in settings:
                runs = []
                for i in range(args.rounds):
                    run_dir = tmp / f"{len(rows)}-{label}-{n}-{i}"
                    run_dir.mkdir()
                    db = fresh_postgres(admin) if admin else f"sqlite:///{run_dir}/dw.db"
                    name = f"{label}, {n} worker{'s' if n > 1 else ''}"
                    cfg = write_config(run_dir, db, urls, args.parse_processes)
                    runs.append(measure(name, cfg, n, root, run_dir, args.pin))
                rows.append(median_run(runs))
        finally:
            if pg_url:
                drop_postgres(pg_url)
    print(
        f"{len(urls)} feeds ({size / 1e6:.1f} MB, {rows[0].first.items} items, "
        f"{rows[0].errors} feeds malformed beyond use), server: {servers.kind}; "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}; each worker: concurrency "
        f"{CONCURRENCY}, per-host delay {PER_HOST_DELAY_S * 1000:.0f} ms, parse processes "
        f"{args.parse_processes or os.cpu_count()}"
        f"{', pinned to one core each' if args.pin else ''}; {args.rounds} "
        f"round(s), median shown; load average at the end {os.getloadavg()[0]:.1f}\n"
    )
    print(table(rows))
    first = rows[0]
    problems = [r for r in rows if (r.first.items, r.hits) != (first.first.items, first.hits)]
    for r in problems:
        print(
            f"note: {r.name} stored {r.first.items} items and {r.hits} hits; "
            f"{first.name}: {first.first.items}, {first.hits}",
            file=sys.stderr,
        )
    for r in rows:
        if r.pollers < r.workers:
            print(f"note: {r.name}: only {r.pollers} of them polled", file=sys.stderr)
    return 1 if problems else 0


def table(rows: list[Run]) -> str:
    base = next((r for r in rows if r.name.startswith("PostgreSQL") and r.workers == 1), None)

    def cells(r: Run, phase: str) -> str:
        p: Phase = getattr(r, phase)
        b: Phase | None = getattr(base, phase) if base else None
        k = 1000 / max(1, p.items)
        speedup = f"{b.seconds / p.seconds:.2f}×" if b and r.name.startswith("PostgreSQL") else ""
        return (
            f"{p.items / p.seconds:,.0f} | {p.feeds / p.seconds:.1f} | {speedup} | "
            f"{k * p.cpu_s:.1f} = {k * p.cpu_main_s:.1f} + {k * p.cpu_parse_s:.1f} + "
            f"{k * p.cpu_db_s:.1f} | {p.busy:.0%}"
        )

    lines = [
        "| setting | pass | items/s | feeds/s | vs 1 PostgreSQL worker "
        "| CPU s per 1,000 items = worker + parse + DB | machine CPU busy |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for phase, label in (("first", "first poll, all new"), ("changed", "changed, none new")):
        lines += [f"| {r.name} | {label} | {cells(r, phase)} |" for r in rows]
    lines.append(
        "\nfirst poll: every item is new (fetch, parse, match, group into stories, store); "
        "changed: every document has new bytes but no new item (fetch and parse; only the "
        "feed row is written). CPU s: the worker processes, their parse processes and (on "
        "PostgreSQL) their database server processes; machine CPU busy: both cores, anyone's "
        "work included."
    )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
