"""Feed discovery: is a response a feed, and which feeds does an HTML page announce?

Pure: it reads bytes and headers already fetched and returns URLs; the fetch of the page
and of the feed is the caller's (``cli_feeds``). Discovery follows the RSS autodiscovery
convention: ``<link rel="alternate" type="application/rss+xml|atom+xml" href="...">`` in
the page, with relative hrefs resolved against the page URL (and its ``<base href>``).
Spec: https://www.rssboard.org/rss-autodiscovery
"""

from __future__ import annotations

from collections.abc import Mapping
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

# Types we can parse (feedparser reads no JSON Feed, so application/feed+json is left out).
FEED_TYPES = frozenset({"application/rss+xml", "application/atom+xml", "application/rdf+xml"})

# The start of a body is enough to tell a feed from a page; reading further wastes time.
SNIFF_BYTES = 2048


class _LinkCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.base: str | None = None
        self.links: list[tuple[str, str]] = []  # (type, href) in document order

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name.lower(): (value or "") for name, value in attrs}
        if tag == "base" and self.base is None and values.get("href"):
            self.base = values["href"]
        if tag not in ("link", "a"):
            return
        rels = values.get("rel", "").lower().split()
        kind = values.get("type", "").lower().split(";")[0].strip()
        if "alternate" in rels and kind in FEED_TYPES and values.get("href", "").strip():
            self.links.append((kind, values["href"].strip()))


def is_html(body: bytes, headers: Mapping[str, str]) -> bool:
    """True when the response is an HTML page rather than a feed document.

    A body that opens as HTML (a doctype or ``<html>``) is a page whatever its
    Content-Type says: sites do serve pages as ``text/xml`` or ``application/rss+xml``, and
    no feed opens that way. Otherwise an HTML type is a page and an XML, RSS or Atom type a
    feed; without a type, a ``<head`` near the start makes it a page."""
    start = body[:SNIFF_BYTES].lstrip().lower()
    if start.startswith((b"<!doctype html", b"<html")):
        return True
    content_type = {k.lower(): v for k, v in headers.items()}.get("content-type", "").lower()
    if "html" in content_type:
        return True
    if "xml" in content_type or "rss" in content_type or "atom" in content_type:
        return False
    return b"<head" in start


def feed_links(html: bytes | str, page_url: str) -> list[str]:
    """The feeds a page announces, absolute, in document order, each once; only
    http(s) URLs."""
    text = html.decode("utf-8", "replace") if isinstance(html, bytes) else html
    collector = _LinkCollector()
    collector.feed(text)
    collector.close()
    base = urljoin(page_url, collector.base) if collector.base else page_url
    found: list[str] = []
    for _, href in collector.links:
        url = urljoin(base, href)
        if urlsplit(url).scheme in ("http", "https") and url not in found:
            found.append(url)
    return found
