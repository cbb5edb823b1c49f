"""The guard in conftest that fails a test reaching past 127.0.0.1 (names and connections)."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from tests.conftest import OFF_MACHINE, _off_machine_audit


@pytest.mark.parametrize(
    ("event", "args", "recorded"),
    [
        ("socket.getaddrinfo", ("news.example", 443, 0, 1, 6, 0), ["looked up 'news.example'"]),
        ("socket.getaddrinfo", (b"hooks.example", 80, 0, 1, 6, 0), ["looked up b'hooks.example'"]),
        ("socket.getaddrinfo", ("127.0.0.1", 80, 0, 1, 6, 0), []),
        ("socket.getaddrinfo", ("localhost", 5432, 0, 1, 6, 0), []),
        ("socket.getaddrinfo", (socket.gethostname(), 80, 0, 1, 6, 0), []),
        ("socket.connect", (None, ("10.255.255.53", 53)), ["connected to ('10.255.255.53', 53)"]),
        ("socket.connect", (None, ("127.0.0.1", 8080)), []),
        ("socket.connect", (None, ("::1", 8080, 0, 0)), []),
        ("socket.connect", (None, "/run/postgresql/.s.PGSQL.5432"), []),  # a Unix socket
        ("open", ("/etc/hosts", "r", 0), []),
    ],
)
def test_off_machine_traffic_is_recorded(
    event: str, args: tuple[Any, ...], recorded: list[str]
) -> None:
    before = len(OFF_MACHINE)
    _off_machine_audit(event, args)
    made = OFF_MACHINE[before:]
    del OFF_MACHINE[before:]  # made by hand here, not by this test's own traffic
    assert made == recorded
