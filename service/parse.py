"""Feed document bytes + HTTP headers -> ``ParsedFeed`` of ``RawEntry`` (feedparser).

Plain UTF-8 or Latin-1 RSS is read by ``fastparse`` instead, which gives what feedparser
gives for these fields several times cheaper; everything else goes to feedparser.

Pure: feedparser only ever sees bytes we already hold (wrapped in a stream, so it can
never mistake them for a URL or a file name and fetch or open anything). This module
does *not* strip HTML, canonicalise URLs or judge relevance (``normalize``, ``match``);
it translates feedparser's loose dictionaries and exceptions into our records and
``ParseError``.
"""

from __future__ import annotations

import calendar
import io
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin
from xml.sax import SAXParseException

import feedparser

from service.errors import ParseError
from service.fastparse import parse_rss
from service.normalize import is_amp_url
from service.types import ParsedFeed, RawEntry

# feedparser's HTML sanitizer and its resolution of links inside entry HTML are off: we
# keep no HTML (``normalize.html_to_text`` drops tags, scripts and styles itself) and
# resolve entry links ourselves (``_link``), and the two cost half of feedparser's time
# (~0.28 against ~0.54 ms per entry, bench/bench_poll.py). tests/test_parse.py checks that
# every shared feed gives the same articles either way. Spelled out so a change of
# feedparser's module globals elsewhere cannot change us.
SANITIZE_HTML = False
RESOLVE_RELATIVE_URIS = False

# C0 control characters other than tab, newline and carriage return: XML 1.0 forbids them,
# but feedparser's fallback parser passes them through from a broken document (a raw NUL
# byte, a "&#0;" reference, UTF-16 read as UTF-8) and PostgreSQL refuses to store a text
# value holding NUL, which stopped every poll pass that met such an entry. Vertical tab and
# form feed become spaces (they separate words), the rest are dropped.
CONTROL_CHARACTERS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")
# The same, one by one: past ~400 characters, 29 substring tests are the cheaper way to
# find none (~1.2 us in 5 KB, where the pattern's search takes ~10 us); below, the pattern
# is (~0.2 us in a headline, where the 29 tests take ~0.7 us).
_CONTROLS = tuple(chr(c) for c in (*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20)))
_SEARCH_BY_SUBSTRINGS_FROM = 400

# Character references to UTF-16 surrogates, as software that escapes UTF-16 code units
# writes an emoji ("&#55357;&#56832;"): XML forbids them, expat refuses the document, and
# feedparser's fallback parser raises UnicodeEncodeError, so one emoji lost the whole feed.
# A high-low pair becomes the one reference it stands for, a half without its other half
# U+FFFD (``_mend_surrogate_references``). Decimal 55000-57999 and hex D800-DFFF are caught
# here; the value decides.
_SURROGATE_REFERENCE = re.compile(
    rb"&#(?:[xX]0*([dD][89a-fA-F][0-9a-fA-F]{2})|0*(5[5-7][0-9]{3}));"
)

# How much of a document to quote in a ParseError.
ERROR_SNIPPET_CHARS = 60

# Entity declarations are how XML attacks work: nested or huge internal entities expand a
# small document into gigabytes ("billion laughs", quadratic blowup) and SYSTEM entities
# read local files or URLs (XXE). Feeds never need them (none of the 48 real feeds in
# ../shared/feeds declares one), so a document that declares any is refused before a parser
# sees it. feedparser also drops such declarations and expat >= 2.4 bounds amplification,
# but this check does not depend on either. The UTF-16 spellings catch documents in
# those encodings.
ENTITY_DECLARATIONS = (
    b"<!ENTITY",
    "<!ENTITY".encode("utf-16-le"),
    "<!ENTITY".encode("utf-16-be"),
)


def _surrogate(match: re.Match[bytes]) -> int | None:
    """The UTF-16 surrogate a character reference names, or None for any other character."""
    hex_digits, decimal = match.groups()
    value = int(hex_digits, 16) if hex_digits else int(decimal)
    return value if 0xD800 <= value <= 0xDFFF else None


def _mend_surrogate_references(body: bytes) -> bytes:
    """``body`` with character references to surrogates (``_SURROGATE_REFERENCE``) made
    well-formed: a high surrogate followed at once by a low one becomes the reference to
    the character the pair encodes, any other surrogate ``&#xFFFD;``."""
    if b"&#" not in body:
        return body
    found = [(m, v) for m in _SURROGATE_REFERENCE.finditer(body) if (v := _surrogate(m))]
    if not found:
        return body
    pieces: list[bytes] = []
    done = i = 0
    while i < len(found):
        match, value = found[i]
        pieces.append(body[done : match.start()])
        low = found[i + 1] if i + 1 < len(found) else None
        if value < 0xDC00 and low and low[0].start() == match.end() and low[1] >= 0xDC00:
            pieces.append(b"&#x%X;" % (0x10000 + ((value - 0xD800) << 10) + low[1] - 0xDC00))
            done, i = low[0].end(), i + 2
        else:
            pieces.append(b"&#xFFFD;")
            done, i = match.end(), i + 1
    pieces.append(body[done:])
    return b"".join(pieces)


def _struct_to_utc(value: Any) -> datetime | None:
    """feedparser's ``*_parsed`` values are UTC ``struct_time``s."""
    if not isinstance(value, time.struct_time):
        return None
    try:
        return datetime.fromtimestamp(calendar.timegm(value), tz=UTC)
    except (OverflowError, ValueError, OSError):
        return None


def _without_controls(value: str) -> str:
    """``value`` without C0 control characters (``CONTROL_CHARACTERS``)."""
    if len(value) < _SEARCH_BY_SUBSTRINGS_FROM:
        if CONTROL_CHARACTERS.search(value) is None:
            return value
    elif not any(c in value for c in _CONTROLS):
        return value
    return CONTROL_CHARACTERS.sub(lambda m: " " if m.group() in "\x0b\x0c" else "", value)


def _text(value: Any) -> str:
    return _without_controls(value) if isinstance(value, str) else ""


def _optional(value: Any) -> str | None:
    return _without_controls(value).strip() or None if isinstance(value, str) else None


def _link(value: Any, base: str) -> str | None:
    """An entry link, resolved against the feed URL (feedparser resolves only when it
    knows the document's location, i.e. when response headers were given)."""
    link = _optional(value)
    if link is None:
        return None
    try:
        return urljoin(base, link)
    except ValueError:
        return link


def _base_url(url: str, content_location: str) -> str:
    """The document's location: its ``Content-Location`` resolved against the URL it was
    fetched from, or that URL when the header does not parse as a URL (an unclosed IPv6
    host: a server's header must not stop the document being read)."""
    try:
        return urljoin(url, content_location)
    except ValueError:
        return url


def _entry_link(entry: Mapping[str, Any], base: str) -> str | None:
    """The entry's page: a link the feed marks ``rel="canonical"``, else the main link,
    unless that is an AMP page and the feed also gives a non-AMP alternate."""
    links = [
        (str(item.get("rel") or "alternate").lower(), _link(item.get("href"), base))
        for item in entry.get("links") or ()
        if isinstance(item, Mapping)
    ]
    for rel, href in links:
        if rel == "canonical" and href:
            return href
    main = _link(entry.get("link"), base)
    if main is not None and is_amp_url(main):
        for rel, href in links:
            if rel == "alternate" and href and not is_amp_url(href):
                return href
    return main


def _entry_published(entry: Mapping[str, Any]) -> datetime | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        moment = _struct_to_utc(entry.get(key))
        if moment is not None:
            return moment
    return None


def _entry_content(entry: Mapping[str, Any]) -> str:
    """The entry's full content (``content:encoded``, Atom ``<content>``), parts joined."""
    parts = [part for part in entry.get("content") or () if isinstance(part, Mapping)]
    values = [_text(part.get("value")) for part in parts]
    return "\n".join(value for value in values if value.strip())


def _raw_entry(entry: Mapping[str, Any], url: str) -> RawEntry:
    source = entry.get("source")
    source_title = source_url = None
    if isinstance(source, Mapping):
        source_title = _optional(source.get("title"))
        source_url = _optional(source.get("href"))
    return RawEntry(
        guid=_optional(entry.get("id")),
        link=_entry_link(entry, url),
        title=_text(entry.get("title")),
        summary_html=_text(entry.get("summary")),
        content_html=_entry_content(entry),
        published=_entry_published(entry),
        source_title=source_title,
        source_url=source_url,
        author=_optional(entry.get("author")),
    )


def _ttl_minutes(feed: Mapping[str, Any]) -> int | None:
    try:
        ttl = int(str(feed.get("ttl", "")).strip())
    except ValueError:
        return None
    return ttl if ttl > 0 else None


def _describe(exc: BaseException) -> str:
    """A one-line, user-facing account of why feedparser called the document bozo."""
    detail = str(exc).strip()
    if isinstance(exc, SAXParseException):
        where = f" at line {exc.getLineNumber()}, column {exc.getColumnNumber()}"
        return f"malformed XML{where}: {exc.getMessage()}"
    if isinstance(exc, feedparser.CharacterEncodingOverride):
        return f"wrong encoding declaration: {detail}"
    if isinstance(exc, feedparser.CharacterEncodingUnknown):
        return f"unknown character encoding: {detail}"
    if isinstance(exc, feedparser.NonXMLContentType):
        return f"not served as XML: {detail}"
    name = type(exc).__name__
    return f"{name}: {detail}" if detail else name


def _snippet(body: bytes) -> str:
    head = body.lstrip()[:ERROR_SNIPPET_CHARS].decode("utf-8", "replace")
    return " ".join(head.split())


def parse_feed(
    body: bytes,
    headers: Mapping[str, str],
    url: str,
    *,
    sanitize_html: bool = SANITIZE_HTML,
    resolve_relative_uris: bool = RESOLVE_RELATIVE_URIS,
    fast: bool = True,
) -> ParsedFeed:
    """Parse a feed document.

    ``headers`` are the response headers (any case); their Content-Type tells feedparser
    the encoding. Pass ``{}`` for a document that did not come over HTTP (a file): the
    XML declaration then decides. ``url`` is the document's final URL, used only to
    resolve relative links. The two flags are feedparser's (the defaults: both off, see
    SANITIZE_HTML); tests pass True to compare with feedparser's own defaults. ``fast``:
    try ``fastparse`` first (plain UTF-8 RSS, the same result several times cheaper);
    tests pass False to compare with feedparser alone.

    Malformed documents that still yield a feed come back with ``bozo_error`` set and
    whatever entries could be recovered. Raises ``ParseError`` when the body is not a
    feed at all (empty, HTML, garbage) or is too broken to yield anything.
    """
    if not body.strip():
        raise ParseError("empty document: the response body had no content")
    if any(marker in body for marker in ENTITY_DECLARATIONS):
        raise ParseError(
            "refused: the document declares XML entities (<!ENTITY ...>), which feeds do "
            "not need and entity-expansion and external-entity (XXE) attacks use"
        )
    body = _mend_surrogate_references(body)
    response_headers = {name.lower(): value for name, value in headers.items()}
    had_content_type = "content-type" in response_headers
    if response_headers:
        # Only with real response headers: any header at all switches feedparser to
        # HTTP rules (with no Content-Type, an undeclared encoding then means ISO-8859-1
        # rather than UTF-8), which would change how a file from disk decodes.
        response_headers["content-location"] = _base_url(
            url, response_headers.get("content-location", "")
        )
    # Entry HTML is left as it is on this path, so it only stands in for feedparser when
    # feedparser would leave it too.
    lean = not sanitize_html and not resolve_relative_uris
    base = response_headers.get("content-location", "")
    result = parse_rss(body, response_headers, base) if fast and lean else None
    if result is None:
        try:
            result = feedparser.parse(
                io.BytesIO(body),
                response_headers=response_headers,
                resolve_relative_uris=resolve_relative_uris,
                sanitize_html=sanitize_html,
            )
        except Exception as e:  # feedparser's parsers raise assorted errors on odd input
            raise ParseError(f"feed parser failed: {type(e).__name__}: {e}") from e

    feed: Mapping[str, Any] = result.get("feed") or {}
    entries = tuple(
        _raw_entry(entry, url)
        for entry in result.get("entries") or ()
        if isinstance(entry, Mapping)
    )
    version = result.get("version") or ""
    title = _optional(feed.get("title"))
    link = _optional(feed.get("link"))

    exc = result.get("bozo_exception") if result.get("bozo") else None
    # "no Content-type specified" says nothing about the document itself.
    if isinstance(exc, feedparser.NonXMLContentType) and not had_content_type:
        exc = None
    bozo_error = _describe(exc) if exc is not None else None

    if not entries:
        if not version:
            reason = bozo_error or "no RSS, Atom or RDF root element"
            raise ParseError(f"not a feed ({reason}); document starts {_snippet(body)!r}")
        if bozo_error is not None and not (title or link):
            raise ParseError(f"broken feed with nothing usable: {bozo_error}")

    return ParsedFeed(
        title=title,
        link=link,
        entries=entries,
        bozo_error=bozo_error,
        ttl_minutes=_ttl_minutes(feed),
    )
