"""pipeline._ready_batches: how fetched feeds are grouped into storage transactions."""

from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Any

from service import pipeline


def done(value: Any) -> Future[Any]:
    f: Future[Any] = Future()
    f.set_result(value)
    return f


def test_ready_results_share_a_batch_up_to_its_size() -> None:
    futures = iter([done(i) for i in range(7)])
    batches = list(pipeline._ready_batches(futures, 3, threading.Event()))
    assert batches == [[0, 1, 2], [3, 4, 5], [6]]


def test_a_slow_fetch_ends_the_batch_and_opens_the_next() -> None:
    slow: Future[Any] = Future()
    timer = threading.Timer(10 * pipeline.STORE_WAIT_S, slow.set_result, ["slow"])
    timer.start()
    try:
        futures = iter([done("a"), done("b"), slow, done("c")])
        batches = list(pipeline._ready_batches(futures, 16, threading.Event()))
    finally:
        timer.cancel()
    # "a" and "b" are stored without waiting for "slow" beyond STORE_WAIT_S.
    assert batches == [["a", "b"], ["slow", "c"]]


def test_a_fetch_landing_within_the_wait_joins_the_batch() -> None:
    soon: Future[Any] = Future()
    timer = threading.Timer(pipeline.STORE_WAIT_S / 10, soon.set_result, ["soon"])
    timer.start()
    try:
        batches = list(pipeline._ready_batches(iter([done("a"), soon]), 16, threading.Event()))
    finally:
        timer.cancel()
    assert batches == [["a", "soon"]]


def test_stopping_cancels_what_is_not_taken_and_keeps_what_is() -> None:
    stopping = threading.Event()
    pending: list[Future[Any]] = [Future(), Future()]

    def futures() -> Any:
        yield done("a")
        stopping.set()  # SIGTERM arrives while "a" waits to be stored
        yield from pending

    batches = list(pipeline._ready_batches(futures(), 16, stopping))
    assert batches == [["a"]]
    assert all(f.cancelled() for f in pending)
