"""Is a URL's host a public address? The SSRF check for URLs that users hand us.

I/O at the edge: resolves host names (``socket.getaddrinfo``, injectable). A feed URL
added through the API or CLI is refused when its host is, or resolves to, a loopback,
private, link-local, reserved or multicast address (unless the config allows private
addresses), so the service cannot be used to read the inside of its network. This module
does not fetch anything, and it checks at add time only: a name that later re-resolves to
a private address (DNS rebinding) is not caught here.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

# getaddrinfo's signature, trimmed to what we call; tests inject a fake resolver.
Resolver = Callable[[str, int | None], Sequence[tuple[Any, ...]]]


def system_resolver(host: str, port: int | None) -> Sequence[tuple[Any, ...]]:
    return socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)


def _not_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return _not_public(ip.ipv4_mapped)
    return (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_reserved
        or ip.is_multicast
        or ip.is_unspecified
    )


def private_address_reason(url: str, resolve: Resolver = system_resolver) -> str | None:
    """Why ``url`` must not be fetched for a user (its host is or resolves to a
    non-public address, or does not resolve), or ``None`` when every address is public."""
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        return f"{url!r} has no host"
    if host == "localhost" or host.endswith(".localhost"):
        return f"{host} is a loopback name"
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        return f"{host} is a non-public address" if _not_public(literal) else None
    try:
        infos = resolve(host, parts.port)
    except (OSError, UnicodeError) as e:
        return f"{host} does not resolve: {e}"
    addresses = {str(info[4][0]).split("%", 1)[0] for info in infos}
    if not addresses:
        return f"{host} does not resolve"
    for address in sorted(addresses):
        if _not_public(ipaddress.ip_address(address)):
            return f"{host} resolves to the non-public address {address}"
    return None
