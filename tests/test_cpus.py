"""service.cpus and ``polling.pin_poller``: the polling process's threads on one CPU, its
parse processes on all. Pinning is checked in a child process, so that this one (and every
process the other tests start from it) keeps its CPUs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from service.cli import build
from service.config import load_config
from service.cpus import allowed_cpus, one_cpu
from service.errors import ConfigError
from tests.conftest import REPO
from tests.test_cli import config

needs_two_cpus = pytest.mark.skipif(
    len(allowed_cpus() or ()) < 2 or not Path("/proc/self/task").is_dir(),
    reason="pinning needs Linux and at least two CPUs this process may use",
)


@pytest.mark.parametrize(
    ("allowed", "pid", "expected"),
    [
        ({0, 1}, 7, 1),
        ({0, 1}, 8, 0),
        ({2, 5, 9}, 4, 5),  # the CPUs of a cpuset need not start at 0 nor be contiguous
        ({3}, 12345, 3),
    ],
)
def test_the_cpu_is_chosen_by_process_id(allowed: set[int], pid: int, expected: int) -> None:
    assert one_cpu(frozenset(allowed), pid) == expected


CHILD = """
import json, os, threading
from service.cpus import pin_to_one_cpu
from service.parse_worker import ParsePool

def affinity(tid):
    return sorted(os.sched_getaffinity(tid))

RSS = b"<rss><channel><item><title>t</title><guid>g</guid></item></channel></rss>"
started = threading.Event()
stop = threading.Event()
early = threading.Thread(daemon=True, target=lambda: (started.set(), stop.wait()))
early.start()
started.wait()
before = affinity(0)
cpus = pin_to_one_cpu()
late = {}
thread = threading.Thread(target=lambda: late.update(cpus=affinity(0)))
thread.start()
thread.join()
threads = [affinity(int(t)) for t in os.listdir("/proc/self/task")]
restored, inherited = ParsePool(1, cpus=cpus), ParsePool(1)
workers = {}
for name, pool in (("restored", restored), ("inherited", inherited)):
    assert len(pool.parse(RSS, {}, "http://127.0.0.1/f.xml").articles) == 1
    workers[name] = [affinity(pid) for pid in pool.worker_pids()]
    pool.close()
stop.set()
early.join()
print(json.dumps({"before": before, "returned": sorted(cpus), "threads": threads,
                  "late": late["cpus"], "workers": workers}))
"""


@needs_two_cpus
def test_pinning_keeps_every_thread_on_one_cpu_and_gives_parse_workers_all() -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHILD], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    before = out["before"]
    assert out["returned"] == before
    # Every thread, the one started before pinning included, is on the same single CPU,
    # and so is a thread started after.
    (cpu,) = {tuple(t) for t in out["threads"]}
    assert len(cpu) == 1 and cpu[0] in before and out["late"] == list(cpu)
    # Parse workers take every CPU back; without being told which, they keep the pin.
    assert out["workers"]["restored"] == [before]
    assert out["workers"]["inherited"] == [list(cpu)]


def test_pin_poller_off_leaves_the_process_as_it_was(tmp_path: Path) -> None:
    cfg = load_config(config(tmp_path, more="[polling]\npin_poller = false\n"), env={})
    assert cfg["polling.pin_poller"] is False
    before = allowed_cpus()
    with build(cfg, pin=True) as parts:
        assert parts.poller is not None
        assert parts.poller.parse_pool.cpus is None
    assert allowed_cpus() == before


def test_pin_poller_is_a_boolean(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="polling.pin_poller"):
        load_config(config(tmp_path, more='[polling]\npin_poller = "maybe"\n'), env={})
    path = config(tmp_path)
    assert load_config(path, env={})["polling.pin_poller"] is True
    off = load_config(path, env={"DW_POLLING_PIN_POLLER": "false"})
    assert off["polling.pin_poller"] is False
