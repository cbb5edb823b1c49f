"""``service.match`` is pure: none of its modules imports an I/O library (DESIGN.md §3)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

MATCH = REPO / "service" / "match"
FORBIDDEN = {"httpx", "sqlmodel", "sqlalchemy", "fastapi", "apscheduler", "uvicorn", "requests"}
MODULES = sorted(p for p in MATCH.glob("*.py"))


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_module_source_imports_no_io_library(path: Path) -> None:
    assert not imported_roots(path) & FORBIDDEN


def test_importing_and_loading_pulls_in_no_io_library() -> None:
    code = (
        "import sys, pathlib; from service.match import Matcher; "
        "import service.match.evaluate; "
        "m = Matcher.load(pathlib.Path('config/rules/detainer-sanctuary.toml')); "
        "m.classify('ICE detainer'); "
        f"print(','.join(sorted(m for m in {sorted(FORBIDDEN)!r} if m in sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
        timeout=60,
    )
    assert out.stdout.strip() == ""
