"""service.parse (and normalize over real feeds): the shared corpus plus synthetic cases."""

from __future__ import annotations

import csv
import re
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from service.errors import ParseError
from service.normalize import normalize_entry
from service.parse import parse_feed
from service.types import ParsedFeed

SHARED = Path(__file__).resolve().parents[2] / "shared"
FEEDS = SHARED / "feeds"
MANIFEST = FEEDS / "MANIFEST.tsv"
NO_SHARED = f"{MANIFEST} is absent: the feed corpus lives in the shared/ folder beside the checkout"

FEED_URL = "https://example.org/feeds/news.xml"
TAG = re.compile(r"<[A-Za-z/!?][^<>]*>")


def manifest_rows() -> list[dict[str, str]]:
    if not MANIFEST.is_file():
        return []
    with MANIFEST.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


ROWS = manifest_rows()
CORPUS = [pytest.param(row, id=row["file"]) for row in ROWS] or [
    pytest.param(None, marks=pytest.mark.skip(reason=NO_SHARED), id="no-shared-corpus")
]


def manifest_bozo(row: dict[str, str]) -> bool:
    found = re.search(r"bozo=(\d)", row["notes"])
    assert found, f"MANIFEST notes for {row['file']} do not state feedparser's bozo flag"
    return found.group(1) == "1"


@pytest.mark.skipif(not MANIFEST.is_file(), reason=NO_SHARED)
def test_manifest_lists_every_feed_file() -> None:
    on_disk = {p.name for p in FEEDS.iterdir() if p.suffix == ".xml"}
    assert on_disk == {row["file"] for row in ROWS}


@pytest.mark.parametrize("row", CORPUS)
def test_corpus_file_parses_and_normalises(row: dict[str, str]) -> None:
    body = (FEEDS / row["file"]).read_bytes()
    expected_items = int(row["items"])
    bozo = manifest_bozo(row)
    try:
        parsed = parse_feed(body, {}, FEED_URL)
    except ParseError as e:
        # Only documents feedparser itself calls broken may be rejected, and only when
        # nothing came out of them.
        assert bozo, f"{row['file']}: well-formed feed rejected: {e}"
        assert expected_items == 0
        assert str(e)
        return
    assert len(parsed.entries) == expected_items
    if bozo:
        assert parsed.bozo_error, f"{row['file']}: bozo document without a recorded error"
    else:
        assert parsed.bozo_error is None
    articles = [normalize_entry(entry, parsed.title, FEED_URL) for entry in parsed.entries]
    for entry in parsed.entries:
        assert entry.published is None or entry.published.utcoffset() == timedelta(0)
    for article in articles:
        assert article.published_at is None or article.published_at.tzinfo is UTC
        for field in (article.title, article.summary, article.text, article.source):
            assert not TAG.search(field), f"{row['file']}: HTML left in {field[:120]!r}"
        assert article.guid
        assert len(article.content_hash) == 64
        assert article.source


def _articles_or_error(body: bytes, headers: dict[str, str], **flags: bool) -> object:
    try:
        parsed = parse_feed(body, headers, FEED_URL, **flags)
    except ParseError as e:
        return f"ParseError: {e}"
    articles = [normalize_entry(e, parsed.title, FEED_URL) for e in parsed.entries]
    return (parsed.title, parsed.link, parsed.bozo_error, parsed.ttl_minutes, articles)


@pytest.mark.parametrize("headers", [{}, {"Content-Type": "application/rss+xml"}])
@pytest.mark.parametrize("row", CORPUS)
def test_lean_feedparser_gives_the_same_articles_as_its_defaults(
    row: dict[str, str], headers: dict[str, str]
) -> None:
    # parse runs feedparser without its sanitizer and without resolving links inside entry
    # HTML (twice as fast); every real feed must come out exactly as with its defaults.
    body = (FEEDS / row["file"]).read_bytes()
    reference = _articles_or_error(body, headers, sanitize_html=True, resolve_relative_uris=True)
    assert _articles_or_error(body, headers) == reference


@pytest.mark.parametrize(
    ("name", "with_dates"),
    [
        ("npr-news-2023-11-24.xml", 15),
        ("koreatimes-2022-07-28-bad-dates.xml", 0),  # "Thu,28 Jul 2022 4:35:5 GMT+9"
        ("heise-online-newsticker-2018-10-28-rss090.xml", 0),  # no dates at all
        ("ilmessaggero-mondo-2022-11-16-italian-dates.xml", 0),  # "mer, 16 nov 2022"
        ("nbcnewyork-2023-12-16-nonstandard-date.xml", 1),  # guessed by feedparser
    ],
)
@pytest.mark.skipif(not MANIFEST.is_file(), reason=NO_SHARED)
def test_corpus_dates(name: str, with_dates: int) -> None:
    parsed = parse_feed((FEEDS / name).read_bytes(), {}, FEED_URL)
    assert sum(entry.published is not None for entry in parsed.entries) == with_dates


@pytest.mark.skipif(not MANIFEST.is_file(), reason=NO_SHARED)
def test_corpus_ttl_and_encodings() -> None:
    bbc = parse_feed((FEEDS / "bbc-news-frontpage-2023-11-24.xml").read_bytes(), {}, FEED_URL)
    assert bbc.ttl_minutes == 15
    golem = parse_feed((FEEDS / "golem-de-2018-10-28.xml").read_bytes(), {}, FEED_URL)
    assert any("ü" in e.title or "ö" in e.title or "ä" in e.title for e in golem.entries)
    qq = parse_feed((FEEDS / "qq-news-china-2018-09-18.xml").read_bytes(), {}, FEED_URL)
    assert qq.title == "新闻国内"
    latin1 = "lecerclepsy-2018-10-17-no-encoding-decl.xml"
    served = parse_feed(
        (FEEDS / latin1).read_bytes(),
        {"Content-Type": "application/rss+xml; charset=ISO-8859-1"},
        FEED_URL,
    )
    assert served.bozo_error is None  # the HTTP charset is what this server relied on
    assert any("é" in e.title for e in served.entries)


# ---------------------------------------------------------------- synthetic documents

GOOGLE_NEWS = b"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"><channel>
<title>"detainer" - Google News</title><link>https://news.google.com/</link><ttl>30</ttl>
<item>
  <title>Sheriff refuses ICE detainer request - The Boston Globe</title>
  <link>https://news.google.com/rss/articles/CBMiabc?oc=5</link>
  <guid isPermaLink="false">CBMiabc</guid>
  <pubDate>Mon, 06 Jan 2025 15:00:00 GMT</pubDate>
  <description>&lt;a href="/rel"&gt;Sheriff refuses&lt;/a&gt;&amp;nbsp;&lt;font&gt;The Boston
  Globe&lt;/font&gt;&lt;script&gt;alert(1)&lt;/script&gt;</description>
  <source url="https://www.bostonglobe.com">The Boston Globe</source>
</item></channel></rss>"""

ATOM = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>County news</title>
<link href="https://county.example/"/><id>urn:feed</id><updated>2025-01-02T00:00:00Z</updated>
<entry><title type="html">&lt;b&gt;Board votes&lt;/b&gt; on 287(g)</title>
<link href="stories/board-votes.html"/><id>urn:entry:1</id>
<updated>2025-01-02T10:00:00+02:00</updated>
<author><name>A. Reporter</name></author>
<summary>Short.</summary>
<content type="html">&lt;p&gt;Long &lt;a href="more.html"&gt;story&lt;/a&gt;.&lt;/p&gt;</content>
</entry></feed>"""

EMPTY_CHANNEL = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>Quiet</title>
<link>https://quiet.example/</link></channel></rss>"""

UNESCAPED_AMP = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>Broken</title>
<item><title>First</title><link>https://a.example/1</link></item>
<item><title>Plants & Animals</title><link>https://a.example/2</link></item>
</channel></rss>"""


def test_google_news_source_and_dates() -> None:
    parsed = parse_feed(GOOGLE_NEWS, {"content-type": "application/rss+xml"}, FEED_URL)
    assert parsed.title == '"detainer" - Google News'
    assert parsed.ttl_minutes == 30
    assert parsed.bozo_error is None
    (entry,) = parsed.entries
    assert entry.source_title == "The Boston Globe"
    assert entry.source_url == "https://www.bostonglobe.com"
    assert entry.guid == "CBMiabc"
    assert entry.published == datetime(2025, 1, 6, 15, 0, tzinfo=UTC)
    # feedparser's sanitizer is off (SANITIZE_HTML): the script reaches normalize, which
    # keeps none of it in the article's text.
    article = normalize_entry(entry, parsed.title, FEED_URL)
    assert article.summary == "Sheriff refuses The Boston Globe"
    assert "alert" not in article.summary and "<" not in article.summary


def test_atom_entry_fields_and_relative_links() -> None:
    for headers in ({}, {"Content-Type": "application/atom+xml"}):
        parsed = parse_feed(ATOM, headers, FEED_URL)
        (entry,) = parsed.entries
        assert entry.link == "https://example.org/feeds/stories/board-votes.html"
        assert entry.published == datetime(2025, 1, 2, 8, 0, tzinfo=UTC)
        assert entry.author == "A. Reporter"
        assert entry.summary_html == "Short."
        assert "story" in entry.content_html
        assert parsed.link == "https://county.example/"


@pytest.mark.parametrize("location", ["http://[::1", 'http://["[::1]/', "https://x]/feed"])
def test_a_content_location_that_is_not_a_url_is_ignored(location: str) -> None:
    """urljoin raises on these; the document is read against the URL it came from."""
    parsed = parse_feed(ATOM, {"Content-Location": location}, FEED_URL)
    (entry,) = parsed.entries
    assert entry.link == "https://example.org/feeds/stories/board-votes.html"


# Documents holding C0 control characters, which XML forbids and feedparser's fallback
# parser passes through, as raw bytes and as character references.
RSS_WITH_CONTROLS = (
    b'<?xml version="1.0"?><rss version="2.0"><channel><title>Ti\x00tle</title>'
    b"<link>https://site.example/\x01</link><item><title>Sheriff \x00refuses&#0; "
    b"detainers</title><link>https://news.example/a&#0;b</link><guid>g&#1;1</guid>"
    b"<description>Body\x0bwith\x0cspaces\x1f.</description><author>A.\x00 Reporter"
    b'</author><source url="https://wire.example/\x00">Wi&#0;re</source></item>'
    b"</channel></rss>"
)
ATOM_WITH_CONTROLS = (
    b'<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>T&#0;</title>'
    b"<entry><title>Sheriff \x00refuses detainers</title><id>urn:x&#0;:1</id>"
    b'<link href="https://news.example/ab"/><content type="text">Bo\x00dy\x0bwith\x0cspaces'
    b"\x1f.</content><author><name>A.\x00 Reporter</name></author></entry></feed>"
)


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("headers", [{}, {"Content-Type": "application/rss+xml; charset=utf-8"}])
@pytest.mark.parametrize("body", [RSS_WITH_CONTROLS, ATOM_WITH_CONTROLS], ids=["rss", "atom"])
def test_control_characters_never_reach_an_article(
    body: bytes, headers: dict[str, str], fast: bool
) -> None:
    """XML forbids C0 controls but broken feeds hold them, and PostgreSQL refuses to store
    a text value holding NUL (that stopped every poll pass meeting one): parsing drops them,
    keeps the text around them, and makes vertical tabs and form feeds spaces."""
    parsed = parse_feed(body, headers, FEED_URL, fast=fast)
    assert parsed.entries
    controls = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")
    for value in (parsed.title, parsed.link):
        assert value is None or not controls.search(value)
    for entry in parsed.entries:
        article = normalize_entry(entry, parsed.title, FEED_URL)
        for name, value in [
            (f.name, getattr(r, f.name)) for r in (entry, article) for f in fields(r)
        ]:
            assert not (isinstance(value, str) and controls.search(value)), (name, value)
        assert article.title == "Sheriff refuses detainers"
        assert article.author == "A. Reporter"
        assert article.summary == "Body with spaces." or article.text == "Body with spaces."


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("&#55357;&#56832; refuses", "\U0001f600 refuses"),  # a pair: one emoji
        ("&#xD83D;&#xDE00; refuses", "\U0001f600 refuses"),
        ("&#XD83D;&#x0DE00; refuses", "\U0001f600 refuses"),
        ("&#55357; refuses", "\ufffd refuses"),  # a high half alone
        ("&#56832;&#55357; refuses", "\ufffd\ufffd refuses"),  # the halves the wrong way round
        ("&#55357; &#56832; refuses", "\ufffd \ufffd refuses"),  # not side by side
        ("&#55000;&#57999; refuses", "\ud6d8\ue28f refuses"),  # not surrogates: left alone
    ],
)
@pytest.mark.parametrize("fast", [True, False])
def test_references_to_utf16_surrogates_do_not_lose_the_feed(
    title: str, expected: str, fast: bool
) -> None:
    """XML forbids references to surrogates, but software that escapes UTF-16 code units
    writes emoji that way: expat refused the document and feedparser raised, so the whole
    feed was an error. A pair is read as its character, a lone half as U+FFFD."""
    body = (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>T</title>'
        f"<item><title>{title}</title><link>https://e.example/1</link></item>"
        "<item><title>Other</title><link>https://e.example/2</link></item></channel></rss>"
    ).encode()
    parsed = parse_feed(body, {"Content-Type": "application/rss+xml"}, FEED_URL, fast=fast)
    assert [e.title for e in parsed.entries] == [expected, "Other"]
    assert parsed.bozo_error is None


def test_valid_feed_without_items_is_not_an_error() -> None:
    parsed = parse_feed(EMPTY_CHANNEL, {"Content-Type": "application/rss+xml"}, FEED_URL)
    assert parsed == ParsedFeed(title="Quiet", link="https://quiet.example/", entries=())


def test_malformed_feed_gives_best_effort_entries() -> None:
    parsed = parse_feed(UNESCAPED_AMP, {"Content-Type": "text/xml"}, FEED_URL)
    assert parsed.bozo_error is not None and parsed.bozo_error.startswith("malformed XML")
    assert [e.title for e in parsed.entries][:1] == ["First"]


def test_feed_served_as_html_keeps_entries_and_says_so() -> None:
    parsed = parse_feed(GOOGLE_NEWS, {"Content-Type": "text/html; charset=utf-8"}, FEED_URL)
    assert len(parsed.entries) == 1
    assert parsed.bozo_error is not None and "not served as XML" in parsed.bozo_error


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"", "application/rss+xml"),
        (b"   \n\t ", "application/rss+xml"),
        (b"<!DOCTYPE html><html><head><title>Hi</title></head><body><p>x</p></body></html>",
         "text/html"),
        (b"<html><body>Subscribe!</body></html>", "application/rss+xml"),
        (b'{"items": []}', "application/json"),
        (b"\x00\x01\x02\xff\xfe garbage", "application/octet-stream"),
        (b"<rss version=\"2.0\">\n</rss", "application/rss+xml"),  # truncated, nothing in it
        (b"just words", "text/plain"),
    ],
)  # fmt: skip
def test_not_a_feed_raises_parse_error(body: bytes, content_type: str) -> None:
    with pytest.raises(ParseError) as err:
        parse_feed(body, {"Content-Type": content_type}, FEED_URL)
    assert str(err.value)


def test_body_is_never_taken_for_a_url_or_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "feed.xml"
    secret.write_bytes(EMPTY_CHANNEL)
    for body in (str(secret).encode(), b"http://127.0.0.1:9/feed.xml"):
        with pytest.raises(ParseError):
            parse_feed(body, {}, FEED_URL)


def test_charset_from_headers_decides_encoding() -> None:
    body = "<rss version='2.0'><channel><title>Café</title></channel></rss>".encode("latin-1")
    parsed = parse_feed(body, {"Content-Type": "application/xml; charset=iso-8859-1"}, FEED_URL)
    assert parsed.title == "Café"


def test_bad_ttl_is_ignored() -> None:
    body = EMPTY_CHANNEL.replace(b"<title>", b"<ttl>soon</ttl><title>")
    assert parse_feed(body, {}, FEED_URL).ttl_minutes is None
