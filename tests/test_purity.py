"""Pure modules import no I/O library (DESIGN.md §3), checked in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO

PURE = [
    "service.parse",
    "service.normalize",
    "service.stories",
    "service.decide",
    "service.match",
    "service.alerts.payload",
    "service.alerts.routing",
    "service.alerts.retry",
    "service.types",
    "service.errors",
]
IO_LIBRARIES = ["httpx", "sqlmodel", "sqlalchemy", "fastapi", "apscheduler", "uvicorn"]


@pytest.mark.parametrize("module", PURE)
def test_pure_module_imports_no_io_library(module: str) -> None:
    code = f"import sys, {module}; print(','.join(m for m in {IO_LIBRARIES!r} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
        timeout=60,
    )
    assert out.stdout.strip() == "", f"{module} pulls in {out.stdout.strip()}"


def test_importing_the_service_creates_nothing(tmp_path: object) -> None:
    """Nothing is created at import: no database file, no data folder, no threads."""
    code = (
        "import threading, service.cli, service.api, service.scheduler, service.pipeline; "
        "print(threading.active_count())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=str(tmp_path),
        check=True,
        timeout=60,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    assert out.stdout.strip() == "1"
    assert list(__import__("pathlib").Path(str(tmp_path)).iterdir()) == []
