"""Canonical URLs for stories: trailing slashes, AMP variants, the feed's canonical link,
Google News items attributed to the outlet named in their ``<source>``."""

from __future__ import annotations

import pytest

from service.normalize import canonical_url, is_amp_url, normalize_entry
from service.parse import parse_feed

FEED_URL = "https://feeds.example/news.xml"


@pytest.mark.parametrize(
    ("url", "canonical"),
    [
        ("https://example.com/news/story/", "https://example.com/news/story"),
        ("https://example.com/", "https://example.com/"),
        ("https://example.com//", "https://example.com/"),
        ("https://example.com/news/story/amp/", "https://example.com/news/story"),
        ("https://example.com/news/story/amp", "https://example.com/news/story"),
        ("https://example.com/news/story?amp", "https://example.com/news/story"),
        ("https://example.com/news/story?amp=1&id=4", "https://example.com/news/story?id=4"),
        ("https://wp.example/2025/01/story/?outputType=amp", "https://wp.example/2025/01/story"),
        ("https://wp.example/story?outputType=html", "https://wp.example/story?outputType=html"),
        (
            "https://www-example-com.cdn.ampproject.org/c/s/www.example.com/news/story/amp/",
            "https://www.example.com/news/story",
        ),
        ("https://example.com/camp/", "https://example.com/camp"),  # not an AMP segment
        # An amp. host is kept: only the feed's own canonical link undoes it (below).
        ("https://amp.example.com/news/story", "https://amp.example.com/news/story"),
    ],
)
def test_canonical_url_slashes_and_amp(url: str, canonical: str) -> None:
    assert canonical_url(url) == canonical
    assert canonical_url(canonical) == canonical


def test_is_amp_url() -> None:
    assert is_amp_url("https://amp.example.com/x")
    assert is_amp_url("https://example.com/x/amp/")
    assert is_amp_url("https://example.com/x?outputType=AMP")
    assert not is_amp_url("https://example.com/ampersand")
    assert not is_amp_url("https://example.com/x")


def _entry_url(document: bytes) -> str:
    parsed = parse_feed(document, {"content-type": "application/xml"}, FEED_URL)
    return normalize_entry(parsed.entries[0], parsed.title, FEED_URL).url


def test_the_feed_canonical_link_wins_over_an_amp_link() -> None:
    atom = b"""<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>T</title>
<entry><id>urn:1</id><title>Sheriff ends ICE contract</title>
<link rel="alternate" href="https://amp.example.com/news/sheriff"/>
<link rel="canonical" href="https://www.example.com/news/sheriff/?utm_source=atom"/>
<updated>2025-01-23T15:00:00Z</updated></entry></feed>"""
    assert _entry_url(atom) == "https://www.example.com/news/sheriff"


def test_a_non_amp_alternate_wins_over_an_amp_main_link() -> None:
    rss = b"""<?xml version="1.0"?><rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom">
<channel><title>T</title><link>https://example.com/</link><item><title>Sheriff</title>
<link>https://amp.example.com/news/sheriff</link>
<atom:link rel="alternate" href="https://www.example.com/news/sheriff"/>
</item></channel></rss>"""
    assert _entry_url(rss) == "https://www.example.com/news/sheriff"
    plain = rss.replace(
        b'<atom:link rel="alternate" href="https://www.example.com/news/sheriff"/>', b""
    )
    assert _entry_url(plain) == "https://amp.example.com/news/sheriff"


GOOGLE_NEWS = b"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/"><channel>
<title>"ICE detainer" - Google News</title><link>https://news.google.com/search?q=ICE+detainer</link>
<item>
<title>Boston rejected all 15 ICE detainer requests in 2024 - Boston Herald</title>
<link>https://news.google.com/rss/articles/CBMiZ2h0dHBzOi8vd3d3LmJvc3Rvbmhlcm?oc=5</link>
<guid isPermaLink="false">CBMiZ2h0dHBzOi8vd3d3LmJvc3Rvbmhlcm</guid>
<pubDate>Thu, 23 Jan 2025 15:00:00 GMT</pubDate>
<description>&lt;a href="https://news.google.com/rss/articles/CBMiZ2h0dHBzOi8vd3d3LmJvc3Rvbmhlcm?oc=5"
target="_blank"&gt;Boston rejected all 15 ICE detainer requests in 2024&lt;/a&gt;&amp;nbsp;
&lt;font color="#6f6f6f"&gt;Boston Herald&lt;/font&gt;</description>
<source url="https://www.bostonherald.com">Boston Herald</source>
</item></channel></rss>"""


def test_google_news_items_are_attributed_to_the_outlet() -> None:
    parsed = parse_feed(GOOGLE_NEWS, {"content-type": "application/rss+xml"}, FEED_URL)
    article = normalize_entry(parsed.entries[0], parsed.title, FEED_URL)
    assert article.source == "Boston Herald"
    assert article.title == "Boston rejected all 15 ICE detainer requests in 2024"
    assert (
        article.url
        == "https://news.google.com/rss/articles/CBMiZ2h0dHBzOi8vd3d3LmJvc3Rvbmhlcm?oc=5"
    )
    assert parsed.entries[0].source_url == "https://www.bostonherald.com"
