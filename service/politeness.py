"""Per-host politeness: at most N requests at once to one host, and a minimum spacing
between the starts of two requests to it.

I/O (it sleeps). ``HostGate`` is shared by every fetch thread of a process; it only
delays callers and never fails them, but a caller that passes a stop event stops waiting
as soon as it is set (``Stopped``): a poller told to stop does not sit out its hosts'
spacing first. It does not limit the total number of fetches (the
poller's thread pool does) and it gates the feed's own host, not the hosts of redirect
targets (a redirect is one more request to a host we were already allowed to ask).
Limits are per process: several workers on PostgreSQL each keep their own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit

# How often a caller waiting for a busy host's slot looks at its stop event.
STOP_CHECK_S = 0.05


class Stopped(Exception):
    """The caller's stop event was set while it waited for its host's turn; nothing was
    sent."""


def host_key(url: str) -> str:
    """The politeness key of a URL: its lower-cased host and port."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    return f"{host}:{parts.port}" if parts.port else host


@dataclass
class _Host:
    slots: threading.BoundedSemaphore
    next_start: float = 0.0  # monotonic time before which no request may start
    users: int = 0  # callers holding or waiting for a slot (the entry is dropped at 0)
    lock: threading.Lock = field(default_factory=threading.Lock)


class HostGate:
    """Holds each host to ``concurrency`` requests at once, started ``delay_s`` apart."""

    def __init__(
        self,
        concurrency: int,
        delay_s: float,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        if delay_s < 0:
            raise ValueError(f"delay_s must not be negative, got {delay_s}")
        self.concurrency = concurrency
        self.delay_s = delay_s
        self._monotonic = monotonic
        self._hosts: dict[str, _Host] = {}
        self._lock = threading.Lock()

    def _enter(self, key: str) -> _Host:
        with self._lock:
            host = self._hosts.get(key)
            if host is None:
                host = self._hosts[key] = _Host(threading.BoundedSemaphore(self.concurrency))
            host.users += 1
            return host

    def _leave(self, key: str, host: _Host) -> None:
        with self._lock:
            host.users -= 1
            # Forget idle hosts so a long-running poller does not keep one entry per host
            # it ever saw; the spacing still holds because the next start is in the past.
            if host.users == 0 and host.next_start <= self._monotonic():
                self._hosts.pop(key, None)

    @contextmanager
    def slot(self, url: str, stop: threading.Event | None = None) -> Iterator[None]:
        """Wait for a free slot for the URL's host and its turn to start, then yield.

        Raises ``Stopped`` instead, without yielding, when ``stop`` is set before the turn
        comes (or already is)."""
        key = host_key(url)
        host = self._enter(key)
        try:
            self._acquire(host, stop)
            try:
                with host.lock:
                    now = self._monotonic()
                    start = max(now, host.next_start)
                    host.next_start = start + self.delay_s
                self._wait(start - now, stop)
                yield
            finally:
                host.slots.release()
        finally:
            self._leave(key, host)

    @staticmethod
    def _acquire(host: _Host, stop: threading.Event | None) -> None:
        if stop is None:
            host.slots.acquire()
            return
        while not host.slots.acquire(timeout=STOP_CHECK_S):
            if stop.is_set():
                raise Stopped

    @staticmethod
    def _wait(seconds: float, stop: threading.Event | None) -> None:
        """Sit out the host's spacing; with ``stop``, on it (and look at it even when
        there is nothing to sit out)."""
        if stop is None:
            if seconds > 0:
                time.sleep(seconds)
            return
        if stop.wait(seconds) if seconds > 0 else stop.is_set():
            raise Stopped
