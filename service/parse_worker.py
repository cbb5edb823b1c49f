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

import functools
import gc
import logging
import multiprocessing
import multiprocessing.connection
import os
import threading
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace

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


def _start_worker(increment: int, cpus: frozenset[int] | None = None) -> None:
    """A worker's first steps: run ``increment`` steps of niceness below the poller, on
    ``cpus`` when given (the CPUs a poller that keeps its own threads on one may use), leave
    what it inherited out of its garbage collections, and end with the poller."""
    if increment:
        os.nice(increment)
    restore_cpus(cpus)
    # What the worker inherited from the fork server (the modules it preloaded) is left out
    # of the worker's collections: a collection writes to every object it walks, so each
    # walk copied the shared pages into the worker. Every process together peaked ~3 MB
    # lower in PSS over a 500-feed first poll (bench/bench_poll.py, 8 first polls each
    # way), the busier worker holding 18 MB of its own instead of 21 (read from /proc).
    # gc.freeze moves the generations' lists whole: it touches no object.
    gc.freeze()
    poller = multiprocessing.parent_process()
    if poller is not None:
        threading.Thread(
            target=_exit_when_gone, args=(poller.sentinel,), name="poller-watch", daemon=True
        ).start()


# A worker's exit status when it ends because its poller is gone.
ORPHAN_EXIT = 75


def _exit_when_gone(poller_sentinel: int) -> None:
    """Wait (without holding the GIL) until the poller process is gone, then end this one.

    A poller that exits normally shuts its workers down; one that is killed (SIGKILL, the
    OOM killer) cannot, and its workers would wait on the task queue for good, each holding
    its memory, and with them the fork server and resource tracker, which stay until their
    last client is gone. The sentinel reads the pipe the poller started this worker
    through; the poller holds its other end, which the kernel closes when the poller dies,
    and the sentinel is then ready."""
    multiprocessing.connection.wait([poller_sentinel])
    os._exit(ORPHAN_EXIT)


def _parse_in_worker(
    body: bytes, headers: Mapping[str, str], url: str, anchors: tuple[tuple[str, bool], ...] | None
) -> ParsedDocument:
    prefilter = None if anchors is None else _prefilter_for(anchors)
    try:
        return parse_document(body, headers, url, prefilter)
    finally:
        release_free_heap()  # what the document's parsing freed (heap.release_free_heap)


class ParsePool:
    """Worker processes for ``parse_document``, started on first use.

    Workers come from a fork server that has imported only this module, so they start
    quickly and small, and never inherit the poller's threads, sockets or locks (forking a
    threaded process can copy a held lock). ``processes=0`` parses in the calling thread.
    ``nice`` lowers the workers' CPU priority below the caller's by that much; ``cpus``, when
    given, are the CPUs the workers run on (all of them, for a poller pinned to one).

    A worker that dies leaves its executor broken for good (every later task fails at
    once): ``parse`` then starts a new set of workers and hands the document over again,
    up to ``PARSE_ATTEMPTS`` times, so that one killed worker cannot stop polling.
    """

    def __init__(
        self,
        processes: int = DEFAULT_PARSE_PROCESSES,
        nice: int = 0,
        cpus: frozenset[int] | None = None,
    ) -> None:
        self.processes = processes
        # Niceness each worker adds to its own when it starts ([polling] parse_nice).
        self.nice = nice
        # The CPUs a worker takes back from a poller pinned to one ([polling] pin_poller).
        self.cpus = cpus
        self._executor: ProcessPoolExecutor | None = None
        # Every fetch thread submits, and the first documents of a poll arrive at once: the
        # executor must be made once, not once per thread that found none (each extra one
        # was a set of worker processes, alive and idle until the poller exited).
        self._starting = threading.Lock()

    def _start(self) -> ProcessPoolExecutor:
        with self._starting:
            if self._executor is None:
                context = multiprocessing.get_context("forkserver")
                context.set_forkserver_preload([__name__])
                self._executor = ProcessPoolExecutor(
                    self.processes,
                    mp_context=context,
                    initializer=_start_worker,
                    initargs=(self.nice, self.cpus),
                )
            return self._executor

    def parse(
        self,
        body: bytes,
        headers: Mapping[str, str],
        url: str,
        prefilter: Prefilter | None = None,
    ) -> ParsedDocument:
        """``parse_document`` in a worker (in this thread with ``processes=0``). When the
        workers die before the document is parsed, new ones are started and it is handed
        over again; after ``PARSE_ATTEMPTS`` such deaths the document comes back with an
        error instead (its feed is retried at its next poll, as after any error)."""
        if self.processes <= 0:
            return parse_document(body, headers, url, prefilter)
        # With a prefilter, the worker flags the articles holding one of its anchors (it
        # builds the automaton once per set of anchors and keeps the last).
        anchors = None if prefilter is None else prefilter.anchors
        for _ in range(PARSE_ATTEMPTS):
            executor = self._executor or self._start()  # the lock only until it is started
            try:
                return executor.submit(_parse_in_worker, body, dict(headers), url, anchors).result()
            except BrokenProcessPool as e:
                self._discard(executor, e)
        return ParsedDocument(
            None,
            (),
            (),
            f"the parse process died {PARSE_ATTEMPTS} times while this document was being "
            "parsed (killed, out of memory, or a crash in the parser); it is fetched and "
            "parsed again at the feed's next poll",
        )

    def _discard(self, executor: ProcessPoolExecutor, error: BaseException) -> None:
        """Forget a broken executor, so that the next task starts new workers; the first
        thread to see it broken shuts it down and says so."""
        with self._starting:
            if self._executor is not executor:
                return  # another thread replaced it already
            self._executor = None
        log.warning("a parse process died (%s); starting new ones", error)
        executor.shutdown(wait=True, cancel_futures=True)

    def worker_pids(self) -> list[int]:
        """Process ids of the live workers (for the benchmark's CPU and memory figures)."""
        processes = getattr(self._executor, "_processes", None) or {}
        return [p.pid for p in processes.values()]

    def close(self) -> None:
        with self._starting:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
