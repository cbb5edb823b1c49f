"""A real HTTP server on 127.0.0.1 for tests that fetch feeds or receive webhooks.

    with FeedServer() as srv:
        srv.route("/feed.xml", body=b"<rss .../>", etag='"v1"')
        fetch(srv.url("/feed.xml"))
        assert srv.count("/feed.xml", status=200) == 1

Routes answer with a fixed status, headers and body. With ``etag`` / ``last_modified`` a
matching ``If-None-Match`` / ``If-Modified-Since`` gets ``304`` and no body. ``delay_s``
sleeps before answering (timeouts); ``drop`` closes the connection without answering.
Unknown paths answer 404. Every request is recorded in ``requests`` as ``(path,
headers)`` with lower-cased header names; ``path`` includes the query string when there
was one. POST bodies are kept in ``posted``. ``timings`` holds ``(path, started, finished)``
in ``time.monotonic()`` seconds for each answered or dropped request (politeness tests;
``settled_timings`` waits for the last ones).
``connections`` counts the TCP connections accepted (keep-alive tests).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

# serve_forever checks for shutdown this often; its 0.5 s default slows every test's exit.
SHUTDOWN_POLL_S = 0.02


@dataclass(frozen=True)
class Route:
    body: bytes = b""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    etag: str | None = None
    last_modified: str | None = None
    delay_s: float = 0.0
    drop: bool = False


def _etag_matches(if_none_match: str, etag: str) -> bool:
    candidates = [tag.strip() for tag in if_none_match.split(",")]
    weakless = etag.removeprefix("W/")
    return "*" in candidates or any(tag.removeprefix("W/") == weakless for tag in candidates)


def _not_modified_since(if_modified_since: str, last_modified: str) -> bool:
    if if_modified_since.strip() == last_modified.strip():
        return True
    try:
        return parsedate_to_datetime(if_modified_since) >= parsedate_to_datetime(last_modified)
    except (TypeError, ValueError, IndexError):
        return False


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that time out or hang up mid-answer are what many tests are about.
        pass


class FeedServer:
    """Context manager running a ThreadingHTTPServer in a daemon thread on a free port."""

    def __init__(self) -> None:
        self._routes: dict[str, Route] = {}
        self._lock = threading.Lock()
        self.requests: list[tuple[str, dict[str, str]]] = []
        self._answers: list[tuple[str, int | None]] = []
        # (path, headers, body) of each POST, for webhook receivers.
        self.posted: list[tuple[str, dict[str, str], bytes]] = []
        self.timings: list[tuple[str, float, float]] = []
        self.connections = 0  # TCP connections accepted (keep-alive tests)
        self._server: _QuietServer | None = None
        self._thread: threading.Thread | None = None
        self.base_url = ""

    # ------------------------------------------------------------ lifecycle

    def __enter__(self) -> FeedServer:
        self._server = _QuietServer(("127.0.0.1", 0), self._handler_class())
        port = self._server.server_address[1]
        self.base_url = f"http://127.0.0.1:{port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": SHUTDOWN_POLL_S},
            name=f"FeedServer:{port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def settled_timings(self, count: int, timeout_s: float = 5.0) -> list[tuple[str, float, float]]:
        """``timings`` once it holds ``count`` requests: a request's timing is appended
        after its response is written, so a client that has read the response can look
        before the server thread has recorded it."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self._lock:
                if len(self.timings) >= count or time.monotonic() > deadline:
                    return list(self.timings)
            time.sleep(0.005)

    # ------------------------------------------------------------ set-up

    def url(self, path: str) -> str:
        return self.base_url + (path if path.startswith("/") else "/" + path)

    def route(
        self,
        path: str,
        body: bytes = b"",
        status: int = 200,
        headers: dict[str, str] | None = None,
        etag: str | None = None,
        last_modified: str | None = None,
        delay_s: float = 0.0,
    ) -> None:
        """Answer ``path`` (replacing any earlier route for it)."""
        with self._lock:
            self._routes[path] = Route(
                body=body,
                status=status,
                headers=dict(headers or {}),
                etag=etag,
                last_modified=last_modified,
                delay_s=delay_s,
            )

    def drop(self, path: str, delay_s: float = 0.0) -> None:
        """Close connections to ``path`` without sending any response."""
        with self._lock:
            self._routes[path] = Route(drop=True, delay_s=delay_s)

    def redirect(self, path: str, to: str, status: int = 302) -> None:
        """Answer ``path`` with a redirect to ``to`` (a path or a full URL)."""
        location = self.url(to) if to.startswith("/") else to
        self.route(path, status=status, headers={"Location": location})

    # ------------------------------------------------------------ inspection

    def count(self, path: str, status: int | None = None) -> int:
        """Requests to ``path`` (with or without query), answered with ``status`` if
        given (dropped connections have status ``None``)."""
        with self._lock:
            return sum(
                1
                for seen, answered in self._answers
                if (seen == path or seen.split("?", 1)[0] == path)
                and (status is None or answered == status)
            )

    # ------------------------------------------------------------ serving

    def _lookup(self, path: str) -> Route | None:
        with self._lock:
            return self._routes.get(path) or self._routes.get(path.split("?", 1)[0])

    def _record(self, path: str, headers: dict[str, str], status: int | None) -> None:
        with self._lock:
            self.requests.append((path, headers))
            self._answers.append((path, status))

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with owner._lock:
                    owner.connections += 1

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._answer(send_body=True)

            def do_HEAD(self) -> None:
                self._answer(send_body=False)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with owner._lock:
                    owner.posted.append(
                        (self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                    )
                self._answer(send_body=True)

            def _answer(self, send_body: bool) -> None:
                started = time.monotonic()
                try:
                    self._answer_route(send_body)
                finally:
                    with owner._lock:
                        owner.timings.append((self.path, started, time.monotonic()))

            def _answer_route(self, send_body: bool) -> None:
                headers = {name.lower(): value for name, value in self.headers.items()}
                route = owner._lookup(self.path)
                if route is None:
                    route = Route(body=b"not found", status=404)
                if route.delay_s:
                    time.sleep(route.delay_s)
                if route.drop:
                    owner._record(self.path, headers, None)
                    self.close_connection = True
                    return
                status, body = route.status, route.body
                inm = headers.get("if-none-match")
                ims = headers.get("if-modified-since")
                if route.etag is not None and inm is not None:
                    if _etag_matches(inm, route.etag):
                        status, body = 304, b""
                elif route.last_modified is not None and ims is not None:
                    if _not_modified_since(ims, route.last_modified):
                        status, body = 304, b""
                owner._record(self.path, headers, status)
                self.send_response(status)
                for name, value in route.headers.items():
                    self.send_header(name, value)
                if route.etag is not None:
                    self.send_header("ETag", route.etag)
                if route.last_modified is not None:
                    self.send_header("Last-Modified", route.last_modified)
                explicit_length = any(n.lower() == "content-length" for n in route.headers)
                if status != 304 and not explicit_length:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if send_body and status != 304:
                    self.wfile.write(body)

        return Handler
