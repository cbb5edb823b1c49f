"""Memory settings for the commands that poll or serve (``run``, ``worker``, ``poll``, the
API): the garbage collector's, the C allocator's and what httpx imports.

Nothing here runs at import; the commands call ``limit_malloc_arenas`` and
``import_httpx_without_cli`` before they start any thread or import httpx, and
``freeze_startup_heap`` once they have built their parts; a parse process calls
``keep_openssl_out`` before its imports and ``release_free_heap`` after each document.
"""

from __future__ import annotations

import functools
import gc
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable

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
    mallopt = _glibc_function("mallopt")
    return mallopt is not None and mallopt(_M_ARENA_MAX, arenas) == 1


def release_free_heap() -> bool:
    """Hand the memory the C allocator holds free back to the system (glibc's
    ``malloc_trim``); returns whether it was called (not on other C libraries).

    A parse process calls it after each document. glibc returns freed memory on its own
    only from the top of its heap, so the pages a parsed document's medium-sized strings
    freed below a live allocation stayed resident, in each process: every process together
    peaked at a PSS of 148.6-149.9 MB over a 500-feed first poll instead of 151.1-153.5
    (8 polls each way, alternating; bench/bench_poll.py), at ~0.08 ms a document against
    the ~17 ms its parsing takes (a timing probe over the shared feeds). The poller's own
    process gained nothing consistent from it."""
    trim = _glibc_function("malloc_trim")
    if trim is None:
        return False
    trim(0)
    return True


@functools.cache
def _glibc_function(name: str) -> Callable[..., int] | None:
    """glibc's function ``name`` through ctypes, or None: another C library, or a Python
    built without ctypes (then the process runs with the allocator's defaults)."""
    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError):  # no such name on this system
        libc = ""
    if not libc.startswith("glibc"):
        return None
    try:
        import ctypes

        function: Callable[..., int] | None = getattr(ctypes.CDLL(None), name, None)
    except (ImportError, OSError):
        return None
    return function


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


# httpx imports its command-line tool, ``httpx._main``, whenever click, pygments and rich are
# installed (the dev extras install all three; uvicorn needs click), and falls back to a stub
# ``httpx.main`` when that import fails. The service never runs that tool: without it a fresh
# process of the dev virtualenv held 23.0 MB after importing httpx instead of 28.8, and
# started ~45 ms sooner (bench/bench_stages.py); a 500-feed first poll's main process peaked
# at 110 MB instead of 115, lower in each of 5 rounds, at the same speed
# (bench/bench_poll.py --compare-httpx-cli). The Docker image has no rich or pygments.
HTTPX_CLI_MODULE = "httpx._main"


def import_without(package: str, submodule: str) -> bool:
    """Import ``package`` with ``submodule`` unimportable while it loads, for a package that
    catches the ImportError of an optional part (httpx and its command-line tool). Returns
    whether the package came without it: not when either was imported already, nor when the
    package cannot import without that part (then it is imported whole, as it would be)."""
    if package in sys.modules or submodule in sys.modules:
        importlib.import_module(package)
        return False
    sys.modules[submodule] = None  # type: ignore[assignment]  # importing it now raises
    try:
        importlib.import_module(package)
    except ImportError:
        del sys.modules[submodule]
        importlib.import_module(package)  # it needs the part after all: take it whole
        return False
    finally:
        if submodule in sys.modules and sys.modules[submodule] is None:
            del sys.modules[submodule]  # asked for by name later, the part loads
    return True


def import_httpx_without_cli() -> bool:
    """Import httpx without its command-line tool (see ``HTTPX_CLI_MODULE``); call before
    anything imports httpx. Returns whether it was left out."""
    return import_without("httpx", HTTPX_CLI_MODULE)


# What a process that never opens a connection (a parse process) need not load: ``ssl``,
# which ``xml.sax`` imports through ``urllib.request`` and which loads OpenSSL's libssl and
# libcrypto, and ``_hashlib``, which loads libcrypto for ``hashlib``. Without them a fresh
# Python that imports ``parse_worker`` held 22 MB instead of 27 (a probe; README "Parsing in
# processes"). ``hashlib`` then hashes with Python's own modules, which give the same
# digests; ``_BUILTIN_HASHES`` are those modules.
OPENSSL_MODULES = ("ssl", "_hashlib")
_BUILTIN_HASHES = (
    ("_md5", "_sha1", "_sha2", "_sha3", "_blake2")
    if sys.version_info >= (3, 12)
    else ("_md5", "_sha1", "_sha256", "_sha512", "_sha3", "_blake2")
)


def keep_openssl_out() -> bool:
    """Make ``OPENSSL_MODULES`` unimportable in this process for good, for a process that
    never opens a TLS connection; call before anything imports ``hashlib`` or ``ssl``.
    Code that imports ``ssl`` optionally (``urllib.request``, ``http.client``) goes on
    without it; one that needs it fails at its import, not later. Returns whether they were
    kept out: not when any is imported already, nor when this Python lacks a built-in hash
    that ``hashlib`` would then have no code for (a Python built without them)."""
    if any(name in sys.modules for name in (*OPENSSL_MODULES, "hashlib")):
        return False
    if any(importlib.util.find_spec(name) is None for name in _BUILTIN_HASHES):
        return False
    for name in OPENSSL_MODULES:
        sys.modules[name] = None  # type: ignore[assignment]  # importing it now raises
    return True
