"""service.parse_worker.ParsePool: the worker processes every fetch thread shares."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from service.parse_worker import ParsedDocument, ParsePool

RSS = b"<rss><channel><item><title>One item</title><guid>g1</guid></item></channel></rss>"
THREADS = 16

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/stat").exists(), reason="counts processes in /proc (Linux)"
)


def _grandchildren() -> set[int]:
    """Live processes whose parent is a child of this one: the fork server's children, which
    are the parse workers (multiprocessing's resource tracker has none)."""
    parent_of: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue  # exited while we looked
            parent_of[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    children = {pid for pid, parent in parent_of.items() if parent == os.getpid()}
    return {pid for pid, parent in parent_of.items() if parent in children}


def test_threads_submitting_at_once_start_one_set_of_workers() -> None:
    """A poll's fetch threads hand over their first documents together; the pool must start
    its workers once, not once per thread that found it not started yet."""
    pool = ParsePool(processes=2)
    before = _grandchildren()
    together = threading.Barrier(THREADS)

    def first_document(_: int) -> ParsedDocument:
        together.wait()
        return pool.parse(RSS, {}, "http://feeds.example/rss")

    try:
        with ThreadPoolExecutor(THREADS) as threads:
            docs = list(threads.map(first_document, range(THREADS)))
        assert [len(d.articles) for d in docs] == [1] * THREADS
        started = _grandchildren() - before
        assert started == set(pool.worker_pids())
        assert len(started) == pool.processes
    finally:
        pool.close()
    assert not (_grandchildren() - before), "close() leaves no worker behind"
