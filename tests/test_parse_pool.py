"""service.parse_worker.ParsePool: the worker processes every fetch thread shares."""

from __future__ import annotations

import gc
import json
import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest

from service import parse_worker
from service.fetch import Fetcher, build_client
from service.match import Matcher
from service.parse_worker import PARSE_ATTEMPTS, ParsedDocument, ParsePool
from service.pipeline import Poller, PollSettings
from service.storage import Storage
from tests.conftest import RULES
from tests.procs import descendants, running
from tests.seedfeed import other_items, rss
from tests.servers import FeedServer

RSS = b"<rss><channel><item><title>One item</title><guid>g1</guid></item></channel></rss>"
THREADS = 16

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/stat").exists(), reason="counts processes in /proc (Linux)"
)


def _ours() -> set[int]:
    """The live processes this test process started, and theirs."""
    return descendants(os.getpid())


def test_threads_submitting_at_once_start_one_set_of_workers() -> None:
    """A poll's fetch threads hand over their first documents together; the pool must start
    its workers once, not once per thread that found it not started yet. The workers are
    the only processes it starts: no fork server, no resource tracker beside them."""
    pool = ParsePool(processes=2)
    before = _ours()
    together = threading.Barrier(THREADS)

    def first_document(_: int) -> ParsedDocument:
        together.wait()
        return pool.parse(RSS, {}, "http://feeds.example/rss")

    try:
        with ThreadPoolExecutor(THREADS) as threads:
            docs = list(threads.map(first_document, range(THREADS)))
        assert [len(d.articles) for d in docs] == [1] * THREADS
        started = _ours() - before
        assert started == set(pool.worker_pids())
        assert len(started) == pool.processes
    finally:
        pool.close()
    assert not running(_ours() - before), "close() leaves no worker behind"


class _ExitWhenUnpickled:
    """Handed to a worker with a document, it ends the worker process on arrival, as the OOM
    killer or a crash in C code would: unpickling it calls ``os._exit``."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (os._exit, (70,))


def _kill_workers(pool: ParsePool) -> None:
    """SIGKILL every worker of the pool and wait until they are gone."""
    pids = pool.worker_pids()
    assert pids
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while running(set(pids)):  # a zombie is gone, only not reaped yet
        assert time.monotonic() < deadline, "killed workers still alive"
        time.sleep(0.02)


def test_killed_workers_are_replaced(caplog: pytest.LogCaptureFixture) -> None:
    pool = ParsePool(processes=2)
    try:
        assert len(pool.parse(RSS, {}, "http://feeds.example/rss").articles) == 1
        killed = set(pool.worker_pids())
        _kill_workers(pool)
        with caplog.at_level(logging.WARNING, logger="service.parse_worker"):
            docs = [pool.parse(RSS, {}, "http://feeds.example/rss") for _ in range(3)]
        assert [(d.error, len(d.articles)) for d in docs] == [(None, 1)] * 3
        assert set(pool.worker_pids()).isdisjoint(killed)
        assert pool.worker_pids()  # new workers, started as documents came
        assert "a parse process died" in caplog.text
    finally:
        pool.close()


def test_a_document_whose_workers_keep_dying_is_an_error_not_a_crash() -> None:
    pool = ParsePool(processes=1)
    before = _ours()
    try:
        killer: Any = {"x-exit": _ExitWhenUnpickled()}
        doc = pool.parse(RSS, killer, "http://feeds.example/rss")
        assert doc.parsed is None and doc.articles == ()
        assert doc.error is not None
        assert f"died {PARSE_ATTEMPTS} times" in doc.error
        assert "next poll" in doc.error
        # The pool is not left broken: the next document is parsed by new workers.
        assert len(pool.parse(RSS, {}, "http://feeds.example/rss").articles) == 1
    finally:
        pool.close()
    assert not running(_ours() - before), "close() leaves no worker behind"


def test_polling_goes_on_after_the_parse_workers_are_killed(storage: Storage) -> None:
    """A poller whose parse workers were killed between two polls (say by the OOM killer)
    parses and stores the next poll's documents; before, every later poll failed at its
    first document with BrokenProcessPool."""
    t0 = datetime(2025, 1, 23, 15, 0, tzinfo=UTC)
    pool = ParsePool(processes=2)
    client = build_client("detainer-watch-test", 5, 5, 4)
    poller = Poller(
        storage,
        Fetcher(client, 1_000_000, 10),
        Matcher.load(RULES),
        PollSettings(interval_s=600, min_interval_s=60, max_interval_s=3600, concurrency=2),
        lambda: t0,
        random.Random(0),
        parse_pool=pool,
    )
    try:
        with FeedServer() as srv:
            for n in range(3):
                srv.route(f"/f{n}.xml", body=rss(other_items(2 + n)))
                storage.add_feed(srv.url(f"/f{n}.xml"), t0)
            first = poller.poll(storage.enabled_feeds())
            assert [r.new_items for r in first] == [2, 3, 4]
            _kill_workers(pool)
            for n in range(3):  # changed documents, so each is parsed again
                srv.route(f"/f{n}.xml", body=rss(other_items(5 + n)))
            second = poller.poll(storage.enabled_feeds())
    finally:
        pool.close()
        client.close()
    assert [(r.error, r.new_items) for r in second] == [(None, 3), (None, 3), (None, 3)]


# A poller in a process of its own: it starts a pool, has a document parsed (so the workers
# run), says who its workers are, and waits to be killed.
_POLLER = f"""
import json, sys
from service.parse_worker import ParsePool
if __name__ == "__main__":
    pool = ParsePool(processes=2)
    doc = pool.parse({RSS!r}, {{}}, "http://feeds.example/rss")
    print(json.dumps([len(doc.articles), pool.worker_pids()]), flush=True)
    sys.stdin.read()
"""


def test_the_workers_of_a_killed_poller_end_with_it() -> None:
    """A poller killed with SIGKILL (or by the OOM killer) cannot shut its pool down. Its
    workers must not wait for tasks for good, each holding its memory: a service restarted
    after a crash would leave a set of them behind at every crash."""
    with subprocess.Popen(
        [sys.executable, "-c", _POLLER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as poller:
        try:
            assert poller.stdout is not None
            articles, workers = json.loads(poller.stdout.readline())
            assert articles == 1 and workers  # workers start as documents come
            started = descendants(poller.pid)
            assert set(workers) == started  # the workers, and no other process
            poller.kill()
            poller.wait(10)
            deadline = time.monotonic() + 10
            while running(started):
                assert time.monotonic() < deadline, (
                    f"the killed poller's processes still run: {sorted(running(started))}"
                )
                time.sleep(0.05)
        finally:
            poller.kill()
            poller.wait(10)
            for pid in running(started):
                os.kill(pid, signal.SIGKILL)


def test_workers_live_across_documents_and_close_ends_them() -> None:
    """A pool whose poller lives keeps its workers across documents (a worker ends only
    when its task pipe does); ``close`` ends every one of them, cleanly, the forked ones
    included (reaped by the first, which the poller reaps)."""
    pool = ParsePool(processes=2)
    before = _ours()
    try:
        assert len(pool.parse(RSS, {}, "http://feeds.example/rss").articles) == 1
        workers = set(pool.worker_pids())
        time.sleep(0.5)
        docs = [pool.parse(RSS, {}, "http://feeds.example/rss") for _ in range(4)]
        assert [len(d.articles) for d in docs] == [1] * 4
        assert set(pool.worker_pids()) == workers
        started = [w.process for w in pool._workers if w.process is not None]
    finally:
        pool.close()
    assert [p.returncode for p in started] == [0]  # the first of the set, which forked the other
    assert not (_ours() - before), "close() leaves no worker behind, not even a zombie"


def test_an_exception_in_a_worker_is_raised_in_the_caller() -> None:
    """What a task raises comes back to the thread that handed it over, and the worker
    stays (a bug met on one feed's input is that feed's error, not a lost worker)."""
    pool = ParsePool(processes=1)
    try:
        with pytest.raises(ValueError, match="invalid literal"):
            pool.call(int, "not a number")
        assert pool.call(int, "12") == 12
        assert len(pool.worker_pids()) == 1
    finally:
        pool.close()


def test_each_answer_reaches_the_task_it_answers() -> None:
    """Workers answer in the order they were handed tasks, two at a time each, and each
    future gets its own task's value, whichever thread handed it over."""
    pool = ParsePool(processes=2)
    try:
        with ThreadPoolExecutor(THREADS) as threads:
            values = list(threads.map(lambda n: pool.call(int, str(n)), range(200)))
        assert values == list(range(200))
    finally:
        pool.close()


def test_a_worker_holds_at_most_two_documents() -> None:
    """A third task waits until the worker, busy with one and holding the next in its
    pipe, has answered one: so a worker finishing a document finds the next without
    waiting for the poller, and no worker hoards the documents another could parse."""
    pool = ParsePool(processes=1)
    try:
        first, second = pool.submit(time.sleep, 1.0), pool.submit(time.sleep, 0)
        third: list[Any] = []
        waiting = threading.Thread(target=lambda: third.append(pool.submit(int, "3")))
        waiting.start()
        waiting.join(0.3)
        assert waiting.is_alive(), "a third task was handed over to a full worker"
        assert first.result() is None and second.result() is None
        waiting.join(10)
        assert third[0].result() == 3
    finally:
        pool.close()


def test_a_worker_leaves_what_it_inherited_out_of_its_collections() -> None:
    """The objects a worker imported, or inherited from the worker that forked it, are
    frozen, so its collections do not walk (and so copy) the pages it shares with the
    others."""
    pool = ParsePool(processes=2)
    try:
        # A task goes to the worker with the fewest waiting. With each worker busy on a
        # second's sleep, the next two tasks go one to each: the first of the set and the
        # one it forked. (Two instant tasks could both go to the first, if it answered the
        # first before the second was handed over: CI saw that.)
        def one_each(function: Callable[[], Any]) -> list[Any]:
            busy = [pool.submit(time.sleep, 1.0) for _ in range(2)]
            asked = [pool.submit(function) for _ in range(2)]
            for f in busy:
                f.result()
            return [f.result() for f in asked]

        assert set(one_each(os.getpid)) == set(pool.worker_pids())
        assert min(one_each(gc.get_freeze_count)) > 10_000
    finally:
        pool.close()


def test_a_worker_hands_back_what_each_document_freed(monkeypatch: pytest.MonkeyPatch) -> None:
    """After each document, parsed or refused, a worker hands the memory its parsing freed
    back to the system (``heap.release_free_heap``, measured in tests/test_heap.py)."""
    released: list[int] = []
    monkeypatch.setattr(parse_worker, "release_free_heap", lambda: released.append(1) or True)
    doc = parse_worker._parse_in_worker(RSS, {}, "http://feeds.example/rss", None)
    assert len(doc.articles) == 1 and released == [1]
    broken = parse_worker._parse_in_worker(b"<html>not a feed", {}, "http://feeds.example/", None)
    assert broken.error is not None and released == [1, 1]


def test_start_runs_the_workers_before_the_first_document() -> None:
    """The commands that poll start the workers once built (``start``), so that the first
    poll does not wait for them to import the parsing modules. Starting again starts none;
    the documents go to the workers started ahead; killed ones are started again."""
    pool = ParsePool(processes=2)
    before = _ours()
    try:
        assert pool.start() == 2
        workers = set(pool.worker_pids())
        assert len(workers) == 2 and workers == _ours() - before
        assert pool.start() == 2 and set(pool.worker_pids()) == workers
        docs = [pool.parse(RSS, {}, "http://feeds.example/rss") for _ in range(3)]
        assert [len(d.articles) for d in docs] == [1] * 3
        assert set(pool.worker_pids()) == workers
        _kill_workers(pool)
        # Their reader threads tell the pool, once they see the pipes end; start() then
        # replaces the workers it knows are gone.
        deadline = time.monotonic() + 10
        while pool.worker_pids():
            assert time.monotonic() < deadline, "the pool never noticed its killed workers"
            time.sleep(0.02)
        assert pool.start() == 2
        assert set(pool.worker_pids()).isdisjoint(workers)
    finally:
        pool.close()
    with pytest.raises(RuntimeError, match="closed"):
        pool.start()
    assert not running(_ours() - before), "close() leaves no worker behind"


def _loaded(names: tuple[str, ...]) -> list[str]:
    """Run in a worker: which of ``names`` it has imported."""
    return [n for n in names if sys.modules.get(n) is not None]


@pytest.mark.parametrize("openssl", [False, True])
def test_workers_keep_openssl_out_unless_told(openssl: bool) -> None:
    """A worker never opens a connection, so it does not load OpenSSL (``ssl``, which
    ``xml.sax`` would import, and ``hashlib``'s OpenSSL code). Documents parse to the same
    values either way (their guids and fingerprints are hashes)."""
    pool = ParsePool(processes=2, openssl=openssl)
    document = (
        b"<rss><channel>"
        + b"".join(
            f"<item><title>Jail honors ICE detainer {i}</title><description>Held for immigration "
            f"agents, story {i}.</description></item>".encode()
            for i in range(5)
        )
        + b"</channel></rss>"
    )
    try:
        assert pool.start() == 2
        docs = [pool.parse(document, {}, "http://feeds.example/rss") for _ in range(4)]
        loaded = [pool.call(_loaded, ("ssl", "_hashlib", "_ssl")) for _ in range(4)]
        maps = [Path(f"/proc/{pid}/maps").read_text() for pid in pool.worker_pids()]
    finally:
        pool.close()
    here = ParsePool(processes=0).parse(document, {}, "http://feeds.example/rss")
    assert all(d == here for d in docs)
    if openssl:
        assert any(loaded) and any("libssl" in m for m in maps)
    else:
        assert not any(loaded)
        assert not any("libssl" in m or "libcrypto" in m for m in maps)


def test_workers_that_cannot_start_are_said_at_start_and_at_each_document(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """No Python to start a worker with (moved or deleted under a running service): the
    command says so when it starts, and each document then fails with that reason, not
    with the OSError of a process launch deep in a fetch thread."""
    from types import SimpleNamespace

    from service.cli import Parts, start_parse_processes

    pool = ParsePool(processes=2)
    parts = Parts(config=cast(Any, None), storage=None, poller=SimpleNamespace(parse_pool=pool))
    opened = len(os.listdir("/proc/self/fd"))
    monkeypatch.setattr(sys, "executable", "/nonexistent/python3")
    try:
        with caplog.at_level(logging.WARNING, logger="service"):
            start_parse_processes(parts)
        assert "cannot start a parse process (/nonexistent/python3)" in caplog.text
        assert "0 of 2 parse processes started" in caplog.text
        with pytest.raises(RuntimeError, match="no parse process could be started"):
            pool.parse(RSS, {}, "http://feeds.example/rss")
        assert len(os.listdir("/proc/self/fd")) == opened, "the pipes of a failed start leak"
    finally:
        monkeypatch.undo()
        pool.close()
