"""A real webhook receiver on 127.0.0.1 that records every POST (headers and body).

``statuses`` is the list of answers to give, in order; when it runs out every later
request gets ``default_status``. Every answer carries the body ``answer``.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


class WebhookReceiver:
    def __init__(
        self,
        statuses: list[int] | None = None,
        default_status: int = 200,
        headers: dict[str, str] | None = None,
        port: int = 0,
        delay_s: float = 0.0,
        answer: bytes = b"",
    ) -> None:
        self.statuses = list(statuses or [])
        self.default_status = default_status
        self.extra_headers = headers or {}
        self.received: list[tuple[dict[str, str], bytes, int]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                if delay_s:
                    time.sleep(delay_s)  # a slow receiver: deliveries stay in flight
                with receiver._lock:
                    status = (
                        receiver.statuses.pop(0) if receiver.statuses else receiver.default_status
                    )
                    receiver.received.append(
                        ({k.lower(): v for k, v in self.headers.items()}, body, status)
                    )
                self.send_response(status)
                for k, v in receiver.extra_headers.items():
                    self.send_header(k, v)
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/hook"

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()

    def delivered(self) -> list[tuple[dict[str, str], bytes]]:
        """Requests answered 2xx."""
        with self._lock:
            return [(h, b) for h, b, s in self.received if 200 <= s < 300]
