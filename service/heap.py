"""Garbage-collector settings for the long-running commands (``run``, ``worker``, the API).

Nothing here runs at import; the commands call ``freeze_startup_heap`` once they have built
their parts.
"""

from __future__ import annotations

import gc


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
