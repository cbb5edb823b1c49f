"""Conditional GET of feeds with size and time limits: the HTTP edge of the poller.

I/O. ``Fetcher.fetch`` turns one request into one ``FetchResult`` whatever happens on
the network: httpx errors and HTTP error statuses become ``FetchStatus.ERROR`` values
with a readable message, never exceptions. It does *not* parse, decide when to retry
(``decide``) or store validators (``storage``); it only reports what the server said.
Thread-safe: a ``Fetcher`` holds no mutable state and httpx's ``Client`` may be shared
across threads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache

import httpx

from service.decide import parse_retry_after
from service.errors import BodyTooLarge, FetchError
from service.normalize import MAX_FEED_URL_BYTES, too_long
from service.politeness import HostGate
from service.types import FeedForUpdate, FetchResult, FetchStatus

DEFAULT_USER_AGENT = "detainer-watch/0.1 (+https://github.com/detainer-watch)"

# Feeds move (http -> https, FeedBurner, CMS migrations) but a long chain is a loop or a
# trap; browsers stop at 20, five is plenty for a feed.
MAX_REDIRECTS = 5

# Idle keep-alive connections per client: enough to reuse connections to the few hosts
# that serve most feeds without holding sockets to every host we ever polled.
MAX_KEEPALIVE_CONNECTIONS = 20

# Formats we can parse, most specific first; some servers answer */* with an HTML page.
ACCEPT = (
    "application/rss+xml, application/atom+xml, application/rdf+xml;q=0.9, "
    "application/xml;q=0.8, text/xml;q=0.8, */*;q=0.5"
)

# Statuses whose Retry-After is a request to come back later (RFC 9110 §10.2.3).
RETRY_AFTER_STATUSES = frozenset({429, 503})

# Read the body in pieces so the size limit holds however the server sends it.
CHUNK_BYTES = 64 * 1024

# Redirects that tell us to use the new URL from now on (RFC 9110 §15.4.2, §15.4.9);
# 302, 303 and 307 are temporary and leave the stored URL alone.
PERMANENT_REDIRECTS = frozenset({301, 308})
# Bytes of a 304's or an error's body read (and dropped) so that its connection goes back to
# the pool: a response closed before its end closes the connection, and every 304 then
# cost a new TCP connection (~0.4 ms of client CPU, and a handshake for the server).
DRAIN_BYTES = 64 * 1024


# Feed URLs whose parsed form (``httpx.URL``) is kept between polls: each feed asks for the
# same URL every poll, and httpx parses a string anew for each request (50-80 us of a
# ~600 us request for a 304 on a loopback server, a probe; README, Polling performance).
# ~470 bytes each (tracemalloc, a probe); beyond this many feeds, the least recently polled
# are parsed again.
PARSED_URLS = 4096


@lru_cache(maxsize=PARSED_URLS)
def parsed_url(url: str) -> httpx.URL:
    """``url`` as httpx parses it for a request (``httpx.InvalidURL`` if it cannot)."""
    return httpx.URL(url)


def utc_now() -> datetime:
    return datetime.now(UTC)


def build_client(
    user_agent: str, connect_timeout: float, read_timeout: float, max_connections: int
) -> httpx.Client:
    """The one HTTP client shared by every fetch (connection pooling, one UA)."""
    return httpx.Client(
        headers={"User-Agent": user_agent or DEFAULT_USER_AGENT, "Accept": ACCEPT},
        timeout=httpx.Timeout(
            connect=connect_timeout, read=read_timeout, write=read_timeout, pool=connect_timeout
        ),
        limits=httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=min(max_connections, MAX_KEEPALIVE_CONNECTIONS),
        ),
        follow_redirects=True,
        max_redirects=MAX_REDIRECTS,
    )


def permanent_target(response: httpx.Response) -> str | None:
    """Where the leading run of permanent redirects (301/308) of ``response.history`` led:
    the URL to store instead of the feed's. ``None`` without such a redirect. A chain
    that turns temporary (301 then 302) moves the feed only as far as the permanent hops,
    and one onto a URL too long to store (``MAX_FEED_URL_BYTES``) as far as the hop before."""
    target: str | None = None
    hops = [*response.history, response]
    for hop, following in zip(hops, hops[1:], strict=False):
        if hop.status_code not in PERMANENT_REDIRECTS:
            break
        url = str(following.url)
        if too_long(url, MAX_FEED_URL_BYTES):
            break
        target = url
    return target


def _drain(response: httpx.Response, limit: int) -> None:
    """Read and drop a body we do not use, up to ``limit`` bytes; a longer one (a big error
    page) is left unread and its connection is closed instead of kept."""
    size = 0
    try:
        for chunk in response.iter_raw(CHUNK_BYTES):
            size += len(chunk)
            if size > limit:
                return
    except httpx.HTTPError:
        return  # the answer is what counts; a broken body only costs the connection


def _describe_http_error(exc: httpx.HTTPError) -> str:
    detail = str(exc).strip() or type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({type(exc).__name__}): {detail}"
    if isinstance(exc, httpx.ConnectError):
        return f"could not connect: {detail}"
    if isinstance(exc, httpx.TooManyRedirects):
        return f"too many redirects (more than {MAX_REDIRECTS})"
    if isinstance(exc, httpx.RemoteProtocolError):
        return f"server broke the HTTP protocol: {detail}"
    if isinstance(exc, httpx.DecodingError):
        return f"could not decode the response body: {detail}"
    if isinstance(exc, httpx.UnsupportedProtocol):
        return f"unsupported URL scheme: {detail}"
    return f"{type(exc).__name__}: {detail}"


class Fetcher:
    """Fetches one feed at a time over a shared ``httpx.Client``.

    ``max_bytes`` bounds the body; ``total_timeout`` bounds the whole attempt (connect,
    redirects, headers and body), on top of the client's per-phase timeouts.
    """

    def __init__(
        self,
        client: httpx.Client,
        max_bytes: int,
        total_timeout: float,
        *,
        clock: Callable[[], datetime] = utc_now,
        host_gate: HostGate | None = None,
    ) -> None:
        self._client = client
        self._max_bytes = max_bytes
        self._total_timeout = total_timeout
        self._clock = clock
        self._host_gate = host_gate

    def fetch(self, feed: FeedForUpdate, stop: threading.Event | None = None) -> FetchResult:
        """One conditional GET of ``feed.url``. Never raises for network or HTTP trouble.

        With a ``HostGate``, waits for the host's turn first (the wait is not part of the
        total timeout or of ``elapsed_s``); ``politeness.Stopped`` when ``stop`` is set
        before the turn comes, nothing sent. A request under way is not cut short."""
        if self._host_gate is None:
            return self._fetch_now(feed)
        with self._host_gate.slot(feed.url, stop):
            return self._fetch_now(feed)

    def _fetch_now(self, feed: FeedForUpdate) -> FetchResult:
        started = time.monotonic()
        try:
            return self._fetch(feed, started)
        except FetchError as e:  # BodyTooLarge included
            return self._error(str(e), e.status, started)

    def _error(self, message: str, status: int | None, started: float) -> FetchResult:
        return FetchResult(
            status=FetchStatus.ERROR,
            http_status=status,
            error=message,
            elapsed_s=time.monotonic() - started,
        )

    def _request_headers(self, feed: FeedForUpdate) -> dict[str, str]:
        headers: dict[str, str] = {}
        if feed.etag:
            headers["If-None-Match"] = feed.etag
        if feed.last_modified:
            headers["If-Modified-Since"] = feed.last_modified
        return headers

    def _timeout(self) -> httpx.Timeout:
        """The client's per-phase timeouts, none longer than the whole-attempt budget."""
        base = self._client.timeout

        def bounded(value: float | None) -> float:
            return self._total_timeout if value is None else min(value, self._total_timeout)

        return httpx.Timeout(
            connect=bounded(base.connect),
            read=bounded(base.read),
            write=bounded(base.write),
            pool=bounded(base.pool),
        )

    def _fetch(self, feed: FeedForUpdate, started: float) -> FetchResult:
        deadline = started + self._total_timeout
        try:
            with self._client.stream(
                "GET",
                parsed_url(feed.url),
                headers=self._request_headers(feed),
                timeout=self._timeout(),
            ) as response:
                return self._handle(feed, response, started, deadline)
        except httpx.HTTPError as e:
            raise FetchError(_describe_http_error(e)) from e
        except httpx.InvalidURL as e:
            raise FetchError(f"invalid URL {feed.url!r}: {e}") from e

    def _handle(
        self, feed: FeedForUpdate, response: httpx.Response, started: float, deadline: float
    ) -> FetchResult:
        status = response.status_code
        headers = {name.lower(): value for name, value in response.headers.items()}
        final_url = str(response.url)
        moved_to = permanent_target(response)
        if status == httpx.codes.NOT_MODIFIED or status >= 300:
            _drain(response, DRAIN_BYTES)
        if status == httpx.codes.NOT_MODIFIED:
            return FetchResult(
                status=FetchStatus.NOT_MODIFIED,
                http_status=status,
                headers=headers,
                etag=headers.get("etag") or feed.etag,
                last_modified=headers.get("last-modified") or feed.last_modified,
                final_url=final_url,
                elapsed_s=time.monotonic() - started,
                permanent_url=moved_to,
            )
        if status >= 300:
            retry_after = None
            if status in RETRY_AFTER_STATUSES:
                retry_after = parse_retry_after(headers.get("retry-after"), self._clock())
            reason = response.reason_phrase or ""
            kind = "HTTP" if status >= 400 else "unexpected HTTP"
            return FetchResult(
                status=FetchStatus.ERROR,
                http_status=status,
                headers=headers,
                final_url=final_url,
                error=f"{kind} {status} {reason}".strip(),
                retry_after_s=retry_after,
                elapsed_s=time.monotonic() - started,
                permanent_url=moved_to,
            )
        body = self._read_body(response, deadline)
        return FetchResult(
            status=FetchStatus.OK,
            http_status=status,
            body=body,
            headers=headers,
            etag=headers.get("etag"),
            last_modified=headers.get("last-modified"),
            final_url=final_url,
            elapsed_s=time.monotonic() - started,
            permanent_url=moved_to,
        )

    def _read_body(self, response: httpx.Response, deadline: float) -> bytes:
        too_large = f"body larger than {self._max_bytes} bytes"
        declared = response.headers.get("content-length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > self._max_bytes:
            raise BodyTooLarge(f"{too_large} (Content-Length: {declared})", response.status_code)
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes(CHUNK_BYTES):
            size += len(chunk)
            if size > self._max_bytes:
                raise BodyTooLarge(too_large, response.status_code)
            if time.monotonic() > deadline:
                raise FetchError(
                    f"timed out: body not complete after {self._total_timeout:g} s",
                    response.status_code,
                )
            chunks.append(chunk)
        return b"".join(chunks)
