"""The fast path of ``parse``: common RSS read with the standard library's expat parser.

feedparser is the reference: it reads every dialect and every broken document, and it is
most of a first poll's CPU (~0.3 ms per entry even without its sanitizer). Most documents
are plain, well-formed UTF-8 RSS (2.0, 0.9x or RDF/1.0), though, and for those this module
gives exactly the ``ParsedFeed`` feedparser gives, from ``xml.etree.ElementTree`` (C expat)
and a little Python per entry: several times cheaper (bench/bench_stages.py).

"Exactly" is kept narrow on purpose. ``parse_rss`` returns ``None``, and ``parse`` runs
feedparser, whenever the document is anything this module does not reproduce to the
letter: Atom, another encoding than UTF-8 (declared, served or sniffed), a document
feedparser would call bozo (not well-formed, undeclared prefixes, wrong media type), an
``xml:base``, an element feedparser gives meaning to that is not handled here (itunes:summary
sets the summary, media:title the title, dc:title...), markup nested in a text element,
repeated summaries. What it does reproduce are feedparser's own rules for the fields we read,
mirrored from its source: which of several titles wins, the guid standing in for a missing
link and being resolved against the document's URL when it is a permalink, ``pubDate`` before
``dc:date``, content:encoded filling a missing summary, the <source> of aggregators, the
repair of UTF-8 read as Latin-1 and the mapping of Windows-1252 code points.
``tests/test_parse.py`` parses every shared feed and generated ones both ways and requires
the same articles, and counts which took this path.

Pure, like ``parse``: bytes in, records out. Entity declarations are refused before this
runs (``parse.ENTITY_DECLARATIONS``), and expat never loads external resources.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from feedparser.datetimes import _parse_date
from feedparser.html import _cp1252
from feedparser.mixin import _FeedParserMixin
from feedparser.urls import _urljoin

# feedparser names the handler of an element "<prefix>_<localname>", the prefix coming from
# its table of known namespace URIs ('' for RSS's own and Atom's, 'dc', 'media'...).
_NAMESPACES: dict[str, str] = {
    uri.lower(): prefix for uri, prefix in _FeedParserMixin.namespaces.items()
}
_KNOWN_PREFIXES = frozenset(prefix for prefix in _NAMESPACES.values() if prefix)
# Every element feedparser gives meaning to (it has a _start_ or _end_ handler for it).
_HANDLED = frozenset(
    name.split("_", 2)[2] for name in dir(_FeedParserMixin) if name.startswith(("_start_", "_end_"))
)

# Elements of an entry this module reads.
_ENTRY_TITLE = "title"
_ENTRY_LINK = "link"
_ENTRY_GUID = "guid"
# Each of these is a summary to feedparser, or its content when a summary came first.
_ENTRY_SUMMARIES = frozenset({"description", "media_description", "itunes_summary", "summary"})
_ENTRY_CONTENT = "content_encoded"
_ENTRY_PUBLISHED = "pubdate"
_ENTRY_UPDATED = "dc_date"
_ENTRY_AUTHORS = frozenset({"author", "dc_creator", "itunes_author"})
_ENTRY_SOURCE = "source"

# Elements feedparser handles that touch nothing we read (categories, enclosures - links
# with rel="enclosure" -, media thumbnails, podcast details, comment links...).
_ENTRY_HARMLESS = frozenset(
    {
        "category", "comments", "enclosure", "media_content", "media_thumbnail",
        "media_keywords", "media_credit", "media_category", "media_rating",
        "media_restriction", "media_license", "media_player", "media_group",
        "itunes_explicit", "itunes_duration", "itunes_image", "itunes_keywords",
        "itunes_subtitle", "itunes_block", "itunes_category", "dc_subject",
        "dc_publisher", "dc_rights", "dc_language", "url",
    }
)  # fmt: skip

# Direct children of a channel that would change the feed's title or link other than the
# way read here (the title of <image> or <textinput> goes to that element, not the feed).
_FEED_UNHANDLED = frozenset({"dc_title", "media_title", "entry", "source", "feed"})

# Attributes a text element may carry without changing how feedparser reads it: a type or
# a mode can make it base64, a base changes how links resolve.
_NEUTRAL_ATTRIBUTES = frozenset({"{http://www.w3.org/XML/1998/namespace}lang"})

_TEXT_TYPES = frozenset({"text", "plain", "html", "text/plain", "text/html"})

_RDF_ABOUT = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}about"

# feedparser's content types that count as HTML for a link's type.
_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})

_XML_DECLARATION_ENCODING = re.compile(rb"^<\?.*encoding=['\"](.*?)['\"].*\?>")
_NAMESPACE_DECLARATION = re.compile(rb"xmlns:([A-Za-z_][\w.-]*)\s*=\s*[\"']([^\"']*)[\"']")
_UTF8 = frozenset({"utf-8", "utf8"})
_LATIN1 = frozenset({"iso-8859-1", "iso8859-1", "iso_8859-1", "latin-1", "latin1", "l1"})
# An undeclared entity reference in a query string ("?a=1&b=2" read as "&b;"), undone
# for links as feedparser undoes it.
_QUERY_ENTITY = re.compile("&([A-Za-z0-9_]+);")


class _Unsupported(Exception):
    """The document needs feedparser."""


def _readable(body: bytes, headers: Mapping[str, str]) -> bytes | None:
    """``body`` (without a UTF-8 byte-order mark) when feedparser would decode it the way
    expat does, as UTF-8 or ISO-8859-1, without calling it bozo; else None.

    Mirrors feedparser's RFC 3023 rules (``feedparser.encodings``) for the cases it can: no
    response headers, or an XML media type (text/* only with a charset), and an encoding
    from the charset, the XML declaration or neither (UTF-8) that all agree."""
    if body.startswith(b"\xef\xbb\xbf"):
        body = body[3:]
    elif body.startswith((b"\xfe\xff", b"\xff\xfe", b"\x00", b"\x4c\x6f\xa7\x94")):
        return None  # UTF-16, UTF-32, EBCDIC
    match = _XML_DECLARATION_ENCODING.match(body)
    declared = match.group(1).decode("ascii", "replace").lower() if match else ""
    if declared and declared not in _UTF8 and declared not in _LATIN1:
        return None
    if not headers:
        return body
    content_type = headers.get("content-type")
    if content_type is None:
        return None  # feedparser: "no Content-type specified", and ISO-8859-1
    mime, _, params = content_type.partition(";")
    mime = mime.strip().lower()
    charset = ""
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip("'\"").lower()
    application = mime in ("application/xml", "application/xml-dtd") or (
        mime.startswith("application/") and mime.endswith("+xml")
    )
    text = mime == "text/xml" or (mime.startswith("text/") and mime.endswith("+xml"))
    if not (application or (text and charset)):
        return None  # not XML to feedparser, or US-ASCII (text/* without a charset)
    if not charset or _same_encoding(charset, declared or "utf-8"):
        return body
    return None


def _same_encoding(a: str, b: str) -> bool:
    return a == b or (a in _UTF8 and b in _UTF8) or (a in _LATIN1 and b in _LATIN1)


def _prefix_collision(body: bytes) -> bool:
    """Whether the document binds one of feedparser's own prefixes ("media", "dc"...) to
    another namespace: feedparser then goes by the prefix, this module by the URI."""
    for prefix, uri in _NAMESPACE_DECLARATION.findall(body):
        name = prefix.decode("ascii", "replace")
        if (
            name in _KNOWN_PREFIXES
            and _NAMESPACES.get(uri.decode("utf-8", "replace").lower()) != name
        ):
            return True
    return False


def _key(tag: str) -> str | None:
    """feedparser's name for an element (``dc_creator``), None for an unknown namespace
    (feedparser keeps those under names of their own, which nothing here reads)."""
    if tag[0] != "{":
        return tag.lower()
    uri, _, local = tag[1:].partition("}")
    prefix = _NAMESPACES.get(uri.lower())
    if prefix is None:
        return None
    return f"{prefix}_{local.lower()}" if prefix else local.lower()


def _clean(value: str) -> str:
    """What feedparser does to every text it keeps from a UTF-8 document: strip it, repair
    UTF-8 that was read as Latin-1, map Windows-1252 code points."""
    value = value.strip()
    if not value.isascii():
        try:
            value = value.encode("iso-8859-1").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            pass
        value = value.translate(_cp1252)
    return value


def _text_of(element: ET.Element, *, typed: bool = False) -> str:
    """The text of an element feedparser reads as text; markup inside it or attributes that
    change its reading need feedparser. ``typed``: a textual ``type`` is allowed (any other
    type makes feedparser decode the text as base64)."""
    if len(element):
        raise _Unsupported(f"markup inside <{element.tag}>")
    for name, value in element.attrib.items():
        if name in _NEUTRAL_ATTRIBUTES or (typed and name == "type" and value in _TEXT_TYPES):
            continue
        raise _Unsupported(f"attribute {name} on <{element.tag}>")
    return _clean(element.text or "")


def _check_descendants(element: ET.Element) -> None:
    for inner in element.iter():
        if inner is element:
            continue
        key = _key(inner.tag)
        if key is not None and key in _HANDLED and key not in _ENTRY_HARMLESS:
            raise _Unsupported(f"<{inner.tag}> inside <{element.tag}>")


def _is_html(content_type: str) -> bool:
    lowered = content_type.lower()
    return {"html": "text/html", "xhtml": "application/xhtml+xml"}.get(
        lowered, lowered
    ) in _HTML_TYPES


@dataclass(slots=True)
class _Links:
    """feedparser's ``link`` and ``links`` of an element (feed or entry)."""

    link: str | None = None
    links: list[dict[str, Any]] = field(default_factory=list)

    def add(self, element: ET.Element, base: str, *, in_entry: bool) -> None:
        if len(element):
            raise _Unsupported("markup inside <link>")
        attrs = {name.lower(): value for name, value in element.attrib.items()}
        if any(name.startswith("{") or name == "base" for name in attrs):
            raise _Unsupported("namespaced attributes on <link>")
        rel = attrs.setdefault("rel", "alternate")
        attrs.setdefault("type", "application/atom+xml" if rel == "self" else "text/html")
        href = attrs.pop("url", attrs.pop("uri", attrs.get("href")))
        if href:
            attrs["href"] = _urljoin(base, href)
            self.links.append(attrs)
            if rel == "alternate" and _is_html(attrs["type"]):
                self.link = attrs["href"]
            return
        self.links.append(attrs)
        value = _urljoin(base, _clean(element.text or "")) if (element.text or "").strip() else ""
        if in_entry:
            value = value.replace("&amp;", "&")
        value = _QUERY_ENTITY.sub(r"&\g<1>", value)
        self.link = value
        if value:
            attrs["href"] = value


def _entry(item: ET.Element, base: str) -> dict[str, Any]:
    """One <item>, read by feedparser's rules for the fields ``RawEntry`` keeps."""
    guid: str | None = item.get(_RDF_ABOUT)
    links = _Links()
    title: str | None = None
    title_final = False
    summary: str | None = None
    contents: list[str] = []
    has_content = False
    published: Any = None
    updated: Any = None
    author: str | None = None
    source: dict[str, str] | None = None
    guid_link: str | None = None
    for child in item:
        if not isinstance(child.tag, str):
            continue  # a comment or a processing instruction
        key = _key(child.tag)
        if key is None:
            continue
        if key == _ENTRY_TITLE:
            value = _text_of(child)
            if not title_final:
                title = value
                title_final = bool(value)
        elif key == _ENTRY_LINK:
            links.add(child, base, in_entry=True)
        elif key == _ENTRY_GUID:
            permalink = child.get("isPermaLink", child.get("ispermalink", "true")) == "true"
            attrs = set(child.attrib) - {"isPermaLink", "ispermalink"}
            if attrs - _NEUTRAL_ATTRIBUTES or len(child):
                raise _Unsupported("attributes or markup on <guid>")
            value = _clean(child.text or "")
            if permalink and value:
                value = _urljoin(base, value)
            guid = value
            if permalink and guid_link is None:
                guid_link = value
        elif key in _ENTRY_SUMMARIES:
            value = _text_of(child, typed=True)
            if summary is not None and not has_content:
                contents.append(value)  # feedparser: a second summary is the content
                has_content = True
            else:
                summary = value
        elif key == _ENTRY_CONTENT:
            value = _text_of(child)
            contents.append(value)
            has_content = True
            if summary is None:
                summary = value
        elif key == _ENTRY_PUBLISHED:
            published = _parse_date(_text_of(child))
        elif key == _ENTRY_UPDATED:
            updated = _parse_date(_text_of(child))
        elif key in _ENTRY_AUTHORS:
            author = _text_of(child)
        elif key == _ENTRY_SOURCE:
            if len(child) or set(child.attrib) - {"url"}:
                raise _Unsupported("markup or attributes on <source>")
            source = {}
            if "url" in child.attrib:
                source["href"] = child.attrib["url"]
            value = _clean(child.text or "")
            if value:
                source["title"] = value
            title_final = False  # feedparser forgets which title came first after <source>
        elif key in _ENTRY_HARMLESS:
            _check_descendants(child)
        elif key in _HANDLED:
            raise _Unsupported(f"<{child.tag}> in an item")
    link = links.link if links.link is not None else guid_link
    return {
        "id": guid,
        "link": link,
        "links": links.links,
        "title": title,
        "summary": summary,
        "content": [{"value": value} for value in contents],
        "published_parsed": published,
        "updated_parsed": updated,
        "source": source,
        "author": author,
    }


def _channel(channel: ET.Element, base: str) -> tuple[str | None, _Links, str | None, int]:
    """The feed's title, links and ttl, and how many items the channel holds."""
    title: str | None = None
    title_final = False
    links = _Links()
    ttl: str | None = None
    items = 0
    for child in channel:
        if not isinstance(child.tag, str):
            continue
        key = _key(child.tag)
        if key == "title":
            value = _text_of(child)
            if not title_final:
                title = value
                title_final = bool(value)
        elif key == "link":
            links.add(child, base, in_entry=False)
        elif key == "ttl":
            ttl = _clean(child.text or "")
        elif key == "item":
            items += 1
            title_final = False  # feedparser: a feed title after an item replaces the first
        elif key in _FEED_UNHANDLED:
            raise _Unsupported(f"<{child.tag}> in the channel")
    return title, links, ttl, items


def parse_rss(body: bytes, headers: Mapping[str, str], base: str) -> dict[str, Any] | None:
    """``body`` as feedparser would parse it, or None when only feedparser can say.

    The result has the shape of feedparser's, limited to the keys ``parse`` reads
    (``feed``: title, link, ttl; ``entries``; ``version``; ``bozo``). ``headers``: the
    response headers, names in lower case ({} for a file); ``base``: the URL feedparser
    resolves links against ('' when it has none)."""
    readable = _readable(body, headers)
    if readable is None or b"base=" in body or _prefix_collision(body):
        return None
    try:
        root = ET.fromstring(readable)
    except ET.ParseError:
        return None  # not well-formed: feedparser's loose parser recovers what it can
    try:
        return _document(root, base)
    except _Unsupported:
        return None


def _is_item(element: ET.Element) -> bool:
    return isinstance(element.tag, str) and _key(element.tag) in ("item", "entry")


def _document(root: ET.Element, base: str) -> dict[str, Any] | None:
    key = _key(root.tag)
    if key not in ("rss", "rdf_rdf"):
        return None  # Atom and the rest
    channels = [
        child for child in root if isinstance(child.tag, str) and _key(child.tag) == "channel"
    ]
    if len(channels) != 1:
        return None
    channel = channels[0]
    title, links, ttl, inside = _channel(channel, base)
    items = [child for child in (channel if key == "rss" else root) if _is_item(child)]
    if key == "rdf_rdf" and inside:
        return None
    # Items anywhere else (nested, or beside the channel of an RSS 2.0 document) are items
    # to feedparser too; leave such documents to it.
    if sum(1 for element in root.iter() if _is_item(element)) != len(items):
        return None
    feed: dict[str, Any] = {"title": title, "link": links.link}
    if ttl is not None:
        feed["ttl"] = ttl
    return {
        "feed": feed,
        "entries": [_entry(item, base) for item in items],
        "version": "rss10" if key == "rdf_rdf" else "rss",
        "bozo": False,
    }
