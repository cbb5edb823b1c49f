"""Heap settings for the commands that poll or serve (``run``, ``worker``, ``poll``, the API):
the garbage collector's and the C allocator's.

Nothing here runs at import; the commands call ``limit_malloc_arenas`` before they start any
thread and ``freeze_startup_heap`` once they have built their parts.
"""

from __future__ import annotations

import gc
import os

# glibc malloc arenas a process may use: two. By default glibc gives each thread that
# allocates its own arena, up to 8 per core, and hands little of an arena's freed memory back
# to the system, so every fetch thread's share of the documents it read stayed resident.
# With two, a 500-feed first poll's main process peaked at 115 MB instead of 119 in each of
# 5 rounds, at the same speed, and a 5,000-feed one at 132 instead of 145 MB (the no-change
# polls after it cost a little more CPU in 3 of 4 rounds; README "Polling performance";
# bench/bench_poll.py --compare-malloc-arenas 0). CPython allocates small objects itself,
# under the GIL, so threads seldom wait on malloc's lock.
MALLOC_ARENAS = 2
# mallopt's parameter number for the arena limit (<malloc.h>: M_ARENA_MAX).
_M_ARENA_MAX = -8


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Cap the process's glibc malloc arenas at ``arenas``; call before starting threads
    (an arena made before stays). Returns whether the cap was set: not on other C libraries,
    and not when ``MALLOC_ARENA_MAX`` is in the environment (glibc applied it already, and the
    operator's choice wins)."""
    if arenas <= 0 or "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError):  # no such name on this system
        libc = ""
    if not libc.startswith("glibc"):
        return False
    try:
        import ctypes

        mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    except (ImportError, OSError):  # a Python built without ctypes: run with glibc's default
        return False
    return mallopt is not None and mallopt(_M_ARENA_MAX, arenas) == 1


def freeze_startup_heap() -> None:
    """Leave the objects built at start-up (modules, app, engine, matcher and gazetteer)
    out of every later garbage collection: call once everything is built, before serving.

    A full collection walks every tracked object. With the ~130,000 a started API holds it
    paused whichever request set it off for 70-90 ms, every few hundred requests on the
    2-core VM, against 1-4 ms once they are frozen (README "Query performance"). A poller's
    collections walked its matcher and gazetteer again and again: 0.57 s of a 500-feed
    first poll's 6.98 s of main-process CPU, 0.25 s frozen (bench/bench_poll.py, with and
    without --no-freeze).
    The cost: a reference cycle among those objects dropped later is never freed.
    """
    gc.collect()
    gc.freeze()
