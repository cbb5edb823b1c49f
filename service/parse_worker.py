"""The CPU-bound middle of a poll: feed bytes -> parsed feed, articles and fingerprints.

Pure, and light to import (feedparser, ``parse``, ``normalize``, ``stories``, the matcher's
prefilter, ``discover`` for the error of an HTML page; no HTTP client, no database), because
it runs in worker processes: feedparser,
HTML-to-text and shingling are pure Python and hold the GIL, so threads cannot spread them
over cores while processes can (bench/bench_poll.py measures both). ``ParsePool`` owns those
processes. This module does not fetch, decide what is new or store anything (``pipeline``
does), nor run the matcher past its first step.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import gc
import logging
import os
import pickle
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from typing import Any

from service.cpus import restore_cpus
from service.discover import feed_links, is_html
from service.errors import ParseError
from service.heap import release_free_heap
from service.match.prefilter import Prefilter
from service.normalize import normalize_entry
from service.parse import parse_feed
from service.stories import article_fingerprint
from service.types import Article, Fingerprint, ParsedFeed

log = logging.getLogger(__name__)

# Processes that parse: one per core. The fetch threads and the storing thread of the main
# process mostly wait on sockets and SQLite, so they do not need a core of their own.
DEFAULT_PARSE_PROCESSES = os.cpu_count() or 1

# How much of an HTML page is searched for the feeds it announces, when a feed's URL gave a
# page: they are <link>s in its <head>, and the rest of a page of up to polling.max_bytes
# would only cost time.
PAGE_HINT_BYTES = 256 * 1024

# Times a document is handed to a set of worker processes before it is given up on, when
# each time a worker dies (killed, out of memory, a crash in C code) before it is parsed.
PARSE_ATTEMPTS = 2


@dataclass(frozen=True, slots=True)
class ParsedDocument:
    """One feed document, parsed: its entries as articles with their fingerprints, or the
    reason it could not be parsed. ``parsed`` keeps the feed's own fields (title, ttl,
    bozo error) without its entries: the articles stand for them, and not sending their
    raw HTML back to the poller too halves what each document costs to pickle and
    unpickle (~10 us an article on each side)."""

    parsed: ParsedFeed | None
    articles: tuple[Article, ...]
    fingerprints: tuple[Fingerprint, ...]
    error: str | None
    # Whether each article holds a matcher anchor (``Prefilter.holds_anchor``); ``None``
    # when parsed without a prefilter (then every article goes to the matcher).
    anchored: tuple[bool, ...] | None = None


def parse_document(
    body: bytes, headers: Mapping[str, str], url: str, prefilter: Prefilter | None = None
) -> ParsedDocument:
    """Parse, normalise and fingerprint a feed document (``url``: its final URL), and with a
    ``prefilter`` flag the articles that hold an anchor."""
    try:
        parsed = parse_feed(body, headers, url)
    except ParseError as e:
        return ParsedDocument(None, (), (), not_a_feed(f"malformed feed: {e}", body, headers, url))
    if parsed.bozo_error and not parsed.entries:
        error = f"malformed feed: {parsed.bozo_error}"
        return ParsedDocument(None, (), (), not_a_feed(error, body, headers, url))
    articles = tuple(normalize_entry(entry, parsed.title, url) for entry in parsed.entries)
    prints = tuple(article_fingerprint(a) for a in articles)
    anchored = (
        None
        if prefilter is None
        else tuple(prefilter.holds_anchor(a.title, a.summary, a.text) for a in articles)
    )
    return ParsedDocument(replace(parsed, entries=()), articles, prints, None, anchored)


def not_a_feed(error: str, body: bytes, headers: Mapping[str, str], url: str) -> str:
    """``error`` for a document that is no feed, said first what to do when it is an HTML
    page: a site's address given where its feed's belongs is the usual cause, and the feed
    the page announces (``discover``) is the fix (shown in ``feeds list`` and the API)."""
    if not is_html(body, headers):
        return error
    links = feed_links(body[:PAGE_HINT_BYTES], url)
    if not links:
        return (
            "an HTML page, not a feed, that announces no feed (a site's page given for its "
            f"feed, or a login, error or bot-check page) ({error})"
        )
    return (
        f"an HTML page, not a feed: it announces the feed {links[0]}; add that URL instead "
        f"(`detainer-watch feeds add` finds it from the page's) ({error})"
    )


@functools.lru_cache(maxsize=1)
def _prefilter_for(anchors: tuple[tuple[str, bool], ...]) -> Prefilter:
    """The worker's prefilter for these anchors, built once and kept until other anchors
    come (every task names the anchors of the poller's current rules, which a SIGHUP reload
    changes; rebuilding the automaton per document would cost more than it saves)."""
    return Prefilter(anchors)


def _parse_in_worker(
    body: bytes, headers: Mapping[str, str], url: str, anchors: tuple[tuple[str, bool], ...] | None
) -> ParsedDocument:
    prefilter = None if anchors is None else _prefilter_for(anchors)
    try:
        return parse_document(body, headers, url, prefilter)
    finally:
        release_free_heap()  # what the document's parsing freed (heap.release_free_heap)


# ------------------------------------------------------------------------ worker processes
#
# A set of workers is one new Python that imports this module (``_WORKER_MAIN``), then
# forks the others: they share the pages of what it imported, as they did when they came
# from multiprocessing's fork server, without the fork server itself and the resource
# tracker multiprocessing starts beside it, two more processes that never parse (at 500
# feeds, every process together peaked at 172-173 MB of summed RSS and 134-135 of PSS
# against 209-210 and 151-152 with them: bench/bench_poll.py, README). Each worker has a
# pipe for tasks and one for results; the poller holds the other ends, so a worker sees its
# poller gone (exited, killed, out of memory) as the end of its task pipe and exits, and the
# poller sees a worker gone as the end of its result pipe.

# Seconds a new worker may take to start (import this module and say its process id), and
# to end once its task pipe is closed.
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0

# Documents a worker may hold at once: the one it parses and the next, waiting in its pipe.
TASKS_PER_WORKER = 2

# What the first worker of a set runs (``python -c``): ``OPENSSL`` ("openssl" or
# "no-openssl"), then the arguments of ``_worker_main``. A worker never opens a connection,
# so by default it keeps OpenSSL out before it imports anything (``heap.keep_openssl_out``):
# 164-165 MB of summed RSS at 500 feeds instead of 171-172 (bench/bench_poll.py
# --compare-worker-openssl).
_WORKER_MAIN = (
    "import sys; from service.heap import keep_openssl_out; "
    "sys.argv[1] == 'openssl' or keep_openssl_out(); "
    "from service.parse_worker import _worker_main; _worker_main(sys.argv[2:])"
)


def _serve(fds: tuple[int, ...]) -> None:
    """A worker's loop on its pair of pipe ends (tasks, results): say its process id, then
    run each task it is sent (a function and its arguments, pickled) and send back its value
    or the exception it raised; end when the poller closes the task pipe or is gone."""
    tasks, results = Connection(fds[0], writable=False), Connection(fds[1], readable=False)
    results.send_bytes(pickle.dumps(os.getpid()))
    while True:
        try:
            task = tasks.recv_bytes()
        except (EOFError, OSError):
            os._exit(0)
        try:
            function, args = pickle.loads(task)
            reply: tuple[str, Any] = ("value", function(*args))
        except Exception as e:
            reply = ("raised", e)
        try:
            data = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as e:  # an unpicklable value or exception
            data = pickle.dumps(("raised", RuntimeError(f"{type(e).__name__}: {e}")))
        try:
            results.send_bytes(data)
        except OSError:
            os._exit(0)


def _worker_main(argv: Sequence[str]) -> None:
    """``_WORKER_MAIN NICE CPUS FD,FD ...``: start the workers of one set.

    This process takes the first pair of pipe ends and forks one worker for each other
    pair once its modules are imported, so that they share those pages; it leaves what it
    imported out of its garbage collections first (a collection writes to every object it
    walks, and so copied the shared pages into each worker: every process together peaked
    ~3 MB lower in PSS over a 500-feed first poll, bench/bench_poll.py). Workers run
    ``NICE`` steps of niceness below the poller, on ``CPUS`` (comma-separated) when given:
    the CPUs a poller that keeps its own threads on one may use. They ignore SIGINT: a
    Ctrl-C reaches the terminal's whole process group, and the poller ends them by closing
    their pipes as it shuts down."""
    nice, cpus_arg, *pairs = argv
    cpus = frozenset(int(c) for c in cpus_arg.split(",") if c) or None
    if int(nice):
        os.nice(int(nice))
    restore_cpus(cpus)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    fds = [tuple(int(fd) for fd in pair.split(",")) for pair in pairs]
    gc.freeze()
    # The workers forked here end when their poller goes; their exit is nothing to wait for.
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    for mine in range(1, len(fds)):
        try:
            child = os.fork()
        except OSError:
            continue  # the poller sees this pair's pipes end and starts a worker for it
        if child == 0:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            for other, pair in enumerate(fds):
                if other != mine:
                    for fd in pair:
                        os.close(fd)
            _serve(fds[mine])
    for pair in fds[1:]:
        for fd in pair:
            os.close(fd)
    _serve(fds[0])


class _Worker:
    """The poller's side of one worker: the ends of its two pipes, its process id, the
    process when the poller started it itself (the first of a set; the others are that
    one's children), the futures of the tasks it was handed and not yet answered (it
    answers in order), and the thread that reads its answers."""

    def __init__(
        self, tasks: Connection, results: Connection, process: subprocess.Popen[bytes] | None
    ) -> None:
        self.tasks = tasks
        self.results = results
        self.process = process
        self.pid = 0
        self.pending: collections.deque[Future[Any]] = collections.deque()
        self.load = 0  # tasks given to it and not answered, counted when it is chosen
        self.sending = threading.Lock()  # one task at a time, in the order of ``pending``
        self.reader: threading.Thread | None = None

    def hello(self) -> bool:
        """Wait for the worker to say its process id; False when it never will."""
        try:
            if not self.results.poll(START_TIMEOUT_S):
                return False
            self.pid = pickle.loads(self.results.recv_bytes())
            return True
        except (EOFError, OSError):
            return False

    def read(
        self, answered: Callable[[_Worker], None], gone: Callable[[_Worker, str], None]
    ) -> None:
        """The reader thread: settle each task's future with the worker's answer, in order,
        until the result pipe ends (the worker exited or died); then fail the futures still
        waiting, close the pipes and reap the process."""
        why = "its result pipe ended"
        while True:
            try:
                data = self.results.recv_bytes()
            except (EOFError, OSError) as e:
                why = type(e).__name__
                break
            future = self.pending.popleft()
            try:
                kind, value = pickle.loads(data)
            except Exception as e:
                future.set_exception(e)
            else:
                if kind == "raised":
                    future.set_exception(value)
                else:
                    future.set_result(value)
            answered(self)
        while self.pending:
            self.pending.popleft().set_exception(EOFError(f"parse process {self.pid} died"))
        self.stop()
        gone(self, why)

    def stop(self) -> None:
        """Close the poller's ends of the pipes (the worker, if alive, exits) and reap the
        process when this poller started it."""
        for end in (self.tasks, self.results):
            with contextlib.suppress(OSError):
                end.close()
        if self.process is not None:
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class ParsePool:
    """Worker processes for ``parse_document``, started by ``start`` or on first use.

    The workers are fresh Python processes that import only this module (one imports it and
    forks the others), so they start small, share what they imported, and never inherit
    the poller's threads, sockets or locks. ``processes=0`` parses in the calling thread.
    ``nice`` lowers the workers' CPU priority below the caller's by that much; ``cpus``, when
    given, are the CPUs the workers run on (all of them, for a poller pinned to one). The
    workers load no OpenSSL unless ``openssl`` (see ``_WORKER_MAIN``).

    A document goes to the worker with the fewest waiting, each holding up to
    ``TASKS_PER_WORKER`` (so that a worker finds its next document in its pipe when it
    finishes one, without waiting for the poller's threads, which share a core and the GIL);
    a thread that finds every worker full waits. A thread per worker reads its answers. A
    worker that dies (killed, out of memory, a crash in C code) is replaced by a new one at
    the next document, and the documents it held are handed over again, up to
    ``PARSE_ATTEMPTS`` times each, so that one killed worker cannot stop polling.
    """

    def __init__(
        self,
        processes: int = DEFAULT_PARSE_PROCESSES,
        nice: int = 0,
        cpus: frozenset[int] | None = None,
        openssl: bool = False,
    ) -> None:
        self.processes = processes
        # Niceness each worker adds to its own when it starts ([polling] parse_nice).
        self.nice = nice
        # The CPUs a worker takes back from a poller pinned to one ([polling] pin_poller).
        self.cpus = cpus
        # Whether the workers may load OpenSSL (``_WORKER_MAIN``); only to measure its cost.
        self.openssl = openssl
        self._workers: list[_Worker] = []  # alive, as far as the pool knows
        # Guards the workers and their loads. Every fetch thread submits, and the first
        # documents of a poll arrive at once: the workers must be started once, not once
        # per thread that found none.
        self._changed = threading.Condition()
        self._closed = False

    def _start(self, count: int) -> list[_Worker]:
        """Start ``count`` workers (one process that forks the others); those that said
        their process id, each with its reader thread."""
        pipes = [(os.pipe(), os.pipe()) for _ in range(count)]
        theirs = [(tasks_r, results_w) for (tasks_r, _), (_, results_w) in pipes]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        cpus = ",".join(str(c) for c in sorted(self.cpus or ()))
        args = [f"{r},{w}" for r, w in theirs]
        try:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    _WORKER_MAIN,
                    "openssl" if self.openssl else "no-openssl",
                    str(self.nice),
                    cpus,
                    *args,
                ],
                stdin=subprocess.DEVNULL,
                pass_fds=[fd for pair in theirs for fd in pair],
                env=env,
            )
        except OSError as e:  # no Python to run (moved, deleted), no processes left
            log.error("cannot start a parse process (%s): %s", sys.executable, e)
            for (_, tasks_w), (results_r, _) in pipes:  # ours; theirs are closed below
                os.close(tasks_w)
                os.close(results_r)
            return []
        finally:
            for pair in theirs:
                for fd in pair:
                    os.close(fd)
        started = []
        for n, ((_, tasks_w), (results_r, _)) in enumerate(pipes):
            worker = _Worker(
                Connection(tasks_w, readable=False),
                Connection(results_r, writable=False),
                process if n == 0 else None,
            )
            if not worker.hello():
                worker.stop()
                continue
            worker.reader = threading.Thread(
                target=worker.read,
                args=(self._answered, self._gone),
                name=f"parse-{worker.pid}",
                daemon=True,
            )
            worker.reader.start()
            started.append(worker)
        return started

    def start(self) -> int:
        """Start the workers now rather than at the first document; returns how many run.

        ``run`` and ``worker`` call this once they are built, so that their first poll does
        not wait for fresh Pythons to import the parsing modules, and a worker that cannot
        start is said at start-up. Those missing later (a killed worker) are still started
        on first use."""
        with self._changed:
            self._replace_missing()
            return len(self._workers)

    def _replace_missing(self) -> None:
        """Start the workers the pool lacks (the first set, or those it lost); under the
        lock. A closed pool starts none: RuntimeError."""
        if self._closed:
            raise RuntimeError("the parse pool is closed")
        missing = self.processes - len(self._workers)
        if missing > 0:
            self._workers += self._start(missing)

    def _choose(self) -> _Worker:
        """The worker with the fewest tasks waiting, once it has room for one more (counted
        as given); new workers for those the pool lost (or the first set)."""
        with self._changed:
            while True:
                self._replace_missing()
                if not self._workers:
                    raise RuntimeError(
                        f"no parse process could be started ({sys.executable} -c {_WORKER_MAIN!r})"
                    )
                worker = min(self._workers, key=lambda w: w.load)
                if worker.load < TASKS_PER_WORKER:
                    worker.load += 1
                    return worker
                self._changed.wait()

    def _answered(self, worker: _Worker) -> None:
        with self._changed:
            worker.load -= 1
            self._changed.notify()

    def _gone(self, worker: _Worker, why: str) -> None:
        """A worker's result pipe ended: forget it (the next document starts a new one)."""
        with self._changed:
            known = worker in self._workers
            if known:
                self._workers.remove(worker)
            closed = self._closed
            self._changed.notify_all()
        if known and not closed:  # said once: by the sender that found it gone, or its reader
            log.warning("a parse process died (pid %d: %s); starting a new one", worker.pid, why)

    def submit(self, function: Callable[..., Any], *args: Any) -> Future[Any]:
        """``function(*args)`` in a worker. The future holds its value or the exception it
        raised, or EOFError when the worker died after it was handed the task (the worker
        is replaced). Workers found dead before they got the task (killed while idle) are
        replaced and the task goes to another: that death was not the task's doing."""
        task = None
        for _ in range(self.processes + 1):  # every worker may have been found dead
            worker = self._choose()
            # Pickled once a worker has room: threads waiting for one (every fetch thread,
            # at the start of a poll) hold their documents, not a pickled copy too.
            task = task or pickle.dumps((function, args), protocol=pickle.HIGHEST_PROTOCOL)
            future: Future[Any] = Future()
            with worker.sending:
                worker.pending.append(future)
                try:
                    worker.tasks.send_bytes(task)
                except OSError as e:
                    # Gone before it got the task: its reader fails the future, which
                    # nobody waits for.
                    self._gone(worker, type(e).__name__)
                    continue
            return future
        raise EOFError("every parse process was found dead, and so were those started after")

    def call(self, function: Callable[..., Any], *args: Any) -> Any:
        """``function(*args)`` in a worker: its value, or the exception it raised (EOFError
        when the worker died with it)."""
        return self.submit(function, *args).result()

    def parse(
        self,
        body: bytes,
        headers: Mapping[str, str],
        url: str,
        prefilter: Prefilter | None = None,
    ) -> ParsedDocument:
        """``parse_document`` in a worker (in this thread with ``processes=0``). When the
        worker dies before the document is parsed, a new one is started and it is handed
        over again; after ``PARSE_ATTEMPTS`` such deaths the document comes back with an
        error instead (its feed is retried at its next poll, as after any error)."""
        if self.processes <= 0:
            return parse_document(body, headers, url, prefilter)
        # With a prefilter, the worker flags the articles holding one of its anchors (it
        # builds the automaton once per set of anchors and keeps the last).
        anchors = None if prefilter is None else prefilter.anchors
        for _ in range(PARSE_ATTEMPTS):
            try:
                doc: ParsedDocument = self.call(_parse_in_worker, body, dict(headers), url, anchors)
            except EOFError:
                continue
            return doc
        return ParsedDocument(
            None,
            (),
            (),
            f"the parse process died {PARSE_ATTEMPTS} times while this document was being "
            "parsed (killed, out of memory, or a crash in the parser); it is fetched and "
            "parsed again at the feed's next poll",
        )

    def worker_pids(self) -> list[int]:
        """Process ids of the live workers (for the benchmark's CPU and memory figures)."""
        with self._changed:
            return [w.pid for w in self._workers]

    def close(self) -> None:
        """End the workers: each exits when its task pipe closes. The forked ones first,
        so that the one that forked them still lives to reap them."""
        with self._changed:
            self._closed = True
            workers = sorted(self._workers, key=lambda w: w.process is not None)
            self._changed.notify_all()
        for worker in workers:
            with contextlib.suppress(OSError):
                worker.tasks.close()
            if worker.reader is not None:
                worker.reader.join(STOP_TIMEOUT_S)
        with self._changed:
            self._workers = []
