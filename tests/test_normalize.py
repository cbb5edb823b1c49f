"""service.normalize: text, canonical URLs, hashes and RawEntry -> Article."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.errors import ParseError
from service.match.prefilter import MAX_FIELD_CHARS
from service.normalize import (
    MAX_ARTICLE_CHARS,
    MAX_HTML_PASSES,
    MAX_KEY_BYTES,
    _html_pass_parser,
    _html_pass_plain,
    canonical_url,
    content_hash,
    feed_url,
    html_to_text,
    normalize_entry,
    strip_source_suffix,
    text_of_field,
)
from service.parse import parse_feed
from service.types import RawEntry
from tests.test_parse import FEEDS, MANIFEST, NO_SHARED

TAG = re.compile(r"<[A-Za-z/!?][^<>]*>")
FEED_URL = "https://www.example.org/feeds/news.xml"


# ---------------------------------------------------------------- html_to_text


@pytest.mark.parametrize(
    ("html", "text"),
    [
        ("<p>Sheriff <b>refuses</b> detainer</p>", "Sheriff refuses detainer"),
        ("<p>One</p><p>Two</p>", "One Two"),
        ("line<br>break<br/>here", "line break here"),
        ("a<script>var x = '<p>';</script>b<style>p {}</style>c", "abc"),
        ("AT&amp;T &eacute;t&eacute; &#8220;q&#x201d; &nbsp;x", "AT&T été “q” x"),
        ("  lots \n\t of   space  ", "lots of space"),
        ("&lt;div&gt;Trump Insists&lt;/div&gt;", "Trump Insists"),  # NYT 2017 title
        ("&amp;quot;Buy&amp;quot;", '"Buy"'),  # finanzen.net double escaping
        ("<!-- comment -->kept<![CDATA[ x ]]>", "kept"),
        ("5 < 6 and 7 > 3", "5 < 6 and 7 > 3"),
        ("", ""),
        # Declarations html.parser's scanner raises AssertionError on: read as text.
        ("a <![::1] b", "a <![::1] b"),
        ("x <![ if !supportLists]>y<![endif]> z", "x y z"),  # Word HTML with a space
        ("Word <![if !supportLists]>1.<![endif]> list", "Word 1. list"),
    ],
)
def test_html_to_text_examples(html: str, text: str) -> None:
    assert html_to_text(html) == text


@pytest.mark.parametrize(
    "given,read",
    [
        # HTML: a tag or a complete entity makes the field HTML, read as the poller reads it.
        ("<p>Jail won&#8217;t hold anyone for ICE.</p>", "Jail won\u2019t hold anyone for ICE."),
        ("sheriff&#39;s office", "sheriff's office"),
        ("Council&nbsp;votes", "Council votes"),
        ("<b>ICE</b> detainer", "ICE detainer"),
        # Plain text stays as given, line breaks and spacing too.
        ("Fewer than <10 held; a < b", "Fewer than <10 held; a < b"),
        ("AT&T and R&D", "AT&T and R&D"),
        ("line one\nline two", "line one\nline two"),
        ("  spaced  ", "  spaced  "),
        ("", ""),
    ],
)
def test_text_of_field(given: str, read: str) -> None:
    assert text_of_field(given) == read


def test_html_to_text_deep_escaping_is_bounded() -> None:
    nested = "&amp;" + "amp;" * (MAX_HTML_PASSES + 5) + "lt;b&gt;x"
    out = html_to_text(nested)
    assert not TAG.search(out)
    assert html_to_text(out) == out


HTML_PIECES = st.one_of(
    st.text(max_size=20),
    st.sampled_from(
        [
            "<p>", "</p>", "<br/>", "<b>", "</b>", "<script>", "</script>", "<style>",
            "</style>", "<a href='x'>", "</a>", "&amp;", "&lt;", "&gt;", "&nbsp;", "&#60;",
            "&#x3e;", "&quot;", "<!--", "-->", "<![CDATA[", "]]>", "<", ">", "&", "</",
            "<?php ?>", "<!DOCTYPE html>", "&amp;lt;p&amp;gt;", "\n", " ", "é", "<div ",
            "<![", "<![ if", "<![endif]>", "[::1]", "<!-",
        ]
    ),
)  # fmt: skip
HTMLISH = st.lists(HTML_PIECES, max_size=30).map("".join)


@given(st.one_of(HTMLISH, st.text()))
def test_html_to_text_is_idempotent_and_tag_free(html: str) -> None:
    text = html_to_text(html)
    assert html_to_text(text) == text
    assert not TAG.search(text)
    assert text == text.strip()
    assert "  " not in text


# ---------------------------------------------------------------- canonical_url


@pytest.mark.parametrize(
    ("url", "canonical"),
    [
        ("HTTPS://WWW.Example.COM:443/News/Story.html", "https://www.example.com/News/Story.html"),
        ("http://example.com:80", "http://example.com/"),
        ("http://example.com:8080/a", "http://example.com:8080/a"),
        ("https://example.com/a#comments", "https://example.com/a"),
        (
            "https://example.com/a?utm_source=rss&b=2&utm_medium=feed&a=1&fbclid=x&gclid=y",
            "https://example.com/a?a=1&b=2",
        ),
        ("https://example.com/a?mc_cid=1&mc_eid=2&ocid=3&cmpid=4&_ga=5&UTM_Campaign=6",
         "https://example.com/a"),
        ("https://nyt.example/x.html?partner=rss&emc=rss&smid=tw", "https://nyt.example/x.html?emc=rss&partner=rss"),
        ("https://example.com/search?q=ice+detainer&page=2", "https://example.com/search?page=2&q=ice+detainer"),
        ("  https://example.com/a  ", "https://example.com/a"),
        ("https://user@Example.com/a", "https://user@example.com/a"),
        ("https://[2001:DB8::1]:443/a", "https://[2001:db8::1]/a"),
        ("not a url", "not a url"),
        ("", ""),
    ],
)  # fmt: skip
def test_canonical_url_examples(url: str, canonical: str) -> None:
    assert canonical_url(url) == canonical


URLISH = st.builds(
    lambda scheme, host, port, path, query, fragment: (
        f"{scheme}://{host}{port}{path}{query}{fragment}"
    ),
    st.sampled_from(["http", "https", "HTTP", "HttpS", "ftp"]),
    st.from_regex(r"[A-Za-z0-9.-]{1,20}", fullmatch=True),
    st.sampled_from(["", ":80", ":443", ":8080", ":"]),
    st.sampled_from(["", "/", "/a/B", "/%7Euser/x y", "/a;p"]),
    st.lists(
        st.tuples(
            st.sampled_from(["a", "B", "utm_source", "fbclid", "q", "x y", "%zz", ""]),
            st.text(max_size=5),
        ),
        max_size=4,
    ).map(lambda pairs: "?" + "&".join(f"{k}={v}" for k, v in pairs) if pairs else ""),
    st.sampled_from(["", "#", "#frag"]),
)


@given(st.one_of(URLISH, st.text()))
def test_canonical_url_is_idempotent(url: str) -> None:
    once = canonical_url(url)
    assert canonical_url(once) == once


@pytest.mark.parametrize(
    ("url", "stored"),
    [
        ("HTTP://Example.ORG:80/rss#top", "http://example.org/rss"),
        ("https://EXAMPLE.org:443/a/B?x=1&Y=2", "https://example.org/a/B?x=1&Y=2"),
        ("http://example.org", "http://example.org/"),
        ("  http://127.0.0.1:18081/a.xml\n", "http://127.0.0.1:18081/a.xml"),
        ("http://[::1]:8080/feed", "http://[::1]:8080/feed"),
        ("http://user:PW@Host.COM/x", "http://user:PW@host.com/x"),  # userinfo keeps its case
        ("https://news.google.com/rss/search?q=ICE+detainer&hl=en-US", None),  # unchanged
        ("http://example.org/Feed.XML?utm_source=x", None),  # no tracking stripped: a feed URL
        ("ftp://example.org/feed", None),  # not http(s): left to the caller's check
        ("http://[::1/feed", None),  # malformed: left to the caller's check
    ],
)
def test_feed_url_settles_scheme_host_port_and_fragment(url: str, stored: str | None) -> None:
    assert feed_url(url) == (url.strip() if stored is None else stored)


@given(st.one_of(URLISH, st.text()))
def test_feed_url_is_idempotent(url: str) -> None:
    once = feed_url(url)
    assert feed_url(once) == once


@given(URLISH)
def test_canonical_url_drops_tracking_and_fragments(url: str) -> None:
    once = canonical_url(url)
    assert "#" not in once
    assert "utm_source=" not in once and "fbclid=" not in once


# ---------------------------------------------------------------- content_hash


def test_content_hash_ignores_case_and_spacing() -> None:
    a = content_hash("ICE  Detainer", "Sheriff\nrefuses", "")
    b = content_hash("ice detainer", " sheriff refuses ", "")
    assert a == b and len(a) == 64 and int(a, 16) >= 0


def test_content_hash_keeps_fields_apart() -> None:
    assert content_hash("a b", "", "") != content_hash("a", "b", "")
    assert content_hash("a", "b", "") != content_hash("a", "c", "")


# ---------------------------------------------------------------- normalize_entry


def raw(**overrides: object) -> RawEntry:
    fields: dict[str, object] = {
        "guid": "urn:1",
        "link": "https://www.example.org/news/1?utm_source=rss#top",
        "title": "Sheriff <b>refuses</b> ICE detainer",
        "summary_html": "<p>The sheriff said no.</p>",
        "content_html": "",
        "published": datetime(2025, 1, 6, 10, 0, tzinfo=timezone(timedelta(hours=-5))),
    }
    fields.update(overrides)
    return RawEntry(**fields)  # type: ignore[arg-type]


def test_normalize_entry_basic() -> None:
    article = normalize_entry(raw(author="<i>A. Reporter</i>"), "County Times", FEED_URL)
    assert article.url == "https://www.example.org/news/1"
    assert article.guid == "urn:1"
    assert article.title == "Sheriff refuses ICE detainer"
    assert article.summary == "The sheriff said no."
    assert article.text == ""
    assert article.published_at == datetime(2025, 1, 6, 15, 0, tzinfo=UTC)
    assert article.published_at is not None and article.published_at.tzinfo is UTC
    assert article.source == "County Times"
    assert article.author == "A. Reporter"
    assert article.content_hash == content_hash(article.title, article.summary, article.text)


def test_google_news_title_suffix_and_source() -> None:
    entry = raw(
        title="Sheriff refuses ICE detainer - The Boston Globe",
        source_title="The Boston Globe",
        source_url="https://www.bostonglobe.com",
    )
    article = normalize_entry(entry, '"detainer" - Google News', FEED_URL)
    assert article.source == "The Boston Globe"
    assert article.title == "Sheriff refuses ICE detainer"


def test_title_suffix_kept_when_it_is_not_the_source() -> None:
    entry = raw(title="Vote on 287(g) - what it means", source_title="The Boston Globe")
    assert normalize_entry(entry, None, FEED_URL).title == "Vote on 287(g) - what it means"
    assert strip_source_suffix("Outlet", "Outlet") == "Outlet"


def test_source_falls_back_to_feed_host() -> None:
    assert normalize_entry(raw(), None, FEED_URL).source == "www.example.org"
    assert normalize_entry(raw(), "  ", FEED_URL).source == "www.example.org"


def test_guid_falls_back_to_url_then_hash() -> None:
    no_guid = normalize_entry(raw(guid=None), None, FEED_URL)
    assert no_guid.guid == "https://www.example.org/news/1"
    neither = normalize_entry(raw(guid="  ", link=None), None, FEED_URL)
    assert neither.url == ""
    assert neither.guid == neither.content_hash


LONG_LINK = "https://www.example.org/story?" + "&".join(f"k{i}=v{i}" for i in range(400))


@pytest.mark.parametrize(
    ("guid", "link", "kept_guid", "kept_url"),
    [
        ("g" * 2_000, None, "g" * 2_000, ""),  # at the limit: kept
        ("g" * 2_001, None, None, ""),  # past it: hashed
        ("\u20ac" * 667, None, None, ""),  # 667 characters, 2,001 bytes: hashed
        ("\u20ac" * 666, None, "\u20ac" * 666, ""),  # 1,998 bytes: kept
        ("urn:1", LONG_LINK, "urn:1", ""),  # a link past the limit is dropped
        (None, LONG_LINK, "hash", ""),  # ... and the id falls back to the content hash
        (None, "https://www.example.org/s/1", "https://www.example.org/s/1", "same"),
    ],
)
def test_entry_ids_and_links_past_the_index_limit(
    guid: str | None, link: str | None, kept_guid: str | None, kept_url: str
) -> None:
    """Entry ids and links are indexed, and a PostgreSQL B-tree entry holds at most 2,704
    bytes (one longer value made its feed's every poll fail there): past MAX_KEY_BYTES an
    id is kept as its SHA-256, the same at every poll, and a link is dropped."""
    article = normalize_entry(raw(guid=guid, link=link), None, FEED_URL)
    assert article.url == (link if kept_url == "same" else kept_url)
    if kept_guid is None:
        assert article.guid == "sha256:" + hashlib.sha256((guid or "").encode()).hexdigest()
        assert normalize_entry(raw(guid=guid, link=link), None, FEED_URL).guid == article.guid
    else:
        assert article.guid == (article.content_hash if kept_guid == "hash" else kept_guid)
    for key in (article.guid, article.url):
        assert len(key.encode()) <= MAX_KEY_BYTES


def test_title_summary_and_text_are_cut_to_what_the_matcher_reads() -> None:
    """MAX_ARTICLE_CHARS bounds the database and a hit's PostgreSQL search vector (1 MB)."""
    entry = raw(title="t" * 3_000, summary_html="s" * 60_000, content_html="c" * 300_000)
    article = normalize_entry(entry, None, FEED_URL)
    assert (len(article.title), len(article.summary), len(article.text)) == (
        MAX_ARTICLE_CHARS["title"],
        MAX_ARTICLE_CHARS["summary"],
        MAX_ARTICLE_CHARS["text"],
    )
    assert MAX_ARTICLE_CHARS == MAX_FIELD_CHARS  # as much as the matcher reads of each


@pytest.mark.parametrize(
    "link",
    [
        "javascript:alert(1)",
        "JavaScript:alert(document.cookie)",
        " java\tscript:alert(1)",  # urlsplit drops the tab: still javascript
        "data:text/html,<script>alert(1)</script>",
        "vbscript:x",
        "mailto:desk@news.example",
        "ftp://news.example/story",
    ],
)
def test_links_that_are_not_web_pages_are_dropped(link: str) -> None:
    """A feed's entry link is shown as a link in the dashboard and in Slack and Discord
    messages: only http(s) is kept, so no page of ours links to a script a feed wrote."""
    article = normalize_entry(raw(guid=None, link=link), None, FEED_URL)
    assert article.url == ""
    assert article.guid == article.content_hash


def test_relative_link_resolved_against_feed_url() -> None:
    article = normalize_entry(raw(link="../stories/2.html"), None, FEED_URL)
    assert article.url == "https://www.example.org/stories/2.html"


@pytest.mark.parametrize(
    "link",
    ["http://[::1", "https://[2001:db8::1/story", "http://x]/", "  http://[bad/  "],
)
def test_links_that_do_not_parse_are_kept_as_given(link: str) -> None:
    """urljoin raises on an unclosed IPv6 host; the entry is kept, its link as given."""
    article = normalize_entry(raw(link=link), None, FEED_URL)
    assert article.url == link.strip()
    assert article.guid == "urn:1"


def test_text_only_when_content_differs_from_summary() -> None:
    same = normalize_entry(raw(content_html="<div>The sheriff   said no.</div>"), None, FEED_URL)
    assert same.text == ""
    longer = normalize_entry(
        raw(content_html="<p>The sheriff said no.</p><p>More detail.</p>"), None, FEED_URL
    )
    assert longer.text == "The sheriff said no. More detail."


def test_naive_published_is_taken_as_utc() -> None:
    article = normalize_entry(raw(published=datetime(2025, 1, 6, 10, 0)), None, FEED_URL)
    assert article.published_at == datetime(2025, 1, 6, 10, 0, tzinfo=UTC)
    assert normalize_entry(raw(published=None), None, FEED_URL).published_at is None


# ------------------------------------------- html.parser and its one-split fast path

FRAGMENT_PIECES = st.sampled_from(
    [
        "<p>", "</p>", "<P CLASS=lead>", "<br/>", "<br />", "<img src=x/>", '<a href="/x?a=1&b=2">',
        "</a>", "<a title='a>b'>", '<a b=c"d>', "<div\nclass=\"x\">", "</div >", "<o:p>", "</o:p>",
        "<template>", "</template>", "<template/>", "<script>", "</script>", "<style>",
        "<!-- c -->", "<!--", "-->", "<![CDATA[x]]>", "<!DOCTYPE html>", "<?php ?>", "< p>",
        "</ p>", "<>", "</>",
        "<1>", "a < b", "x > y", "&amp;", "&lt;p&gt;", "&nbsp;", "&#8217;", "&#x2019;", "&copy",
        "AT&T", "& ", "&", " ", "\n", "word", "Wörter", "<em>", "</em>", "<b/>", "<li>", "</li>",
    ]
)  # fmt: skip


@settings(max_examples=400)
@given(st.one_of(st.lists(FRAGMENT_PIECES, max_size=12).map("".join), HTMLISH))
def test_plain_html_pass_matches_html_parser(fragment: str) -> None:
    plain = _html_pass_plain(fragment)
    assert plain is None or plain == _html_pass_parser(fragment)


@pytest.mark.skipif(not MANIFEST.is_file(), reason=NO_SHARED)
def test_plain_html_pass_matches_html_parser_on_shared_feeds() -> None:
    fragments = []
    for path in sorted(FEEDS.glob("*.xml")):
        try:
            parsed = parse_feed(path.read_bytes(), {}, "https://example.org/feed.xml", fast=False)
        except ParseError:
            continue
        for entry in parsed.entries:
            fragments += [entry.title, entry.summary_html, entry.content_html]
    fragments += [_html_pass_parser(f) for f in fragments]  # the second pass's inputs
    plain = [(f, _html_pass_plain(f)) for f in fragments if "<" in f or "&" in f]
    assert all(text == _html_pass_parser(f) for f, text in plain if text is not None)
    # Feed HTML is mostly plain: the fast path must carry most of it.
    assert sum(text is not None for _, text in plain) > 0.8 * len(plain)
