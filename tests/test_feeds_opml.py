"""OPML import/export and feed discovery: the pure modules on data, and the command line
against a real server on 127.0.0.1 (issue 4)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from service.discover import feed_links, is_html
from service.errors import ParseError
from service.opml import OpmlFeed, read_opml, write_opml
from tests.seedfeed import other_items, rss
from tests.servers import FeedServer
from tests.test_cli import OFFLINE, config, dw

NOW = datetime(2025, 1, 23, 15, 0, tzinfo=UTC)

READER_EXPORT = b"""<?xml version="1.0" encoding="UTF-8"?>
<opml version="1.0">
  <head><title>My subscriptions</title></head>
  <body>
    <outline text="Immigration" title="Immigration">
      <outline type="rss" text="Documented NY" xmlUrl="https://documentedny.com/feed/"
               htmlUrl="https://documentedny.com/"/>
      <outline type="rss" text="Border" title="Border Report"
               xmlUrl="https://www.borderreport.com/feed/"/>
    </outline>
    <outline type="rss" text="No name given" xmlUrl="https://example.org/a.xml"/>
    <outline type="rss" text="duplicate" xmlUrl="https://documentedny.com/feed/"/>
    <outline type="rss" text="not http" xmlUrl="ftp://example.org/feed"/>
    <outline type="link" text="a plain link" url="https://example.org/"/>
  </body>
</opml>
"""


def test_read_opml_flattens_folders_and_skips_junk() -> None:
    assert read_opml(READER_EXPORT) == (
        OpmlFeed("https://documentedny.com/feed/", "Documented NY"),
        OpmlFeed("https://www.borderreport.com/feed/", "Border Report"),
        OpmlFeed("https://example.org/a.xml", "No name given"),
        OpmlFeed("ftp://example.org/feed", "not http"),  # refused by the import, loudly
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not xml at all", "not an OPML file"),
        (b"<rss><channel/></rss>", "root element is <rss>"),
        (
            b'<!DOCTYPE opml [<!ENTITY x SYSTEM "file:///etc/passwd">]><opml><body>'
            b'<outline xmlUrl="https://e.org/&x;"/></body></opml>',
            "declares XML entities",
        ),
    ],
)
def test_read_opml_refuses_what_is_not_opml(data: bytes, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        read_opml(data)


def test_write_then_read_round_trips() -> None:
    feeds = (
        OpmlFeed("https://example.org/rss?a=1&b=2", 'Quotes "and" <brackets>'),
        OpmlFeed("https://example.org/atom", None),
    )
    text = write_opml(feeds, "detainer-watch feeds", NOW)
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<opml version="2.0">')
    assert "<dateCreated>Thu, 23 Jan 2025 15:00:00 GMT</dateCreated>" in text
    assert read_opml(text.encode()) == (
        feeds[0],
        OpmlFeed("https://example.org/atom", "https://example.org/atom"),
    )


def test_names_with_characters_xml_cannot_hold_still_export() -> None:
    """A feed name from the API or the CLI may hold a control character; ElementTree wrote
    it as it is, and our own import refused the export as not well-formed."""
    feeds = (
        OpmlFeed("https://example.org/a", "Bad\x01 name\x0b"),
        OpmlFeed("https://example.org/b", "\x00"),
        OpmlFeed("https://example.org/c", "Emoji \U0001f600 \ud800ok"),
    )
    assert read_opml(write_opml(feeds, "t", NOW).encode()) == (
        OpmlFeed("https://example.org/a", "Bad name"),
        OpmlFeed("https://example.org/b", "https://example.org/b"),  # nothing left: the URL
        OpmlFeed("https://example.org/c", "Emoji \U0001f600 ok"),
    )


PAGE = b"""<!doctype html><html><head><title>Local news</title>
<link rel="stylesheet" href="/style.css">
<link rel="alternate" type="application/rss+xml" title="All" href="/feed/">
<link rel="Alternate" type="application/atom+xml; charset=utf-8" href="news/atom.xml">
<link rel="alternate" type="application/rss+xml" href="/feed/">
<link rel="alternate" type="text/html" hreflang="es" href="/es/">
<link rel="alternate" type="application/rss+xml" href="javascript:alert(1)">
</head><body><a rel="alternate" type="application/rss+xml" href="https://other.example/rss">x</a>
</body></html>"""


def test_feed_links_resolves_relative_hrefs_in_order() -> None:
    assert feed_links(PAGE, "https://news.example/section/page.html") == [
        "https://news.example/feed/",
        "https://news.example/section/news/atom.xml",
        "https://other.example/rss",
    ]


def test_feed_links_honours_base_href() -> None:
    page = b'<head><base href="https://cdn.example/site/"><link rel="alternate" '
    page += b'type="application/atom+xml" href="atom.xml"></head>'
    assert feed_links(page, "https://news.example/") == ["https://cdn.example/site/atom.xml"]


def test_is_html() -> None:
    assert is_html(b"<rss/>", {"Content-Type": "text/html; charset=utf-8"})
    # A page served under a feed's type is still a page (no feed opens with a doctype) ...
    assert is_html(b"<!doctype html><html>", {"content-type": "application/rss+xml"})
    assert is_html(b"\n <HTML><head>", {"content-type": "text/xml"})
    # ... but a feed whose text holds "<head" (CDATA) stays a feed under its type.
    assert not is_html(b"<rss><![CDATA[<head>]]></rss>", {"content-type": "application/rss+xml"})
    assert is_html(b"  <!DOCTYPE html><html>", {})
    assert not is_html(b'<?xml version="1.0"?><rss/>', {})


# ------------------------------------------------------------ the command line


def cli_config(tmp_path: Path) -> Path:
    return config(tmp_path, more="[network]\nallow_private_addresses = true\n")


def listed(cfg: Path) -> list[dict[str, object]]:
    out = dw("feeds", "list", "--format", "json", config=cfg)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


def test_feeds_add_discovers_the_feed_of_a_site(tmp_path: Path) -> None:
    cfg = cli_config(tmp_path)
    with FeedServer() as srv:
        srv.route("/", body=PAGE, headers={"Content-Type": "text/html; charset=utf-8"})
        srv.route("/feed/", body=rss(other_items()), headers={"Content-Type": "text/xml"})
        srv.route("/plain.html", body=b"<html><head></head></html>")
        added = dw("feeds", "add", srv.url("/"), "--name", "Local", config=cfg)
        assert added.returncode == 0, added.stderr
        assert f"discovered the feed {srv.url('/feed/')}" in added.stderr
        # A feed URL is added as it is.
        direct = dw("feeds", "add", srv.url("/feed/"), config=cfg)
        assert "already present" in direct.stdout
        none = dw("feeds", "add", srv.url("/plain.html"), config=cfg)
        assert none.returncode == 1 and "announces no feed" in none.stderr
    assert [(f["url"], f["name"]) for f in listed(cfg)] == [(srv.url("/feed/"), "Local")]


def test_feeds_add_discovers_the_feed_of_a_page_served_as_a_feed(tmp_path: Path) -> None:
    """A site whose server labels its pages ``application/rss+xml``: the page is read as
    the page it is, and its feed is added, not the page."""
    cfg = cli_config(tmp_path)
    with FeedServer() as srv:
        srv.route("/", body=PAGE, headers={"Content-Type": "application/rss+xml"})
        srv.route("/feed/", body=rss(other_items()), headers={"Content-Type": "text/xml"})
        added = dw("feeds", "add", srv.url("/"), config=cfg)
        assert added.returncode == 0, added.stderr
        assert f"discovered the feed {srv.url('/feed/')}" in added.stderr
    assert [f["url"] for f in listed(cfg)] == [srv.url("/feed/")]


def test_feeds_add_refuses_private_addresses_unless_allowed(tmp_path: Path) -> None:
    out = dw("feeds", "add", "http://127.0.0.1:9/feed.xml", config=config(tmp_path))
    assert out.returncode == 1 and "allow_private_addresses" in out.stderr


def test_feed_urls_too_long_to_store_are_refused(tmp_path: Path) -> None:
    """Feed URLs are indexed (PostgreSQL: at most 2,704 bytes an index entry): `feeds add`
    refuses one past 2,048 bytes, and `feeds import` skips it and adds the rest."""
    cfg = cli_config(tmp_path)
    long_url = "https://example.org/feed.xml?" + "x" * 2_100
    out = dw("feeds", "add", long_url, config=cfg)
    assert out.returncode == 1 and "a URL of 2129 bytes is longer than 2048" in out.stderr
    for odd in ("http://[::1/feed", "https://x.example:99999/feed"):  # urlsplit raised
        out = dw("feeds", "add", odd, config=cfg)
        assert out.returncode == 1 and "is not an http(s) URL" in out.stderr, out.stderr
    opml = tmp_path / "subs.opml"
    opml.write_text(
        '<opml version="2.0"><body><outline type="rss" xmlUrl="https://example.org/a.xml"/>'
        f'<outline type="rss" xmlUrl="{long_url}"/></body></opml>',
        encoding="utf-8",
    )
    imported = dw("feeds", "import", str(opml), config=cfg)
    assert imported.returncode == 0, imported.stderr
    assert "1 added, 0 already present, 1 refused" in imported.stdout
    assert "skipped: a URL of 2129 bytes is longer than 2048" in imported.stderr
    assert [f["url"] for f in listed(cfg)] == ["https://example.org/a.xml"]


def test_feeds_import_and_export(tmp_path: Path) -> None:
    cfg = cli_config(tmp_path)
    opml = tmp_path / "subs.opml"
    opml.write_bytes(READER_EXPORT)
    out = dw("feeds", "import", str(opml), config=cfg)
    assert out.returncode == 0, out.stderr
    assert "3 added, 0 already present, 1 refused" in out.stdout
    assert "skipped: 'ftp://example.org/feed' is not an http(s) URL" in out.stderr
    again = dw("feeds", "import", str(opml), config=cfg)
    assert "0 added, 3 already present" in again.stdout
    # The same feeds spelled otherwise (another reader's export): still already present.
    shouting = tmp_path / "shouting.opml"
    shouting.write_bytes(
        READER_EXPORT.replace(b"https://documentedny.com", b"HTTPS://DocumentedNY.com:443")
    )
    assert b"DocumentedNY" in shouting.read_bytes()
    spelled = dw("feeds", "import", str(shouting), config=cfg)
    assert "0 added, 3 already present" in spelled.stdout, spelled.stdout
    removed = dw("feeds", "remove", "HTTPS://DOCUMENTEDNY.COM/feed/", config=cfg)
    assert removed.returncode == 0 and "documentedny.com/feed/" in removed.stdout
    assert (
        dw("feeds", "add", "https://documentedny.com/feed/", *OFFLINE, config=cfg).returncode == 0
    )
    assert [f["name"] for f in listed(cfg)] == ["Documented NY", "Border Report", "No name given"]

    exported = dw("feeds", "export", config=cfg)
    assert exported.returncode == 0, exported.stderr
    assert [f.url for f in read_opml(exported.stdout.encode())] == [
        "https://documentedny.com/feed/",
        "https://www.borderreport.com/feed/",
        "https://example.org/a.xml",
    ]
    bad = tmp_path / "bad.opml"
    bad.write_text("<html/>", encoding="utf-8")
    failed = dw("feeds", "import", str(bad), config=cfg)
    assert failed.returncode == 1 and "not an OPML file" in failed.stderr
