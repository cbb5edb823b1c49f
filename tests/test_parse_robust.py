"""Whatever a feed's entries and headers hold, reading it gives articles or an error for the
feed, never an exception: an exception here stopped a whole poll pass before the pipeline
caught it, and still costs the feed its new items. Hypothesis builds RSS items from the
pieces that broke it before (unclosed IPv6 hosts in links and ``Content-Location``,
``<![`` declarations html.parser asserts on, control characters) and other odd text.
"""

from __future__ import annotations

import re
from dataclasses import fields
from xml.sax.saxutils import escape

from hypothesis import given, settings
from hypothesis import strategies as st

from service.match import Matcher
from service.parse_worker import parse_document
from service.stories import article_fingerprint
from tests.conftest import RULES

MATCHER = Matcher.load(RULES)
CONTROLS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")

PIECES = st.one_of(
    st.text(max_size=8),
    st.sampled_from(
        [
            "http://", "https://", "//", "[::1]", "[::1", "]", "[", "%zz", "%00", ":", "/",
            "?", "#", "@", "&amp;", "&lt;b&gt;", "&lt;![ if&gt;", "&lt;![", "&lt;!-x&gt;",
            "&lt;![endif]&gt;", "&lt;script&gt;", "\u0130", "\u0131", "\ufb01", "\u200b",
            "\u2028", "é", "detainer", "sanctuary city", "ICE", " ", "\n", "\x00", "\x01",
            "\x0c", "\x1f",
        ]
    ),
)  # fmt: skip
TEXT = st.lists(PIECES, max_size=12).map("".join)
ITEM = st.fixed_dictionaries(
    {"title": TEXT, "link": TEXT, "guid": TEXT, "description": TEXT, "pubDate": TEXT},
    optional={"author": TEXT, "content:encoded": TEXT, "source": TEXT},
)
HEADERS = st.one_of(
    st.just({}),
    st.builds(lambda loc: {"content-location": loc}, TEXT),
    st.builds(lambda cs: {"content-type": f"application/rss+xml; charset={cs}"}, TEXT),
)


def _rss(items: list[dict[str, str]]) -> bytes:
    body = "".join(
        "<item>" + "".join(f"<{k}>{escape(v)}</{k}>" for k, v in item.items()) + "</item>"
        for item in items
    )
    return (
        "<rss version='2.0' xmlns:content='http://purl.org/rss/1.0/modules/content/'>"
        f"<channel><title>t</title>{body}</channel></rss>"
    ).encode("utf-8", "surrogatepass")


@settings(max_examples=300, deadline=None)
@given(
    st.lists(ITEM, min_size=1, max_size=3),
    HEADERS,
    st.sampled_from(["http://f.example/rss", "http://[::1]/rss"]),
)
def test_odd_entries_and_headers_give_articles_or_an_error(
    items: list[dict[str, str]], headers: dict[str, str], url: str
) -> None:
    doc = parse_document(_rss(items), headers, url, MATCHER.prefilter)
    assert (doc.error is None) == (doc.parsed is not None)
    for article in doc.articles:
        MATCHER.classify(article.title, article.summary, article.text)
        article_fingerprint(article)
        # XML forbids C0 controls, PostgreSQL refuses NUL: none reaches an article.
        for field in fields(article):
            value = getattr(article, field.name)
            assert not (isinstance(value, str) and CONTROLS.search(value)), (field.name, value)
