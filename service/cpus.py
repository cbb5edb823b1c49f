"""Which CPUs the poller's threads run on [I/O: the process's CPU affinity; Linux only].

Python threads take turns holding one lock, the GIL. When a process's threads run on
several cores, each turn handed from one thread to another wakes a thread on another core,
and the fetch threads of a poll hand it over at every socket call of every short request:
bare httpx, 20 threads doing conditional GETs against nginx on 127.0.0.1, cost 0.78-0.90
ms of CPU per 304 response free to use both cores of the development machine and 0.41-0.47
ms pinned to one (one thread alone: 0.36-0.42), and the pinned runs finished sooner
(0.22-0.25 s against 0.37-0.43 for 500 requests). The threads cannot use a second core for
Python code anyway. Parsing, the CPU-bound middle of a poll, runs in worker processes
(``parse_worker``), which get every CPU back when they start.

``pin_to_one_cpu`` is called by the commands that poll (``run``, ``worker``, ``poll``)
before they start threads, when ``polling.pin_poller`` is on (the default). Nothing
happens where the process may use one CPU only or the platform has no
``sched_setaffinity`` (macOS, Windows).
"""

from __future__ import annotations

import os


def allowed_cpus() -> frozenset[int] | None:
    """The CPUs this thread may run on, or None where the platform does not say."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    try:
        return frozenset(os.sched_getaffinity(0))
    except OSError:
        return None


def one_cpu(allowed: frozenset[int], pid: int) -> int:
    """The CPU a process with this id keeps its threads on: spread by process id, so that
    several workers on one machine do not all crowd onto the same core. Pure."""
    ordered = sorted(allowed)
    return ordered[pid % len(ordered)]


def _thread_ids() -> list[int]:
    try:
        return [int(name) for name in os.listdir("/proc/self/task")]
    except OSError:
        return [0]  # no /proc: the calling thread (the others start after it)


def pin_to_one_cpu() -> frozenset[int] | None:
    """Keep every thread of this process, and the threads and processes it starts later,
    on one of the CPUs it may use. Returns the CPUs it could use before (for the parse
    processes to take back), or None when nothing was pinned (one CPU, or a platform
    without CPU affinity)."""
    allowed = allowed_cpus()
    if allowed is None or len(allowed) < 2:
        return None
    cpu = one_cpu(allowed, os.getpid())
    for tid in _thread_ids():
        try:
            os.sched_setaffinity(tid, {cpu})
        except OSError:
            pass  # a thread that ended since the listing; its successors inherit the pin
    return allowed


def restore_cpus(cpus: frozenset[int] | None) -> None:
    """Let this process (a parse worker started by a pinned poller) run on ``cpus`` again."""
    if cpus:  # given only by a poller that pinned itself, so where affinity exists
        try:
            os.sched_setaffinity(0, cpus)
        except OSError:
            pass  # CPUs taken away since (a changed cpuset): keep what was inherited
