"""Polling benchmark: detainer-watch's poll path against the feed-reader library `reader`.

    .venv/bin/python bench/bench_poll.py [--feeds 500] [--rounds 3] [--workers 20]

One command. It builds N feed documents (the real ones of ../shared/feeds plus generated
ones of realistic size; one generated feed in five carries detainer/sanctuary stories from
../shared/corpus, some syndicated to two feeds, so matching, story grouping and hit storage
do real work), serves them on 127.0.0.1 from nginx (Debian's nginx-light, installed and
started by this script when it can) or else from a threaded Python static server, and in
each round, side by side:

* ours: a fresh SQLite database, migrated by a separate `detainer-watch migrate` as
  `make run` and the Docker image do (``--migrate-in-poller``: by the polling process
  itself, which then keeps Alembic in memory), and the service's own composition root
  (``cli.build``, as `detainer-watch poll --all` runs) with the start-up steps of the
  commands (malloc arena cap, httpx without its command-line tool, frozen start-up heap,
  the polling process's threads on one CPU and its parse processes on all)
  and politeness towards the one loopback host turned off (per-host delay 1 ms, per-host
  concurrency = concurrency), then
  1. first poll (everything new: fetched, parsed, matched, stored),
  2. no-change poll (the server answers 304 to our validators),
  3. the same two polls against a server that ignores validators (200, same bytes: hash,
     no parse);
* reader: `update_feeds(workers=20)` on a fresh database, twice (first and no-change),
  from a separate virtualenv (.bench-venv, gitignored) that this script fills with
  `pip install reader sgmllib3k`; skipped with a message when that fails.

Each side runs in its own process so CPU time and peak RSS are its own. CPU is process
time (user + system) of the main process plus the parse worker processes; the main
process's share and the part of it spent in garbage collection are shown too
(``--no-freeze`` leaves the start-up heap to the collector, as before `worker` froze it).
Memory: the main process's peak RSS; that plus the parse workers' (as earlier releases
printed it); and, sampled from this process every 0.1 s over the side's whole process tree
(ours: the main process and its parse workers), the sum of
each process's peak RSS (a page shared by several counts in each) and the peak of their
summed PSS (a shared page split between its sharers, so the tree's memory counts once).
Prints a markdown table of medians and ratios for the README; `--feeds 5000 --no-reader
--rounds 1` checks peak memory at scale. Ours runs with the service's defaults unless told
otherwise: ``--parse-nice N`` (``[polling] parse_nice``), ``--malloc-arenas N`` (0: glibc's
own limit), ``--httpx-cli`` (httpx imports its command-line tool, as it does unless told),
``--sqlite-cache-mb N`` (``[database] sqlite_cache_mb``), ``--sqlite-checkpoint-mb N``
(``[database] sqlite_checkpoint_mb``), ``--no-pin-poller`` (``[polling] pin_poller =
false``), ``--lazy-parse-start`` (the parse processes start at the first poll's first
document, as before the commands started them ahead), ``--worker-openssl`` (the parse
processes may load OpenSSL, as they did before they kept it out). Each ``--compare-...``
option adds, in each round, one more run of ours with that one thing changed
(``--compare-parse-nice N``, ``--compare-malloc-arenas N``, ``--compare-migrate-in-poller``,
``--compare-httpx-cli``, ``--compare-sqlite-cache-mb N``, ``--compare-sqlite-checkpoint-mb
N``, ``--compare-pin-poller``, ``--compare-lazy-parse-start``, ``--compare-worker-openssl``)
and prints a line comparing its first poll, memory and writes with the table's.
``--commands`` also starts the ``worker`` and ``run`` commands themselves over the same
feeds, once each after the rounds (with their scheduler, logging and, for ``run``, the HTTP
API), and prints the memory of each one's process tree until its poll passes have read
every feed.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
BENCH_VENV = REPO / ".bench-venv"
ITEMS_PER_GENERATED_FEED = 25
STORY_FEED_EVERY = 5  # one generated feed in five carries detainer/sanctuary stories
# Our per-host spacing: all feeds are on one loopback host, so politeness is turned down to
# 1 ms between request starts (the setting's default is 1 s).
PER_HOST_DELAY_S = 0.001


# ------------------------------------------------------------------ corpus


def _vocabulary() -> list[str]:
    """Plain words of the real feeds, minus the beat's own terms (filler must not match)."""
    banned = re.compile(r"immigr|detain|sanctuar|deport|^ice$|migrant|asylum|border|refugee")
    words: set[str] = set()
    for path in sorted((SHARED / "feeds").glob("*.xml")):
        text = re.sub(r"<[^>]*>", " ", path.read_text("utf-8", "replace"))
        words.update(w for w in re.findall(r"[A-Za-z]{3,12}", text) if not banned.search(w.lower()))
    return sorted(words)


def _sentence(rng: random.Random, vocab: list[str], n: int) -> str:
    words = rng.choices(vocab, k=n)
    return " ".join(words).capitalize() + "."


def _paragraphs(rng: random.Random, vocab: list[str], words: int) -> str:
    out = []
    while words > 0:
        n = min(words, rng.randint(25, 60))
        words -= n
        link = f'<a href="/section/{rng.randint(1, 999)}">{rng.choice(vocab)}</a>'
        out.append(f"<p>{_sentence(rng, vocab, n)} {link}</p>")
    return "".join(out)


def _positives() -> list[dict[str, Any]]:
    path = SHARED / "corpus" / "dev.jsonl"
    if not path.is_file():
        return []
    items = [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]
    return [it for it in items if it.get("kind") == "positive"]


def _item(title: str, link: str, summary: str, content: str, when: datetime) -> str:
    return (
        f"<item><title>{escape(title)}</title><link>{escape(link)}</link>"
        f'<guid isPermaLink="true">{escape(link)}</guid>'
        f"<description>{escape(summary)}</description>"
        f"<content:encoded><![CDATA[{content}]]></content:encoded>"
        f"<pubDate>{format_datetime(when, usegmt=True)}</pubDate></item>"
    )


def generated_feed(index: int, rng: random.Random, vocab: list[str], stories: list[Any]) -> bytes:
    now = datetime.now(UTC)
    outlet = f"Gazette {index}"
    items = []
    for k in range(ITEMS_PER_GENERATED_FEED):
        when = now - timedelta(minutes=rng.randint(1, 3 * 24 * 60))
        link = f"https://news{index}.example/{when:%Y/%m/%d}/story-{k}"
        summary = f"<p>{_sentence(rng, vocab, rng.randint(30, 60))}</p>"
        items.append(
            _item(
                _sentence(rng, vocab, rng.randint(7, 13))[:-1],
                link,
                summary,
                summary + _paragraphs(rng, vocab, rng.randint(120, 260)),
                when,
            )
        )
    if stories and index % STORY_FEED_EVERY == 0:
        for k in range(3):
            # Each positive runs in two feeds (syndication): one story, two sightings.
            story = stories[(index // STORY_FEED_EVERY * 3 + k) // 2 % len(stories)]
            when = now - timedelta(hours=rng.randint(1, 48))
            link = f"https://news{index}.example/immigration/{story['id']}"
            text = f"<p>{escape(story.get('text', ''))}</p>"
            items[k] = _item(story["title"], link, story.get("summary", ""), text, when)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/">'
        f"<channel><title>{outlet}</title><link>https://news{index}.example/</link>"
        f"<description>{outlet} news</description><ttl>15</ttl>{''.join(items)}</channel></rss>"
    ).encode()


def build_corpus(root: Path, count: int, seed: int = 4) -> list[str]:
    """Write ``count`` feed files under ``root``; returns their names."""
    rng = random.Random(seed)
    real = sorted((SHARED / "feeds").glob("*.xml"))[:count]
    names = []
    for path in real:
        shutil.copyfile(path, root / path.name)
        names.append(path.name)
    vocab, stories = _vocabulary(), _positives()
    for i in range(count - len(names)):
        name = f"gen-{i:05d}.xml"
        (root / name).write_bytes(generated_feed(i, rng, vocab, stories))
        names.append(name)
    return names


# ------------------------------------------------------------------ servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


NGINX_CONF = """
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fcgi; uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
    types {{ application/rss+xml xml; }}
    keepalive_requests 100000;
    server {{ listen 127.0.0.1:{honest}; root {root}; }}
    server {{ listen 127.0.0.1:{ignorant}; root {root}; etag off; if_modified_since off; }}
}}
"""


class _Handler(SimpleHTTPRequestHandler):
    """Static files with ETag/If-None-Match; the ``ignore`` server always answers 200."""

    protocol_version = "HTTP/1.1"
    ignore_validators = False

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def send_head(self) -> Any:
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return None
        st = path.stat()
        etag = f'"{st.st_mtime_ns:x}-{st.st_size:x}"'
        if not self.ignore_validators and self.headers.get("If-None-Match") == etag:
            self.send_response(304)
            self.send_header("ETag", etag)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        self.send_response(200)
        self.send_header("Content-Type", "application/rss+xml")
        self.send_header("Content-Length", str(st.st_size))
        if not self.ignore_validators:
            self.send_header("ETag", etag)
        self.end_headers()
        return path.open("rb")


class Servers:
    """Two static servers over one folder: one honours validators, one ignores them."""

    def __init__(self, root: Path, tmp: Path, want: str) -> None:
        self.root, self.tmp = root, tmp
        self.honest, self.ignorant = free_port(), free_port()
        self.kind = ""
        self._nginx: subprocess.Popen[bytes] | None = None
        self._python: list[ThreadingHTTPServer] = []
        if want in ("auto", "nginx") and self._start_nginx():
            return
        if want == "nginx":
            raise SystemExit("nginx was asked for but could not be installed or started")
        self._start_python()

    def _start_nginx(self) -> bool:
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(binary).exists() and os.geteuid() == 0 and shutil.which("apt-get"):
            print("installing nginx-light (apt-get) ...", file=sys.stderr)
            subprocess.run(
                ["apt-get", "install", "-y", "-q", "nginx-light"],
                capture_output=True,
                check=False,
                env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            )
        if not Path(binary).exists():
            return False
        conf = self.tmp / "nginx.conf"
        conf.write_text(
            NGINX_CONF.format(
                tmp=self.tmp, root=self.root, honest=self.honest, ignorant=self.ignorant
            )
        )
        self._nginx = subprocess.Popen(
            [binary, "-c", str(conf), "-g", "daemon off;"], stderr=subprocess.DEVNULL
        )
        if not self._wait():
            self._nginx.terminate()
            self._nginx = None
            return False
        version = subprocess.run([binary, "-v"], capture_output=True, text=True).stderr.strip()
        self.kind = f"nginx ({version.split('/')[-1]}, 1 worker)"
        return True

    def _start_python(self) -> None:
        root = str(self.root)
        for port, ignore in ((self.honest, False), (self.ignorant, True)):
            handler = type(
                "H", (_Handler,), {"ignore_validators": ignore, "__init__": _handler_init(root)}
            )
            server = ThreadingHTTPServer(("127.0.0.1", port), handler)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            self._python.append(server)
        self._wait()
        self.kind = "Python ThreadingHTTPServer (nginx unavailable)"

    def _wait(self) -> bool:
        for _ in range(100):
            try:
                with socket.create_connection(("127.0.0.1", self.ignorant), timeout=0.2):
                    return True
            except OSError:
                time.sleep(0.05)
        return False

    def close(self) -> None:
        if self._nginx is not None:
            self._nginx.terminate()
            self._nginx.wait(10)
        for server in self._python:
            server.shutdown()


def _handler_init(root: str) -> Any:
    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        SimpleHTTPRequestHandler.__init__(self, *args, directory=root, **kwargs)

    return init


@dataclass(frozen=True)
class ServedCorpus:
    """The feed set written under ``root`` (``names``, ``size`` bytes in all) and served."""

    tmp: Path
    root: Path
    names: list[str]
    size: int
    servers: Servers


@contextmanager
def served_corpus(prefix: str, count: int, server: str) -> Iterator[ServedCorpus]:
    """``count`` feeds written to a fresh temporary folder and served on 127.0.0.1 by
    ``Servers`` (``server``: auto, nginx or python); all gone when the block ends."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp_name:
        tmp = Path(tmp_name)
        tmp.chmod(0o755)  # nginx's worker runs as nobody
        root = tmp / "www"
        root.mkdir()
        names = build_corpus(root, count)
        size = sum((root / n).stat().st_size for n in names)
        servers = Servers(root, tmp, server)
        try:
            yield ServedCorpus(tmp, root, names, size, servers)
        finally:
            servers.close()


# ------------------------------------------------------------------ our side (subprocess)


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command name (state, ppid, ...); ``None``
    when the process is gone or its file unreadable."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def cpu_of(pid: int) -> float | None:
    """User + system CPU seconds of a live process (Linux /proc); ``None`` once it is gone."""
    fields = _stat_fields(pid)
    if fields is None:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _peak_rss_mb(pid: int) -> float:
    return _status_kb(pid, "status", "VmHWM:") / 1024


class _GcClock:
    """CPU seconds the garbage collector spends in this process's collections (each
    timed in the thread that runs it, so other threads' work is not counted)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._started = 0.0

    def __call__(self, phase: str, _info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.thread_time()
        else:
            self.seconds += time.thread_time() - self._started


@dataclass(frozen=True)
class OurSetup:
    """How our side polls: fetch concurrency, whether the start-up heap is frozen,
    ``[polling] parse_nice`` (``None``: the service's default), the malloc arena cap
    (``None``: the service's ``heap.MALLOC_ARENAS``; 0: glibc's default, no cap) and whether
    the fresh database is migrated by a separate ``migrate`` command first, as ``make run``
    and the Docker image do (else by the polling process itself, which then holds Alembic),
    whether httpx comes with its command-line tool (the commands leave it out), and the
    SQLite page cache in MB (``None``: the service's default), and whether the polling
    process keeps its own threads on one CPU (``[polling] pin_poller``, on by default)."""

    concurrency: int
    freeze: bool = True
    parse_nice: int | None = None
    malloc_arenas: int | None = None
    migrate_apart: bool = True
    httpx_cli: bool = False
    sqlite_cache_mb: int | None = None
    sqlite_checkpoint_mb: int | None = None
    pin_poller: bool = True
    prestart: bool = True
    worker_openssl: bool = False

    def flags(self) -> list[str]:
        """The command-line flags that give this setup to the ``--_ours`` subprocess."""
        out = ["--workers", str(self.concurrency)]
        if not self.freeze:
            out.append("--no-freeze")
        if self.parse_nice is not None:
            out += ["--parse-nice", str(self.parse_nice)]
        if self.malloc_arenas is not None:
            out += ["--malloc-arenas", str(self.malloc_arenas)]
        if not self.migrate_apart:
            out.append("--migrate-in-poller")
        if self.httpx_cli:
            out.append("--httpx-cli")
        if self.sqlite_cache_mb is not None:
            out += ["--sqlite-cache-mb", str(self.sqlite_cache_mb)]
        if self.sqlite_checkpoint_mb is not None:
            out += ["--sqlite-checkpoint-mb", str(self.sqlite_checkpoint_mb)]
        if not self.pin_poller:
            out.append("--no-pin-poller")
        if not self.prestart:
            out.append("--lazy-parse-start")
        if self.worker_openssl:
            out.append("--worker-openssl")
        return out

    def describe(self) -> str:
        nice = "default" if self.parse_nice is None else self.parse_nice
        heap = "frozen" if self.freeze else "not frozen"
        arenas = {None: "default", 0: "glibc's default"}.get(
            self.malloc_arenas, str(self.malloc_arenas)
        )
        schema = "by `migrate` beforehand" if self.migrate_apart else "by the polling process"
        cli = "with" if self.httpx_cli else "without"
        cache = "default" if self.sqlite_cache_mb is None else f"{self.sqlite_cache_mb} MB"
        checkpoint = (
            "default" if self.sqlite_checkpoint_mb is None else f"{self.sqlite_checkpoint_mb} MB"
        )
        return (
            f"concurrency {self.concurrency}, per-host delay {PER_HOST_DELAY_S * 1000:g} ms, "
            f"start-up heap {heap}, parse_nice {nice}, malloc arenas {arenas}, "
            f"schema migrated {schema}, httpx {cli} its command-line tool, "
            f"SQLite page cache {cache}, SQLite checkpoint at {checkpoint}, "
            f"poller threads {'on one CPU' if self.pin_poller else 'on every CPU'}, "
            f"parse processes started {'before' if self.prestart else 'by'} the first poll, "
            f"{'with' if self.worker_openssl else 'without'} OpenSSL"
        )


def write_our_config(urls: list[str], tmp: Path, setup: OurSetup) -> Path:
    """Our side's config: a fresh SQLite database in ``tmp`` and ``urls`` as its feeds."""
    feeds = "".join(f'[[feeds]]\nurl = "{u}"\n' for u in urls)
    config = tmp / "bench.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{tmp}/dw.db"\n'
        + ("" if setup.sqlite_cache_mb is None else f"sqlite_cache_mb = {setup.sqlite_cache_mb}\n")
        + (
            ""
            if setup.sqlite_checkpoint_mb is None
            else f"sqlite_checkpoint_mb = {setup.sqlite_checkpoint_mb}\n"
        )
        + f"[polling]\nconcurrency = {setup.concurrency}\n"
        + f"pin_poller = {'true' if setup.pin_poller else 'false'}\n"
        f"per_host_concurrency = {setup.concurrency}\nper_host_delay = {PER_HOST_DELAY_S}\n"
        + ("" if setup.parse_nice is None else f"parse_nice = {setup.parse_nice}\n")
        + "[network]\nallow_private_addresses = true\n"
        f'[matcher]\nrules = "{REPO}/config/rules/detainer-sanctuary.toml"\n{feeds}'
    )
    return config


def run_ours(config: Path, setup: OurSetup) -> dict[str, Any]:
    sys.path.insert(0, str(REPO))
    from service.cli import build, start_parse_processes
    from service.config import load_config
    from service.heap import (
        MALLOC_ARENAS,
        freeze_startup_heap,
        import_httpx_without_cli,
        limit_malloc_arenas,
    )

    # As the run, worker and poll commands do before any thread starts.
    limit_malloc_arenas(MALLOC_ARENAS if setup.malloc_arenas is None else setup.malloc_arenas)
    if not setup.httpx_cli:
        import_httpx_without_cli()
    cfg = load_config(config, env={})
    out: dict[str, Any] = {}
    gc_clock = _GcClock()
    gc.callbacks.append(gc_clock)
    with build(cfg, pin=True) as parts:  # as the commands that poll do
        parts.poller.parse_pool.openssl = setup.worker_openssl
        out["alembic_loaded"] = "alembic" in sys.modules
        if setup.prestart:
            t0 = time.perf_counter()
            start_parse_processes(parts)  # as run and worker do before polling
            out["parse_start_s"] = time.perf_counter() - t0
            pids = parts.poller.parse_pool.worker_pids()
            out["parse_start_cpu_s"] = sum(cpu_of(p) or 0.0 for p in pids)
        if setup.freeze:
            freeze_startup_heap()  # as the run and worker commands do before polling
        todo = parts.storage.enabled_feeds()
        for phase in ("first", "unchanged"):
            workers = parts.poller.parse_pool.worker_pids()
            main0, gc0 = time.process_time(), gc_clock.seconds
            workers0 = sum(cpu_of(p) or 0.0 for p in workers)
            written0 = written_mb()
            t0 = time.perf_counter()
            reports = parts.poller.poll(todo)
            wall = time.perf_counter() - t0
            written1 = written_mb()
            main_cpu = time.process_time() - main0
            workers = parts.poller.parse_pool.worker_pids()
            workers_cpu = sum(cpu_of(p) or 0.0 for p in workers) - workers0
            out[phase] = {
                "wall_s": wall,
                "cpu_s": main_cpu + workers_cpu,
                "main_cpu_s": main_cpu,
                "gc_s": gc_clock.seconds - gc0,
                "feeds": len(reports),
                "items": sum(r.new_items for r in reports),
                "hits": sum(r.hits for r in reports),
                "errors": sum(1 for r in reports if r.status.value == "error"),
                "statuses": sorted({r.status.value for r in reports}),
            }
            if written0 is not None and written1 is not None:
                out[phase]["written_mb"] = written1 - written0
            todo = parts.storage.enabled_feeds()
        worker_rss = [_peak_rss_mb(p) for p in parts.poller.parse_pool.worker_pids()]
    main_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["rss_mb"] = main_rss
    out["rss_total_mb"] = main_rss + sum(worker_rss)
    return out


# ------------------------------------------------------------------ reader (subprocess)

READER_SCRIPT = """
import json, resource, sys, time
from reader import make_reader
urls, db = json.loads(sys.argv[1]), sys.argv[2]
sys.path.insert(0, sys.argv[3])
from bench_poll import written_mb  # the bench's own reading, stdlib only
r = make_reader(db)
for u in urls:
    r.add_feed(u)
out = {}
for phase in ("first", "unchanged"):
    before = r.get_entry_counts().total
    w0, c0, t0 = written_mb(), time.process_time(), time.perf_counter()
    r.update_feeds(workers=20, scheduled=False)
    out[phase] = {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0,
                  "feeds": len(urls), "items": r.get_entry_counts().total - before,
                  "errors": sum(1 for f in r.get_feeds() if f.last_exception)}
    w1 = written_mb()
    if w0 is not None and w1 is not None:
        out[phase]["written_mb"] = w1 - w0
out["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
r.close()
print(json.dumps(out))
"""


def reader_python() -> Path | None:
    """The bench virtualenv's Python with reader installed, installing it on first use."""
    python = BENCH_VENV / "bin" / "python"
    probe = [str(python), "-c", "import reader, sgmllib"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    print("installing reader + sgmllib3k into .bench-venv ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=False)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "reader", "sgmllib3k"],
        capture_output=True,
        check=False,
    )
    return python if subprocess.run(probe, capture_output=True).returncode == 0 else None


def run_reader(python: Path, urls: list[str], tmp: Path) -> dict[str, Any]:
    args = [
        str(python),
        "-c",
        READER_SCRIPT,
        json.dumps(urls),
        str(tmp / "reader.sqlite"),
        str(Path(__file__).resolve().parent),
    ]
    return _run_measured("reader's", args)


def migrate_database(config: Path) -> None:
    """Create the schema of ``config``'s database with a separate `detainer-watch migrate`,
    as `make run` and the Docker image do: a process that then finds the schema current
    does not import Alembic."""
    done = subprocess.run(
        [sys.executable, "-m", "service", "--config", str(config), "migrate"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"migrate failed:\n{done.stderr[-3000:]}")


# Seconds a command of --commands may take, from its start, to poll every feed once.
COMMAND_TIMEOUT_S = 600.0
_PASS_LINE = re.compile(r"poll pass: (\d+) feeds, (\d+) new items")


def run_command(command: str, urls: list[str], tmp: Path, setup: OurSetup) -> dict[str, Any]:
    """Start ``detainer-watch COMMAND`` (``worker`` or ``run``) on ``urls`` as a user would,
    its database migrated beforehand, and sample its process tree's memory until its log's
    poll passes have read every feed; then stop it with SIGTERM, as Docker does. The
    seconds from its start to the end of that poll, the items its passes stored and the
    memory: the main process's peak RSS, each process's summed and the tree's PSS. The
    config carries ``setup``'s settings that have a key; the rest (the malloc cap, the
    frozen heap, httpx without its tool, OpenSSL kept out of the parse processes) are the
    commands' own, whatever ``setup`` says."""
    config = write_our_config(urls, tmp, setup)
    # A free port for run's API (worker serves none).
    config.write_text(config.read_text() + f"[http]\nport = {free_port()}\n")
    migrate_database(config)
    log_path = tmp / f"{command}.log"
    with open(log_path, "w") as log, open(log_path) as reading:
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "service", "--config", str(config), command],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        memory = _TreeMemory(proc.pid)
        feeds = items = 0
        unread = ""  # the log's last line, until it is whole
        try:
            while feeds < len(urls):
                if proc.poll() is not None:
                    raise SystemExit(f"{command} ended early:\n{log_path.read_text()[-3000:]}")
                if time.perf_counter() - started > COMMAND_TIMEOUT_S:
                    raise SystemExit(f"{command} did not poll every feed in time: {log_path}")
                time.sleep(MEMORY_SAMPLE_S)
                # Only what the command logged since the last look.
                lines, _, unread = (unread + reading.read()).rpartition("\n")
                for f, n in _PASS_LINE.findall(lines):
                    feeds += int(f)
                    items += int(n)
            polled_s = time.perf_counter() - started
        finally:
            sampled = memory.stop()
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return {
        "command": command,
        "polled_s": polled_s,
        "items": items,
        "rss_mb": memory.peak_rss_kb.get(proc.pid, 0) / 1024,
        **sampled,
    }


def commands_table(runs: list[dict[str, Any]]) -> str:
    """The --commands runs as a markdown table."""
    lines = [
        "| command | first poll done, s from start | items | peak RSS MB, main process "
        "| peak RSS MB, every process (summed) | peak PSS MB, every process |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        lines.append(
            f"| `{r['command']}` | {r['polled_s']:.1f} | {r['items']:,} | {r['rss_mb']:.0f} "
            f"| {r['tree_rss_mb']:.0f} | {r['tree_pss_mb']:.0f} |"
        )
    return "\n".join(lines)


def run_ours_subprocess(urls: list[str], tmp: Path, setup: OurSetup) -> dict[str, Any]:
    config = write_our_config(urls, tmp, setup)
    if setup.migrate_apart:
        migrate_database(config)
    return _run_measured("our", [sys.executable, __file__, "--_ours", str(config), *setup.flags()])


# ------------------------------------------------------------------ memory of a process tree

# How often the bench process samples the memory of the process tree it measures: from
# outside, so that reading /proc costs the measured processes nothing.
MEMORY_SAMPLE_S = 0.1


def process_tree(*roots: int) -> list[int]:
    """``roots`` and every live process below them (Linux /proc): for our side, the parse
    workers (the first of them a child of the poller, the others its children)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is None:
            continue  # gone, or not readable
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, todo = list(roots), list(roots)
    while todo:
        below = children.get(todo.pop(), [])
        tree += below
        todo += below
    return tree


def _status_kb(pid: int, file: str, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/{file}").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


class _TreeMemory:
    """Samples a process tree's memory every MEMORY_SAMPLE_S until stopped: each process's
    peak RSS (VmHWM, the kernel's own peak; a page shared by several processes counts in
    each) and the peak of the tree's summed PSS (a shared page split between its sharers,
    so the tree's pages count once)."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.peak_rss_kb: dict[int, int] = {}
        self.peak_pss_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        pss = 0
        for pid in process_tree(self.root):
            rss = _status_kb(pid, "status", "VmHWM:")
            self.peak_rss_kb[pid] = max(self.peak_rss_kb.get(pid, 0), rss)
            pss += _status_kb(pid, "smaps_rollup", "Pss:")
        self.peak_pss_kb = max(self.peak_pss_kb, pss)

    def _run(self) -> None:
        while not self._stop.wait(MEMORY_SAMPLE_S):
            self._sample()

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        return {
            "tree_processes": len(self.peak_rss_kb),
            "tree_rss_mb": sum(self.peak_rss_kb.values()) / 1024,
            "tree_pss_mb": self.peak_pss_kb / 1024,
        }


def written_mb() -> float | None:
    """MB this process has passed to write calls so far (Linux /proc/self/io ``wchar``: its
    database file, journal or WAL and checkpoints, and logs; not socket sends), or None
    where the kernel does not keep it. Unlike the timings, the same poll writes the same
    amount on any machine, busy or not: a steady measure of what storing costs."""
    try:
        with open("/proc/self/io") as f:
            fields = dict(line.split(":", 1) for line in f.read().splitlines())
        return int(fields["wchar"]) / 1e6
    except (OSError, KeyError, ValueError):
        return None


def steal_s() -> float | None:
    """CPU time the hypervisor gave this machine's CPUs to other guests since boot, summed
    over the CPUs (``steal`` of /proc/stat's ``cpu`` line); ``None`` where it is not kept.
    A run during which it grows had less of the machine than its CPU count says."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = f.readline().split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _run_measured(side: str, args: list[str]) -> dict[str, Any]:
    """Run one side's poll (``args``, which prints its figures as JSON on its last line) to
    its end, sampling its process tree's memory from here; the figures, the memory and the
    CPU steal during the run (``steal_s``, absent where the kernel does not keep it)."""
    steal_before = steal_s()
    proc = subprocess.Popen(
        args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    memory = _TreeMemory(proc.pid)
    stdout, stderr = proc.communicate()
    sampled: dict[str, float] = memory.stop()
    steal_after = steal_s()
    if steal_before is not None and steal_after is not None:
        sampled["steal_s"] = steal_after - steal_before
    if proc.returncode != 0:
        raise SystemExit(f"{side} poll failed:\n{stderr[-3000:]}")
    return dict(json.loads(stdout.strip().splitlines()[-1])) | sampled


def per_round(ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> str:
    """Each round's first-poll items/s of both sides and their ratio (where ``reader`` ran),
    the CPU steal during each run (a round with steal says little), and, where the parse
    processes were started before the first poll, how long that start took (outside the
    timed polls)."""

    def listed(values: list[float], fmt: str) -> str:
        return ", ".join(format(v, fmt) for v in values)

    def steals(runs: list[dict[str, Any]]) -> str:
        return ", ".join(f"{r['steal_s']:.1f}" if "steal_s" in r else "-" for r in runs)

    ours_rates = _first_poll_rates(ours, "items")
    lines = [f"first poll items/s by round: ours {listed(ours_rates, ',.0f')}"]
    if theirs:
        their_rates = _first_poll_rates(theirs, "items")
        ratios = [a / b for a, b in zip(ours_rates, their_rates, strict=False)]
        lines.append(f"; reader {listed(their_rates, ',.0f')}; ratio {listed(ratios, '.2f')}")
    lines.append(f"\nCPU steal during each run, s: ours {steals(ours)}")
    if theirs:
        lines.append(f"; reader {steals(theirs)}")
    started = [r for r in ours if "parse_start_s" in r]
    if started:  # outside the timed polls, as run and worker start them
        lines.append(
            "\nparse processes' start before the first poll, s: "
            f"wall {listed([r['parse_start_s'] for r in started], '.2f')}; "
            f"their CPU {listed([r['parse_start_cpu_s'] for r in started], '.2f')}"
        )
    return "".join(lines)


# ------------------------------------------------------------------ report


def _first_poll_rates(runs: list[dict[str, Any]], what: str) -> list[float]:
    """Each run's first poll's ``what`` ("items" or "feeds") per second."""
    return [r["first"][what] / r["first"]["wall_s"] for r in runs]


def _first_poll_rate(runs: list[dict[str, Any]], what: str) -> float:
    """Median over ``runs`` of the first poll's ``what`` ("items" or "feeds") per second."""
    return statistics.median(_first_poll_rates(runs, what))


def _no_change_ms(runs: list[dict[str, Any]]) -> float:
    """Median over ``runs`` of the no-change poll's CPU in ms per feed."""
    return statistics.median(1000 * r["unchanged"]["cpu_s"] / r["unchanged"]["feeds"] for r in runs)


def _median(runs: list[dict[str, Any]], *path: str) -> float:
    values = []
    for run in runs:
        value: Any = run
        for key in path:
            value = value[key]
        values.append(float(value))
    return statistics.median(values)


def _have_written(runs: list[dict[str, Any]]) -> bool:
    """Whether every run's first poll has its MB written (not where the kernel keeps none)."""
    return all("written_mb" in run["first"] for run in runs)


def table(ours: list[dict[str, Any]], ignorant: list[dict[str, Any]], theirs: list[Any]) -> str:
    def row(name: str, us: float, them: float | None, fmt: str, better: str) -> str:
        if them is None:
            return f"| {name} | {us:{fmt}} | – | – |"
        ratio = (us / them if better == "higher" else them / us) if us and them else 0.0
        return f"| {name} | {us:{fmt}} | {them:{fmt}} | {ratio:.1f}× |"

    def first(runs: list[Any], key: str) -> float:
        return _first_poll_rate(runs, "items" if key == "items/s" else "feeds")

    def first_median(name: str, key: str, fmt: str) -> str:
        """A row of both sides' median of a first-poll measure where lower is better."""
        return row(name, _median(ours, "first", key), t and _median(t, "first", key), fmt, "lower")

    t = theirs or None
    lines = [
        "| measure (median) | detainer-watch | reader | ratio |",
        "|---|---:|---:|---:|",
        row(
            "first poll: items/s",
            first(ours, "items/s"),
            t and first(t, "items/s"),
            ",.0f",
            "higher",
        ),
        row(
            "first poll: feeds/s",
            first(ours, "feeds/s"),
            t and first(t, "feeds/s"),
            ",.1f",
            "higher",
        ),
        first_median("first poll: CPU s", "cpu_s", ".2f"),
        row(
            "first poll: CPU s, main process",
            _median(ours, "first", "main_cpu_s"),
            None,
            ".2f",
            "lower",
        ),
        row(
            "first poll: CPU s, main process, in garbage collection",
            _median(ours, "first", "gc_s"),
            None,
            ".2f",
            "lower",
        ),
        *(
            [
                first_median(
                    "first poll: MB written by the polling process (database, WAL, logs)",
                    "written_mb",
                    ",.0f",
                )
            ]
            if _have_written([*ours, *(theirs or [])])
            else []
        ),
        row(
            "no-change poll (304): client CPU ms/feed",
            _no_change_ms(ours),
            t and _no_change_ms(t),
            ".2f",
            "lower",
        ),
        row(
            "server ignores validators (200, same bytes): CPU ms/feed",
            _no_change_ms(ignorant),
            None,
            ".2f",
            "lower",
        ),
        row(
            "peak RSS MB (main process)",
            _median(ours, "rss_mb"),
            t and _median(t, "rss_mb"),
            ".0f",
            "lower",
        ),
        row(
            "peak RSS MB (main + parse workers)",
            _median(ours, "rss_total_mb"),
            None,
            ".0f",
            "lower",
        ),
        row(
            "peak RSS MB, every process (sum of each one's peak; shared pages in each)",
            _median(ours, "tree_rss_mb"),
            t and _median(t, "tree_rss_mb"),
            ".0f",
            "lower",
        ),
        row(
            "peak PSS MB, every process (shared pages split between their sharers)",
            _median(ours, "tree_pss_mb"),
            t and _median(t, "tree_pss_mb"),
            ".0f",
            "lower",
        ),
    ]
    return "\n".join(lines)


def comparison(
    ours: list[dict[str, Any]], other: list[dict[str, Any]], label: str, other_label: str
) -> str:
    """One line: the first poll's medians with our setup (``label``) and another."""
    mine, theirs = _first_poll_rate(ours, "items"), _first_poll_rate(other, "items")

    def both(*path: str, fmt: str) -> str:
        return f"{_median(ours, *path):{fmt}} against {_median(other, *path):{fmt}}"

    return (
        f"first poll, {label}: {mine:,.0f} items/s; {other_label}: {theirs:,.0f} items/s "
        f"({mine / theirs:.2f}x); main-process CPU s {both('first', 'main_cpu_s', fmt='.2f')}; "
        f"no-change poll CPU ms/feed {_no_change_ms(ours):.2f} against "
        f"{_no_change_ms(other):.2f}; peak RSS MB, main process {both('rss_mb', fmt='.0f')}; "
        f"summed over every process {both('tree_rss_mb', fmt='.0f')}; peak PSS MB "
        f"{both('tree_pss_mb', fmt='.0f')}"
        + (
            f"; first poll MB written {both('first', 'written_mb', fmt='.0f')}"
            if _have_written([*ours, *other])
            else ""
        )
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--feeds", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=20, help="our fetch concurrency")
    ap.add_argument("--server", choices=("auto", "nginx", "python"), default="auto")
    ap.add_argument("--no-reader", action="store_true")
    ap.add_argument(
        "--no-freeze",
        action="store_true",
        help="leave the start-up heap in the garbage collector (run and worker freeze it)",
    )
    ap.add_argument(
        "--parse-nice",
        type=int,
        metavar="N",
        help="our [polling] parse_nice (default: the service's default)",
    )
    ap.add_argument(
        "--compare-parse-nice",
        type=int,
        metavar="N",
        help="also poll with parse_nice = N in each round and compare first polls",
    )
    ap.add_argument(
        "--malloc-arenas",
        type=int,
        metavar="N",
        help="our malloc arena cap (default: the service's; 0: glibc's default, no cap)",
    )
    ap.add_argument(
        "--compare-malloc-arenas",
        type=int,
        metavar="N",
        help="also poll with the malloc arena cap N (0: none) in each round and compare",
    )
    ap.add_argument(
        "--migrate-in-poller",
        action="store_true",
        help="let the polling process migrate the fresh database (it then holds Alembic)",
    )
    ap.add_argument(
        "--compare-migrate-in-poller",
        action="store_true",
        help="also poll with the schema migrated by the polling process, and compare",
    )
    ap.add_argument(
        "--httpx-cli",
        action="store_true",
        help="let httpx import its command-line tool (click, rich, pygments when installed)",
    )
    ap.add_argument(
        "--compare-httpx-cli",
        action="store_true",
        help="also poll with httpx's command-line tool imported, and compare",
    )
    ap.add_argument(
        "--sqlite-cache-mb",
        type=int,
        metavar="N",
        help="our [database] sqlite_cache_mb (default: the service's default)",
    )
    ap.add_argument(
        "--compare-sqlite-cache-mb",
        type=int,
        metavar="N",
        help="also poll with a SQLite page cache of N MB in each round, and compare",
    )
    ap.add_argument(
        "--sqlite-checkpoint-mb",
        type=int,
        metavar="N",
        help="our [database] sqlite_checkpoint_mb (default: the service's default)",
    )
    ap.add_argument(
        "--compare-sqlite-checkpoint-mb",
        type=int,
        metavar="N",
        help="also poll with SQLite checkpointing its log at N MB in each round, and compare",
    )
    ap.add_argument(
        "--no-pin-poller",
        action="store_true",
        help="let our polling process's threads use every CPU ([polling] pin_poller = false)",
    )
    ap.add_argument(
        "--compare-pin-poller",
        action="store_true",
        help="also poll with the other pin_poller setting in each round, and compare",
    )
    ap.add_argument(
        "--lazy-parse-start",
        action="store_true",
        help="start our parse processes at the first poll's first document, not before it",
    )
    ap.add_argument(
        "--compare-lazy-parse-start",
        action="store_true",
        help="also poll with the other parse-process start in each round, and compare",
    )
    ap.add_argument(
        "--worker-openssl",
        action="store_true",
        help="let our parse processes load OpenSSL (ssl, _hashlib), which they keep out",
    )
    ap.add_argument(
        "--compare-worker-openssl",
        action="store_true",
        help="also poll with the other OpenSSL setting of the parse processes, and compare",
    )
    ap.add_argument(
        "--commands",
        action="store_true",
        help="also run the worker and run commands themselves once each, and print their memory",
    )
    ap.add_argument("--_ours", metavar="CONFIG", help=argparse.SUPPRESS)
    args = ap.parse_args()
    setup = OurSetup(
        args.workers,
        not args.no_freeze,
        args.parse_nice,
        args.malloc_arenas,
        not args.migrate_in_poller,
        args.httpx_cli,
        args.sqlite_cache_mb,
        args.sqlite_checkpoint_mb,
        not args.no_pin_poller,
        not args.lazy_parse_start,
        args.worker_openssl,
    )
    if args._ours:
        print(json.dumps(run_ours(Path(args._ours), setup)))
        return 0
    if not (SHARED / "feeds").is_dir():
        print(f"skipped: {SHARED / 'feeds'} is absent (the shared feed corpus)")
        return 0
    with served_corpus("bench-poll-", args.feeds, args.server) as corpus:
        tmp, names, size, servers = corpus.tmp, corpus.names, corpus.size, corpus.servers
        python = None if args.no_reader else reader_python()
        if not args.no_reader and python is None:
            print("reader: skipped (pip install reader sgmllib3k failed; offline?)")
        honest = [f"http://127.0.0.1:{servers.honest}/{n}" for n in names]
        ignoring = [f"http://127.0.0.1:{servers.ignorant}/{n}" for n in names]
        # Other setups of ours polled in each round beside the main one: (label, setup).
        variants: list[tuple[str, OurSetup]] = []
        if args.compare_parse_nice is not None:
            other = replace(setup, parse_nice=args.compare_parse_nice)
            variants.append((f"parse_nice {args.compare_parse_nice}", other))
        if args.compare_malloc_arenas is not None:
            other = replace(setup, malloc_arenas=args.compare_malloc_arenas)
            variants.append((f"malloc arenas {args.compare_malloc_arenas or 'uncapped'}", other))
        if args.compare_migrate_in_poller:
            variants.append(
                ("migrated by the polling process", replace(setup, migrate_apart=False))
            )
        if args.compare_httpx_cli:
            variants.append(("httpx with its command-line tool", replace(setup, httpx_cli=True)))
        if args.compare_sqlite_cache_mb is not None:
            other = replace(setup, sqlite_cache_mb=args.compare_sqlite_cache_mb)
            variants.append((f"SQLite page cache {args.compare_sqlite_cache_mb} MB", other))
        if args.compare_sqlite_checkpoint_mb is not None:
            other = replace(setup, sqlite_checkpoint_mb=args.compare_sqlite_checkpoint_mb)
            label = f"SQLite checkpoint at {args.compare_sqlite_checkpoint_mb} MB"
            variants.append((label, other))
        if args.compare_pin_poller:
            label = "poller threads on every CPU" if setup.pin_poller else "poller on one CPU"
            variants.append((label, replace(setup, pin_poller=not setup.pin_poller)))
        if args.compare_lazy_parse_start:
            when = "by" if setup.prestart else "before"
            label = f"parse processes started {when} the first poll"
            variants.append((label, replace(setup, prestart=not setup.prestart)))
        if args.compare_worker_openssl:
            label = f"parse processes {'without' if setup.worker_openssl else 'with'} OpenSSL"
            variants.append((label, replace(setup, worker_openssl=not setup.worker_openssl)))
        runs = [("ours", honest, setup), *((k, honest, v) for k, v in variants)]
        runs.append(("ignorant", ignoring, setup))
        results: dict[str, list[dict[str, Any]]] = {kind: [] for kind, _, _ in runs}
        results["reader"] = []
        for i in range(args.rounds):
            for kind, urls, our_setup in runs:
                run_dir = Path(tempfile.mkdtemp(prefix=f"round{i}-", dir=tmp))
                results[kind].append(run_ours_subprocess(urls, run_dir, our_setup))
                print(f"round {i + 1} {kind}: {json.dumps(results[kind][-1])}", file=sys.stderr)
            if python is not None:
                run_dir = Path(tempfile.mkdtemp(prefix=f"round{i}-", dir=tmp))
                results["reader"].append(run_reader(python, honest, run_dir))
                print(f"round {i + 1} reader: {json.dumps(results['reader'][-1])}", file=sys.stderr)
        commands = []
        for command in ("worker", "run") if args.commands else ():
            run_dir = Path(tempfile.mkdtemp(prefix=f"{command}-", dir=tmp))
            commands.append(run_command(command, honest, run_dir, setup))
            print(f"{command}: {json.dumps(commands[-1])}", file=sys.stderr)
    ours, theirs = results["ours"], results["reader"]
    print(
        f"{len(names)} feeds ({size / 1e6:.1f} MB, "
        f"{ours[0]['first']['items'] / len(names):.0f} new items per feed on average), "
        f"server: {servers.kind}; {args.rounds} rounds, "
        f"{os.cpu_count()} CPUs; ours: {setup.describe()}; reader: "
        f"{'update_feeds(workers=20)' if theirs else 'not run'}\n"
    )
    print(table(ours, results["ignorant"], theirs))
    print("\n" + per_round(ours, theirs))
    for label, _ in variants:
        print("\n" + comparison(ours, results[label], "as in the table", label))
    if commands:
        print("\nThe commands themselves, one run each:\n\n" + commands_table(commands))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
