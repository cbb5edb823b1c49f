"""service.fastparse: the same feeds and articles as feedparser, on every shared feed and on
documents built to hit each rule it mirrors; and the documents it must leave to feedparser."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from service.errors import ParseError
from service.fastparse import parse_rss
from service.normalize import normalize_entry
from service.parse import parse_feed
from tests.test_parse import CORPUS, FEED_URL, FEEDS, MANIFEST, NO_SHARED, ROWS

# How documents reach parse: from disk, and over HTTP with the media types servers use.
HEADERS: list[dict[str, str]] = [
    {},
    {"Content-Type": "application/rss+xml"},
    {"Content-Type": "text/xml; charset=UTF-8"},
    {"Content-Type": "text/xml"},
    {"Content-Type": "application/xml; charset=iso-8859-1"},
    {"Content-Type": "text/html; charset=utf-8"},
]


def outcome(body: bytes, headers: Mapping[str, str], *, fast: bool) -> object:
    """What parse gives and what the pipeline makes of it: the feed, its entries and their
    articles, or the error."""
    try:
        parsed = parse_feed(body, headers, FEED_URL, fast=fast)
    except ParseError as e:
        return f"ParseError: {e}"
    return parsed, [normalize_entry(entry, parsed.title, FEED_URL) for entry in parsed.entries]


def takes_fast_path(body: bytes, headers: Mapping[str, str]) -> bool:
    lowered = {name.lower(): value for name, value in headers.items()}
    if lowered:
        lowered["content-location"] = FEED_URL
    return parse_rss(body, lowered, lowered.get("content-location", "")) is not None


@pytest.mark.parametrize("headers", HEADERS, ids=lambda h: h.get("Content-Type", "file"))
@pytest.mark.parametrize("row", CORPUS)
def test_shared_feed_comes_out_as_feedparser_reads_it(
    row: dict[str, str], headers: dict[str, str]
) -> None:
    body = (FEEDS / row["file"]).read_bytes()
    assert outcome(body, headers, fast=True) == outcome(body, headers, fast=False)


@pytest.mark.skipif(not MANIFEST.is_file(), reason=NO_SHARED)
def test_most_shared_feeds_take_the_fast_path() -> None:
    # The broken documents, Atom, xml:base and other encodings than UTF-8 and ISO-8859-1
    # go to feedparser (15 of 46 when this was written); the rest must not.
    served = {"Content-Type": "application/rss+xml"}
    fast = [r["file"] for r in ROWS if takes_fast_path((FEEDS / r["file"]).read_bytes(), served)]
    assert len(fast) >= 30, fast
    assert "npr-news-2023-11-24.xml" in fast


def rss(items: str, channel: str = "", namespaces: str = "", declaration: str = "") -> bytes:
    return (
        (declaration or '<?xml version="1.0" encoding="UTF-8"?>')
        + '\n<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/"'
        ' xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:media="http://search.yahoo.com/mrss/"'
        ' xmlns:atom="http://www.w3.org/2005/Atom"'
        ' xmlns:itunes="http://www.itunes.com/dtds/podcast-1.0.dtd"'
        f"{namespaces}><channel><title>Desk</title><link>https://desk.example/</link>"
        f"{channel}{items}</channel></rss>"
    ).encode()


def item(inner: str) -> str:
    return f"<item>{inner}</item>"


BASIC = "<title>Sheriff honors detainer</title><link>https://a.example/1</link>"

# (name, document, whether the fast path reads it)
CASES: list[tuple[str, bytes, bool]] = [
    ("plain", rss(item(BASIC + "<description>&lt;p&gt;Text&lt;/p&gt;</description>")), True),
    ("second summary is the content", rss(item(
        BASIC + "<description>Short</description><media:description>Long</media:description>"
        "<itunes:summary>Third</itunes:summary>"
    )), True),
    ("content fills a missing summary", rss(item(
        BASIC + "<content:encoded><![CDATA[<p>Full</p>]]></content:encoded>"
    )), True),
    ("content then summary", rss(item(
        BASIC + "<content:encoded>Full</content:encoded><description>Short</description>"
        "<description>Shorter</description>"
    )), True),
    ("itunes summary and author", rss(item(
        BASIC + "<itunes:summary>Pod</itunes:summary><itunes:author>Host</itunes:author>"
    )), True),
    ("first non-empty title wins", rss(item(
        "<title></title><title>One</title><title>Two</title><link>https://a.example/t</link>"
    )), True),
    ("a title after the source replaces it", rss(item(
        '<title>First</title><source url="https://outlet.example">Outlet</source>'
        "<title>Second</title>"
    )), True),
    ("permalink guid stands in for the link", rss(item(
        "<title>No link</title><guid>stories/42</guid>"
    )), True),
    ("guid that is not a permalink", rss(item(
        '<title>No link</title><guid isPermaLink="false">tag:desk,2025:42</guid>'
    )), True),
    ("link after guid wins", rss(item(
        "<title>Both</title><guid>https://a.example/g</guid><link>https://a.example/l</link>"
    )), True),
    ("query entities in links", rss(item(
        "<title>Q</title><link>https://a.example/s?a=1&amp;b=2&amp;c;=3</link>"
    ), channel="<ttl>20</ttl>"), True),
    ("AMP link with a canonical alternate", rss(item(
        "<title>Amp</title><link>https://a.example/story/amp</link>"
        '<atom:link rel="alternate" type="text/html" href="https://a.example/story"/>'
    )), True),
    ("dates: pubDate, then dc:date", rss(
        item(BASIC + "<pubDate>Tue, 07 Jan 2025 10:00:00 -0500</pubDate>")
        + item(BASIC + "<dc:date>2025-01-07T10:00:00Z</dc:date>")
        + item(BASIC + "<pubDate>not a date</pubDate><dc:date>2025-01-08</dc:date>")
    ), True),
    ("authors", rss(item(
        BASIC + "<author>desk@a.example (Desk)</author><dc:creator>Ann Lee</dc:creator>"
    )), True),
    ("UTF-8 read as Latin-1, Windows-1252 points", rss(item(
        "<title>Caf\u00c3\u00a9 &#147;quoted&#148;</title><link>https://a.example/c</link>"
    )), True),
    ("harmless extensions", rss(item(
        BASIC + '<category>News</category><enclosure url="https://a.example/i.jpg" '
        'type="image/jpeg" length="1"/><media:content url="https://a.example/v.mp4">'
        "<media:credit>AP</media:credit></media:content><comments>https://a.example/c</comments>"
        '<x:extra xmlns:x="urn:x">kept apart</x:extra>'
    )), True),
    ("byte-order mark", b"\xef\xbb\xbf" + rss(item(BASIC)), True),
    ("ISO-8859-1", rss(
        item("<title>Caf\u00e9 lawsuit</title><link>https://a.example/l</link>"),
        declaration='<?xml version="1.0" encoding="ISO-8859-1"?>',
    ).decode().encode("latin-1"), True),
    ("RDF", b"""<?xml version="1.0"?><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"
        xmlns="http://purl.org/rss/1.0/"><channel rdf:about="https://desk.example/">
        <title>Desk</title><link>https://desk.example/</link></channel>
        <item rdf:about="https://desk.example/1"><title>One</title>
        <link>https://desk.example/1</link><description>D</description></item></rdf:RDF>""", True),
    ("empty channel", rss(""), True),
    # Left to feedparser:
    ("media:title sets the title", rss(item(BASIC + "<media:title>Other</media:title>")), False),
    ("dc:title", rss(item("<dc:title>T</dc:title><link>https://a.example/d</link>")), False),
    ("base64 description", rss(item(BASIC + '<description mode="base64">SGk=</description>')),
     False),
    ("xml:base", rss(item(BASIC).replace("<link>", '<link xml:base="https://b.example/">')),
     False),
    ("an unknown namespace", rss(
        item(BASIC + "<m:title>T</m:title>"), namespaces=' xmlns:m="urn:other"'), True),
    ("media bound elsewhere", rss(item(BASIC + "<media:title>T</media:title>")).replace(
        b"http://search.yahoo.com/mrss/", b"urn:other"), False),
    ("markup in a title", rss(item("<title><b>Bold</b></title><link>https://a.example/b</link>")),
     False),
    ("an item outside the channel", rss(item(BASIC)).replace(
        b"</channel></rss>", b"</channel>" + item(BASIC).encode() + b"</rss>"), False),
    ("not well-formed", rss(item("<title>Plants & Animals</title>")), False),
    ("Atom", b"""<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">
        <title>A</title><entry><title>E</title><id>urn:e</id></entry></feed>""", False),
]  # fmt: skip


@pytest.mark.parametrize(("name", "body", "fast"), CASES, ids=[c[0] for c in CASES])
def test_document_comes_out_as_feedparser_reads_it(name: str, body: bytes, fast: bool) -> None:
    served = {"Content-Type": "application/rss+xml"}
    assert takes_fast_path(body, served) is fast
    for headers in ({}, served):
        assert outcome(body, headers, fast=True) == outcome(body, headers, fast=False)


def test_media_type_and_charset_decide_the_path() -> None:
    body = rss(item(BASIC))
    assert takes_fast_path(body, {})
    assert takes_fast_path(body, {"Content-Type": "application/rss+xml"})
    assert takes_fast_path(body, {"Content-Type": "text/xml; charset=utf-8"})
    assert not takes_fast_path(body, {"Content-Type": "text/xml"})  # US-ASCII to feedparser
    assert not takes_fast_path(body, {"Content-Type": "text/html"})  # bozo: not XML
    assert not takes_fast_path(body, {"Content-Type": "application/xml; charset=latin-1"})
    assert not takes_fast_path(body, {"Server": "x"})  # no Content-Type: ISO-8859-1


def test_parse_leaves_feedparser_out_of_plain_rss(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("feedparser ran on a document the fast path reads")

    monkeypatch.setattr("service.parse.feedparser.parse", refuse)
    parsed = parse_feed(rss(item(BASIC)), {"Content-Type": "application/rss+xml"}, FEED_URL)
    assert [entry.title for entry in parsed.entries] == ["Sheriff honors detainer"]
    with pytest.raises(ParseError, match="AssertionError"):  # Atom still goes to feedparser
        parse_feed(CASES[-1][1], {"Content-Type": "application/atom+xml"}, FEED_URL)
