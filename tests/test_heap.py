"""The malloc arena cap of the long-running commands (``service.heap.limit_malloc_arenas``),
and the parse processes' hand-back of freed memory (``service.heap.release_free_heap``).

Each case runs in a fresh Python, since the cap is process-wide and only holds for arenas
made after it: threads each allocate a large object (glibc gives a thread without an arena
a new one while the cap allows), and ``malloc_info`` then lists the process's arenas. The
hand-back case frees memory below a live block and reads the process's resident size.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import fresh_python

# Threads started by the probe; with no cap glibc allows 8 arenas per core, more than this
# many on any machine, so each thread gets its own.
THREADS = 6

PROBE = f"""
import ctypes, json, re, sys, tempfile, threading
from service.heap import limit_malloc_arenas

cap = int(sys.argv[1])
if sys.argv[2:] == ["no-ctypes"]:  # a Python built without ctypes
    saved, sys.modules["ctypes"] = sys.modules.get("ctypes"), None
    applied = limit_malloc_arenas(cap)
    sys.modules["ctypes"] = saved  # the probe's own malloc_info call needs it
else:
    applied = limit_malloc_arenas(cap) if cap >= 0 else None
barrier = threading.Barrier({THREADS})
kept = []

def allocate():
    barrier.wait()  # all alive at once: none can inherit a finished thread's arena
    kept.append(bytearray(200_000))  # malloc'd in this thread
    barrier.wait()

threads = [threading.Thread(target=allocate) for _ in range({THREADS})]
for t in threads:
    t.start()
for t in threads:
    t.join()

libc = ctypes.CDLL(None)
libc.fdopen.restype = ctypes.c_void_p
with tempfile.TemporaryFile() as f:
    stream = libc.fdopen(libc.dup(f.fileno()), b"w")
    libc.malloc_info(0, ctypes.c_void_p(stream))
    libc.fclose(ctypes.c_void_p(stream))
    f.seek(0)
    info = f.read().decode()
arenas = len(re.findall(r'<heap nr="', info))
print(json.dumps({{"applied": applied, "arenas": arenas}}))
"""


def glibc() -> bool:
    try:
        return (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    except (ValueError, OSError):
        return False


pytestmark = pytest.mark.skipif(not glibc(), reason="malloc arenas are glibc's")


def probe(cap: int, env: dict[str, str] | None = None, *flags: str) -> dict[str, object]:
    environ = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    return fresh_python(PROBE, str(cap), *flags, env=environ | (env or {}))


@pytest.mark.parametrize(
    ("cap", "env", "applied", "most"),
    [
        (-1, None, None, None),  # not called: one arena per thread, plus the main one
        (2, None, True, 2),
        (1, None, True, 1),
        (0, None, False, None),  # 0 asks for glibc's default
        # The environment's MALLOC_ARENA_MAX wins: glibc applied it, the call changes nothing.
        (1, {"MALLOC_ARENA_MAX": "3"}, False, 3),
    ],
)
def test_arena_cap(
    cap: int, env: dict[str, str] | None, applied: bool | None, most: int | None
) -> None:
    got = probe(cap, env)
    assert got["applied"] == applied
    arenas = got["arenas"]
    assert isinstance(arenas, int)
    if most is None:
        assert arenas > THREADS  # uncapped: the main arena and one per thread
    else:
        assert 1 <= arenas <= most


def test_without_ctypes_nothing_changes() -> None:
    got = probe(2, None, "no-ctypes")
    assert got["applied"] is False
    arenas = got["arenas"]
    assert isinstance(arenas, int) and arenas > THREADS


# Freed memory below a live allocation, which glibc's free() cannot hand back.
TRIM_PROBE = """
import json, sys
from service.heap import release_free_heap

def rss_mb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) // 1024 for line in f if line.startswith("VmRSS"))

blocks = [bytearray(100_000) for _ in range(2_000)]  # ~200 MB of malloc's heap, touched
last = blocks.pop()  # kept: the freed blocks lie below it
del blocks
before = rss_mb()
called = release_free_heap() if sys.argv[1:] == ["release"] else None
print(json.dumps({"called": called, "before": before, "after": rss_mb()}))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmRSS from /proc")
@pytest.mark.parametrize("release", [False, True])
def test_release_free_heap_hands_freed_memory_back(release: bool) -> None:
    got = fresh_python(TRIM_PROBE, *(["release"] if release else []))
    assert got["before"] > 150  # the freed 200 MB is still resident
    if release:
        assert got["called"] is True
        assert got["after"] < got["before"] - 150
    else:
        assert got["after"] > got["before"] - 20  # free() alone handed it back: no test
