"""RSS documents built from the seed story and from made-up entries, for poll tests."""

from __future__ import annotations

from xml.sax.saxutils import escape

from tests.conftest import SEED

SEED_URL = "https://www.foxnews.com/us/boston-authorities-rejected-all-15-ice-detainer-requests"


def seed_parts() -> tuple[str, str, str]:
    """(title, summary, text) of the seed story: line 1, line 2, the rest."""
    lines = [ln.strip() for ln in SEED.read_text(encoding="utf-8").splitlines() if ln.strip()]
    return lines[0], lines[1], " ".join(lines[2:])


def rss(
    items: list[dict[str, str]], title: str = "Test feed", link: str = "https://example.org/"
) -> bytes:
    """An RSS 2.0 document; each item has title, link, description and optional content."""
    parts = []
    for it in items:
        content = it.get("content", "")
        parts.append(
            "<item>"
            f"<title>{escape(it['title'])}</title>"
            f"<link>{escape(it['link'])}</link>"
            f'<guid isPermaLink="false">{escape(it.get("guid", it["link"]))}</guid>'
            f"<description>{escape(it.get('description', ''))}</description>"
            + (f"<content:encoded><![CDATA[{content}]]></content:encoded>" if content else "")
            + f"<pubDate>{it.get('pubDate', 'Thu, 23 Jan 2025 15:00:00 GMT')}</pubDate>"
            "</item>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/">'
        f"<channel><title>{escape(title)}</title><link>{escape(link)}</link>"
        f"<description>test</description>{''.join(parts)}</channel></rss>"
    ).encode()


def seed_feed(link: str = SEED_URL, title: str = "Fox News US") -> bytes:
    t, summary, text = seed_parts()
    body = "".join(f"<p>{escape(p)}</p>" for p in text.split(". "))
    return rss(
        [{"title": t, "link": link, "description": summary, "content": body}],
        title=title,
        link="https://www.foxnews.com/",
    )


def other_items(n: int = 3) -> list[dict[str, str]]:
    return [
        {
            "title": f"City budget hearing number {i} scheduled",
            "link": f"https://example.org/budget-{i}",
            "description": "The finance committee will review parks and road spending.",
        }
        for i in range(n)
    ]
