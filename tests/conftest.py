"""Shared fixtures: paths, the optional ../shared data, and a real SQLite storage."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SEED = REPO / "seeds" / "boston-detainer-requests-2025.txt"
RULES = REPO / "config" / "rules" / "detainer-sanctuary.toml"


def shared_path(*parts: str) -> Path:
    """A path under ../shared, skipping the test when the checkout has no shared/ beside it."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(
            f"{path} is absent: the data-driven tests need the team's shared/ folder "
            "beside the checkout"
        )
    return path


def fresh_python(code: str, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``code`` in a fresh Python from the checkout (for what one process can do only
    once: its allocator, its first imports) and read the JSON object its last line prints."""
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[object]:
    """A migrated Storage on real SQLite (or on DW_TEST_POSTGRES_URL when ``-m postgres``)."""
    from service.storage import Storage, make_engine, migrate

    engine = make_engine(f"sqlite:///{tmp_path / 'test.db'}")
    migrate(engine)
    store = Storage(engine)
    yield store
    store.close()


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[object]:
    """A migrated Storage on real SQLite, then on PostgreSQL where DW_TEST_POSTGRES_URL is
    set (its public schema emptied first): a test taking it runs on both."""
    from sqlalchemy import text

    from service.storage import Storage, make_engine, migrate

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    else:
        url = request.getfixturevalue("pg_url")
    engine = make_engine(url)
    if request.param == "postgres":
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    migrate(engine)
    s = Storage(engine)
    yield s
    s.close()


@pytest.fixture
def pg_url() -> str:
    url = os.environ.get("DW_TEST_POSTGRES_URL")
    if not url:
        pytest.skip(
            "DW_TEST_POSTGRES_URL is not set (e.g. postgresql+psycopg://postgres@"
            "127.0.0.1:5432/test); .ci/run sets it where PostgreSQL runs"
        )
    return url


@contextmanager
def serve_app(app: Any) -> Iterator[str]:
    """Run an ASGI app with a real uvicorn server on 127.0.0.1; yields its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test API server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


# --- no traffic off the machine ---------------------------------------------------------------
# Every name look-up and connection this process makes to anything but loopback is recorded by
# an audit hook (PEP 578), and the test that made it fails: tests serve feeds, receive webhooks
# and run databases on 127.0.0.1 only, and give fake resolvers where a public name must be
# checked. (Subprocesses, such as `dw` commands and the e2e service, are outside the hook.)
# The machine's own name counts too: it names this machine, whatever address it resolves to.
LOOPBACK_NAMES = frozenset({"localhost", "::1", "0.0.0.0", "::", "", socket.gethostname()})
OFF_MACHINE: list[str] = []


def _is_loopback(host: object) -> bool:
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    if host is None:
        return True
    name = str(host)
    return name in LOOPBACK_NAMES or name.startswith(("127.", "::ffff:127."))


def _off_machine_audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "socket.getaddrinfo":
        if not _is_loopback(args[0]):
            OFF_MACHINE.append(f"looked up {args[0]!r}")
    elif event == "socket.connect":
        address = args[1]
        if isinstance(address, tuple) and address and not _is_loopback(address[0]):
            OFF_MACHINE.append(f"connected to {address!r}")


sys.addaudithook(_off_machine_audit)


@pytest.fixture(autouse=True)
def _no_traffic_off_the_machine() -> Iterator[None]:
    before = len(OFF_MACHINE)
    yield
    made = OFF_MACHINE[before:]
    if made:
        pytest.fail(
            f"this test reached past 127.0.0.1: {'; '.join(made[:5])}; serve it locally or "
            "give a fake resolver"
        )
