"""Turn a parsed feed entry into an ``Article``: plain text, canonical URL, UTC time, hash.

Pure: no network, no database, no clock. This module owns what "the same article" means
(canonical URL, content hash, guid fallback). It does *not* decide whether an article is
new (``decide``) or relevant (``match``), and it never fetches a page to learn more.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from html import unescape
from html.parser import HTMLParser
from urllib.parse import parse_qsl, quote_plus, urlencode, urljoin, urlsplit, urlunsplit

from service.types import Article, RawEntry

# Elements whose content is never reader-visible text.
SKIPPED_ELEMENTS = frozenset({"script", "style", "template"})

# Elements that separate words: "<p>a</p><p>b</p>" must read "a b", not "ab".
BLOCK_ELEMENTS = frozenset(
    {
        "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt",
        "figcaption", "figure", "footer", "h1", "h2", "h3", "h4", "h5", "h6", "header",
        "hr", "img", "li", "main", "nav", "ol", "p", "pre", "section", "table", "tbody",
        "td", "tfoot", "th", "thead", "tr", "ul",
    }
)  # fmt: skip

# Feeds double-escape (finanzen.net's "&amp;quot;", NYT's "&lt;div&gt;" titles), so one
# HTML pass can leave entities or tags behind; we repeat until nothing changes. Each pass
# only shortens the text, so this terminates; the cap bounds the cost of adversarial
# nesting ("&amp;amp;amp;..."), after which leftover markup starters are removed outright.
MAX_HTML_PASSES = 8

# Longest entry id and link an article keeps, in UTF-8 bytes. Both are indexed, and an entry
# of a PostgreSQL B-tree index holds at most 2,704 bytes: one longer value made its feed's
# every poll fail there. A longer id is kept as its SHA-256 (still one id per entry, the
# same at every poll); a longer link (browsers stop near 2,000 characters too) is dropped.
MAX_KEY_BYTES = 2_000

# Longest title, summary and text an article keeps, in characters (as many as the matcher
# reads of each: ``match.prefilter.MAX_FIELD_CHARS``). 200,000 characters of text are ~30
# printed pages, far beyond a news item; the cap bounds the database and the search vector
# PostgreSQL builds for a hit, which may not pass 1 MB: a 1.6 MB text of distinct words made
# its feed's every poll fail there.
MAX_ARTICLE_CHARS = {"title": 2_000, "summary": 50_000, "text": 200_000}
# Longest feed URL stored (the API's, the CLI's and a permanent redirect's), in UTF-8 bytes:
# feed URLs are indexed too.
MAX_FEED_URL_BYTES = 2_048

# Query parameters that identify a campaign or a click, never the article itself.
TRACKING_PARAMS = frozenset(
    {
        "fbclid", "gclid", "dclid", "gbraid", "wbraid", "msclkid", "yclid", "igshid",
        "mc_cid", "mc_eid", "ocid", "cmpid", "_ga", "_gl", "mkt_tok", "ito",
        "ns_mchannel", "ns_campaign", "ns_source", "ns_linkname", "ns_fee",
        "at_medium", "at_campaign", "smid", "__twitter_impression",
    }
)  # fmt: skip
TRACKING_PARAM_PREFIXES = ("utm_",)

DEFAULT_PORTS = {"http": "80", "https": "443"}

# AMP ("Accelerated Mobile Pages") variants that name their canonical page unambiguously:
# a query flag (?amp, ?amp=1; the Washington Post's ?outputType=amp), a trailing /amp path
# segment (WordPress and many other CMSs), and Google's AMP cache, whose path carries the
# origin URL (https://www-example-com.cdn.ampproject.org/c/s/www.example.com/story). An
# "amp." host is not undone (amp.example.com/x is not always www.example.com/x): where the
# feed names the canonical page, parse prefers that link instead.
AMP_FLAG_PARAMS = frozenset({"amp"})
AMP_VALUED_PARAMS = {"outputtype": "amp"}
AMP_PATH_SEGMENT = "amp"
AMP_CACHE_SUFFIX = ".cdn.ampproject.org"

# Google News titles read "Headline - Outlet"; the outlet is also in <source>.
SOURCE_SUFFIX_SEPARATOR = " - "


class _TextExtractor(HTMLParser):
    """Collects the text of an HTML fragment, skipping scripts and styles."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in SKIPPED_ELEMENTS:
            self._skip_depth += 1
        elif tag in BLOCK_ELEMENTS:
            self.parts.append(" ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in BLOCK_ELEMENTS:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in SKIPPED_ELEMENTS:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif tag in BLOCK_ELEMENTS:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._skip_depth:
            self.parts.append(data)


def _collapse(text: str) -> str:
    return " ".join(text.split())


# What html.parser gives back as text but is markup debris: unterminated constructs such
# as "<!-->" (an empty comment to browsers, text to html.parser), and an empty "<>"
# (feedparser's sanitizer dropped it; see SANITIZE_HTML in parse).
_LEFTOVER_TAG = re.compile(r"<(?:[A-Za-z/!?][^<>]*)?>")


def _debris(m: re.Match[str]) -> str:
    return "" if m.group() == "<>" else " "


# A markup declaration ("<!DOCTYPE", "<![CDATA[", "<![if ...]>") but not a comment ("<!--").
_DECLARATION = re.compile(r"<!(?!--)")


def _html_pass_parser(fragment: str) -> str:
    """One pass of ``html.parser`` over a fragment: the reference for every fragment.

    html.parser's declaration scanner raises AssertionError on some malformed declarations
    ("<![::1]", "<!-x>"); such a fragment is read again with its declarations as text, so
    that a stray "<!" in one entry cannot stop the feed's other entries being read."""
    try:
        parts = _text_parts(fragment)
    except AssertionError:
        parts = _text_parts(_DECLARATION.sub("&lt;!", fragment))
    return _collapse(_LEFTOVER_TAG.sub(_debris, "".join(parts)))


def _text_parts(fragment: str) -> list[str]:
    parser = _TextExtractor()
    parser.feed(fragment)
    parser.close()
    return parser.parts


# The tags of ordinary feed HTML, in the one shape html.parser reads in a single way: a
# plain name, attributes with plainly quoted or unquoted values. ``re.split`` on it leaves
# (text, "/" of an end tag, name, "/" of a self-closing tag, text, ...).
_PLAIN_TAG = re.compile(
    r"<(/?)([A-Za-z][A-Za-z0-9]*)"
    r"(?:\s+[A-Za-z_:][-A-Za-z0-9_:.]*(?:\s*=\s*(?:\"[^\"]*\"|'[^']*'|[^\s\"'=<>`]+))?)*"
    r"\s*(/?)>"
)
# Elements whose content html.parser reads as raw text (CDATA_CONTENT_ELEMENTS).
_RAW_TEXT_ELEMENTS = frozenset({"script", "style"})


def _html_pass_plain(fragment: str) -> str | None:
    """``_html_pass_parser``'s result for a fragment whose every "<" starts a plain tag
    (``_PLAIN_TAG``) and that has no script or style, in one regular-expression split
    instead of html.parser's per-tag Python (~4x faster on feed HTML); None for any other
    fragment (comments, CDATA, declarations, a bare "<", odd tags). tests/test_normalize.py
    compares the two on every shared feed and on generated fragments."""
    pieces = _PLAIN_TAG.split(fragment)
    parts: list[str] = []
    skip = 0
    for i in range(0, len(pieces) - 1, 4):
        text, closing, name, self_closing = pieces[i : i + 4]
        if "<" in text:
            return None
        if text and not skip:
            parts.append(unescape(text))
        name = name.lower()
        if name in _RAW_TEXT_ELEMENTS:
            return None
        if closing:
            if name in SKIPPED_ELEMENTS:
                skip = max(0, skip - 1)
            elif name in BLOCK_ELEMENTS:
                parts.append(" ")
        elif name in SKIPPED_ELEMENTS and not self_closing:
            skip += 1
        elif name in BLOCK_ELEMENTS:
            parts.append(" ")
    tail = pieces[-1]
    if "<" in tail:
        return None
    if tail and not skip:
        parts.append(unescape(tail))
    return _collapse(_LEFTOVER_TAG.sub(_debris, "".join(parts)))


def _html_pass(fragment: str) -> str:
    plain = _html_pass_plain(fragment)
    return plain if plain is not None else _html_pass_parser(fragment)


_MARKUP_START = re.compile(r"<|&(?=[#A-Za-z])")


def html_to_text(fragment: str) -> str:
    """Plain text of an HTML fragment: tags, scripts and styles dropped, entities
    unescaped, whitespace collapsed to single spaces. Idempotent:
    ``html_to_text(html_to_text(x)) == html_to_text(x)``.

    Escaped markup is unescaped until none is left, so text that *talks about* HTML
    ("write &amp;lt;p&amp;gt;") loses its examples; news copy does not need them.
    """
    text = _collapse(fragment)
    for _ in range(MAX_HTML_PASSES):
        if _MARKUP_START.search(text) is None:
            return text  # a pass would change nothing: no tag or entity can start here
        after = _html_pass(text)
        if after == text:
            return text
        text = after
    # Pathological nesting: drop whatever could still start a tag or an entity.
    return _collapse(_MARKUP_START.sub(" ", text))


# What makes a field HTML rather than plain text: a tag or a complete entity.
_HTML_HINT = re.compile(r"<[A-Za-z/!]|&(?:#\d+|#[xX][0-9A-Fa-f]+|[A-Za-z]+\d*);")


def text_of_field(value: str) -> str:
    """A field given from outside (``classify``'s input) as the poller would store it: HTML
    (a tag or an entity in it) through ``html_to_text``; plain text unchanged, its line
    breaks and spacing too."""
    return html_to_text(value) if _HTML_HINT.search(value) else value


def _canonical_netloc(scheme: str, netloc: str) -> str:
    userinfo, at, hostport = netloc.rpartition("@")
    host, port = hostport, ""
    if not hostport.endswith("]"):  # not a bare IPv6 literal such as "[::1]"
        head, colon, tail = hostport.rpartition(":")
        if colon and (tail.isdigit() or tail == ""):
            host, port = head, tail
    host = host.lower()
    if port in ("", DEFAULT_PORTS.get(scheme)):
        port = ""
    return f"{userinfo}{at}{host}{':' + port if port else ''}"


def feed_url(url: str) -> str:
    """A feed's URL as stored and compared: surrounding space stripped, scheme and host in
    lower case, the default port, an empty path's missing "/" and any fragment settled; path
    and query as given (a server may tell their case and order apart). So
    "HTTP://Example.ORG:80/rss#top" and "http://example.org/rss" are one feed, polled once.
    Anything that is not an http(s) URL comes back stripped, for the caller's own check."""
    text = url.strip()
    try:
        parts = urlsplit(text)
    except ValueError:  # a malformed IPv6 literal: the caller refuses it
        return text
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.netloc:
        return text
    netloc = _canonical_netloc(scheme, parts.netloc)
    # Stripped again: with the fragment gone, space before it would now end the URL.
    return urlunsplit((scheme, netloc, parts.path or "/", parts.query, "")).strip()


def _is_tracking(name: str) -> bool:
    lowered = name.lower()
    return lowered in TRACKING_PARAMS or lowered.startswith(TRACKING_PARAM_PREFIXES)


def _is_amp_param(name: str, value: str) -> bool:
    lowered = name.lower()
    return lowered in AMP_FLAG_PARAMS or AMP_VALUED_PARAMS.get(lowered) == value.lower()


def _from_amp_cache(netloc: str, path: str) -> tuple[str, str, str] | None:
    """(scheme, netloc, path) of the origin page of a Google AMP cache URL, else None."""
    if not netloc.endswith(AMP_CACHE_SUFFIX):
        return None
    rest = path.removeprefix("/c/")
    if rest == path:
        return None
    scheme = "https" if rest.startswith("s/") else "http"
    host, _, tail = rest.removeprefix("s/").partition("/")
    if not host:
        return None
    return scheme, host.lower(), "/" + tail


def _strip_amp_and_slash(path: str) -> str:
    """Drop trailing ``/amp`` segments and trailing slashes (the root stays ``/``)."""
    while True:
        trimmed = path.rstrip("/")
        head, sep, last = trimmed.rpartition("/")
        if sep and last.lower() == AMP_PATH_SEGMENT:
            trimmed = head
        if trimmed == path:
            return path
        path = trimmed


def is_amp_url(url: str) -> bool:
    """Whether ``url`` looks like an AMP page (an ``amp.`` host included)."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return False
    host = (parts.hostname or "").lower()
    segments = [seg.lower() for seg in parts.path.split("/")]
    params = parse_qsl(parts.query, keep_blank_values=True)
    return (
        host.startswith("amp.")
        or host.endswith(AMP_CACHE_SUFFIX)
        or AMP_PATH_SEGMENT in segments
        or any(_is_amp_param(name, value) for name, value in params)
    )


# urlsplit drops leading C0 controls and spaces (WHATWG); str.strip drops Unicode spaces.
_C0_AND_SPACE = "".join(chr(code) for code in range(0x21))


def _strip_padding(url: str) -> str:
    while True:
        stripped = url.strip().strip(_C0_AND_SPACE)
        if stripped == url:
            return url
        url = stripped


def canonical_url(url: str) -> str:
    """The form of ``url`` we compare articles by: lower-case scheme and host, no default
    port, no fragment, no tracking parameters, remaining parameters sorted, no trailing
    slash (``/story/`` and ``/story`` are one page), AMP variants that name their
    canonical page undone (``AMP_*`` above). The path's case is kept (servers may treat
    it case-sensitively). Idempotent. Strings that do not parse as URLs come back
    stripped but otherwise unchanged.
    """
    url = _strip_padding(url)
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    scheme = parts.scheme.lower()
    netloc = _canonical_netloc(scheme, parts.netloc) if parts.netloc else ""
    path = parts.path
    origin = _from_amp_cache(netloc, path) if scheme in DEFAULT_PORTS else None
    if origin is not None:
        scheme, host, path = origin
        netloc = _canonical_netloc(scheme, host)
    if netloc and scheme in DEFAULT_PORTS:
        path = _strip_amp_and_slash(path) or "/"
    params = [
        (name, value)
        for name, value in parse_qsl(parts.query, keep_blank_values=True)
        if not _is_tracking(name) and not (netloc and _is_amp_param(name, value))
    ]
    query = urlencode(sorted(params), quote_via=quote_plus)
    try:
        return _strip_padding(urlunsplit((scheme, netloc, path, query, "")))
    except ValueError:
        return url


def _hash_part(text: str) -> str:
    return " ".join(text.casefold().split())


def content_hash(title: str, summary: str, text: str) -> str:
    """sha256 hex of the case-folded, whitespace-collapsed title, summary and text."""
    joined = "\x1f".join(_hash_part(part) for part in (title, summary, text))
    return hashlib.sha256(joined.encode("utf-8")).hexdigest()


def _to_utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _host(url: str) -> str:
    try:
        return urlsplit(url).hostname or ""
    except ValueError:
        return ""


def _resolve(feed_url: str, link: str) -> str:
    """An entry link resolved against the feed's URL; a link that does not parse as a URL
    ("http://[::1", an unclosed IPv6 host) comes back stripped, as it was given."""
    try:
        return urljoin(feed_url, link.strip())
    except ValueError:
        return link.strip()


def strip_source_suffix(title: str, source: str) -> str:
    """``"Headline - Outlet"`` -> ``"Headline"`` when ``Outlet`` is ``source``."""
    head, sep, tail = title.rpartition(SOURCE_SUFFIX_SEPARATOR)
    if sep and head.strip() and source and tail.strip().casefold() == source.casefold():
        return head.strip()
    return title


def is_web_url(url: object) -> bool:
    """Whether ``url`` is an http(s) link: the only kind an article keeps, and the only kind
    our pages and messages draw as a link. Any other scheme ("javascript:", "data:",
    "mailto:") would let a feed put its own script behind a link of ours."""
    return isinstance(url, str) and url.lower().startswith(("http://", "https://"))


def http_host(url: str) -> str | None:
    """The host of ``url`` if it is an http(s) URL with one, else None: another scheme, no
    host, a port of 0, or what ``urlsplit`` raises on (an unclosed IPv6 host, a port past
    65535), which the feed and webhook checks of the API, the CLI and the config share."""
    try:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or parts.port == 0:
            return None
        return parts.hostname or None
    except ValueError:
        return None


def feed_url_too_long(url: str) -> str | None:
    """Why ``url`` is too long to store as a feed or webhook URL (``MAX_FEED_URL_BYTES``),
    or None."""
    if not too_long(url, MAX_FEED_URL_BYTES):
        return None
    size = len(url.encode("utf-8", "surrogatepass"))
    return f"a URL of {size} bytes is longer than {MAX_FEED_URL_BYTES}"


def too_long(key: str, limit: int = MAX_KEY_BYTES) -> bool:
    """Whether ``key`` (an entry id, a link, a feed URL) is past ``limit`` UTF-8 bytes."""
    return len(key) * 4 > limit and (
        len(key) > limit or len(key.encode("utf-8", "surrogatepass")) > limit
    )


def normalize_entry(entry: RawEntry, feed_title: str | None, feed_url: str) -> Article:
    """One ``RawEntry`` as an ``Article``.

    source: the entry's ``<source>`` outlet, else the feed title, else the feed's host.
    guid: the entry id, else the canonical URL, else the content hash; an id or URL past
    ``MAX_KEY_BYTES`` is hashed or dropped, and so is a link that is not http(s).
    text: the entry's full content, unless it only repeats the summary.
    Title, summary and text are cut to ``MAX_ARTICLE_CHARS``.
    """
    source = (
        html_to_text(entry.source_title or "") or html_to_text(feed_title or "") or _host(feed_url)
    )
    title = strip_source_suffix(html_to_text(entry.title), source)[: MAX_ARTICLE_CHARS["title"]]
    summary = html_to_text(entry.summary_html)[: MAX_ARTICLE_CHARS["summary"]]
    content = html_to_text(entry.content_html)[: MAX_ARTICLE_CHARS["text"]]
    text = content if content != summary else ""
    url = canonical_url(_resolve(feed_url, entry.link)) if entry.link else ""
    if too_long(url) or not is_web_url(url):
        url = ""
    digest = content_hash(title, summary, text)
    guid = (entry.guid or "").strip() or url or digest
    if too_long(guid):
        guid = "sha256:" + hashlib.sha256(guid.encode("utf-8", "surrogatepass")).hexdigest()
    author = html_to_text(entry.author or "") or None
    return Article(
        url=url,
        guid=guid,
        title=title,
        summary=summary,
        text=text,
        published_at=_to_utc(entry.published),
        source=source,
        content_hash=digest,
        author=author,
    )


__all__ = [
    "canonical_url",
    "is_amp_url",
    "content_hash",
    "feed_url_too_long",
    "html_to_text",
    "http_host",
    "is_web_url",
    "normalize_entry",
    "strip_source_suffix",
    "text_of_field",
    "too_long",
]
