"""``detainer-watch api`` stopped with SIGTERM (``docker stop``, systemd, compose) exits 0,
with one uvicorn process and with several, as a real process serving on 127.0.0.1.

One process used to die of the signal (exit 143): uvicorn raises the SIGTERM it handled
again once it has stopped serving. ``run`` and ``worker`` are stopped the same way in
tests/test_worker_stop.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from service.storage import make_engine, migrate
from tests.conftest import REPO, RULES, free_port
from tests.test_e2e import wait_for

pytestmark = pytest.mark.e2e


def healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_ends_the_api_with_exit_code_0(tmp_path: Path, workers: int) -> None:
    db = tmp_path / "dw.db"
    engine = make_engine(f"sqlite:///{db}")
    migrate(engine)  # the api does not migrate
    engine.dispose()
    port = free_port()
    config = tmp_path / "api.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{db}"\n[http]\nport = {port}\n'
        f'[matcher]\nrules = "{RULES}"\n',
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DW_API_TOKEN", "DW_CONFIG")}
    log = tmp_path / "api.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "service", "--config", str(config), "api"]
            + ["--workers", str(workers)],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(
            "the API's /healthz", lambda: healthy(f"http://127.0.0.1:{port}/healthz"), proc=proc
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()[-3000:]
        assert not healthy(f"http://127.0.0.1:{port}/healthz")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
