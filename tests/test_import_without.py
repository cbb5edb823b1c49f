"""Importing a package without an optional part (``service.heap.import_without``), and httpx
without its command-line tool as the run, worker and poll commands import it.

The package cases build small packages in a temporary directory, each under a name of its
own, so they run in this process; the httpx case needs a Python that has not imported httpx
yet, so it runs in a fresh one, which also fetches a page from a loopback server with the
httpx it got.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.heap import import_without
from tests.conftest import fresh_python

# A package whose __init__ imports its optional part as httpx does (falls back on ImportError),
# one that needs the part, and the part itself, which imports a heavy dependency.
GUARDED_INIT = """
try:
    from ._cli import main
except ImportError:
    def main():
        raise SystemExit("the command-line tool is not installed")
"""
NEEDY_INIT = "from ._cli import main\n"
PART = "import {heavy}\n\ndef main():\n    return 'the real tool'\n"


@pytest.fixture
def packages(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Names of a guarded and a needy package and of the heavy module their part imports,
    importable for the test and forgotten after it."""
    tag = uuid.uuid4().hex[:8]
    names = {"guarded": f"guarded_{tag}", "needy": f"needy_{tag}", "heavy": f"heavy_{tag}"}
    (tmp_path / f"{names['heavy']}.py").write_text("LOADED = True\n")
    for kind, init in (("guarded", GUARDED_INIT), ("needy", NEEDY_INIT)):
        package = tmp_path / names[kind]
        package.mkdir()
        (package / "__init__.py").write_text(init)
        (package / "_cli.py").write_text(PART.format(heavy=names["heavy"]))
    sys.path.insert(0, str(tmp_path))
    try:
        yield names
    finally:
        sys.path.remove(str(tmp_path))
        for module in list(sys.modules):
            if module.split(".")[0] in names.values():
                del sys.modules[module]


def test_a_guarded_part_is_left_out(packages: dict[str, str]) -> None:
    package = packages["guarded"]
    assert import_without(package, f"{package}._cli") is True
    assert package in sys.modules
    assert f"{package}._cli" not in sys.modules  # no placeholder left behind
    assert packages["heavy"] not in sys.modules
    with pytest.raises(SystemExit, match="not installed"):
        sys.modules[package].main()
    # Left out only while the package loaded: asked for by name later, the part loads.
    part = __import__(f"{package}._cli", fromlist=["main"])
    assert part.main() == "the real tool"


def test_a_package_that_needs_the_part_gets_it(packages: dict[str, str]) -> None:
    package = packages["needy"]
    assert import_without(package, f"{package}._cli") is False
    assert sys.modules[package].main() == "the real tool"
    assert packages["heavy"] in sys.modules


def test_an_imported_package_is_left_as_it_is(packages: dict[str, str]) -> None:
    package = packages["guarded"]
    __import__(package)
    assert packages["heavy"] in sys.modules
    assert import_without(package, f"{package}._cli") is False
    assert sys.modules[package].main() == "the real tool"


def test_a_missing_package_still_raises() -> None:
    with pytest.raises(ModuleNotFoundError):
        import_without(f"absent_{uuid.uuid4().hex[:8]}", "absent._cli")


HTTPX_PROBE = """
import json, sys, threading
from http.server import BaseHTTPRequestHandler, HTTPServer

from service.heap import import_httpx_without_cli

left_out = import_httpx_without_cli()
loaded = {name: name in sys.modules for name in ("httpx._main", "rich", "pygments")}

class Page(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass

server = HTTPServer(("127.0.0.1", 0), Page)
threading.Thread(target=server.serve_forever, daemon=True).start()
import httpx
with httpx.Client() as client:
    response = client.get(f"http://127.0.0.1:{server.server_port}/")
server.shutdown()
print(json.dumps({"left_out": left_out, "loaded": loaded,
                  "status": response.status_code, "body": response.text}))
"""


def test_httpx_comes_without_its_command_line_tool_and_still_fetches() -> None:
    got = fresh_python(HTTPX_PROBE)
    assert got["left_out"] is True
    assert got["loaded"] == {"httpx._main": False, "rich": False, "pygments": False}
    assert (got["status"], got["body"]) == (200, "ok")
