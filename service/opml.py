"""OPML 2.0 subscription lists: read the feeds out of one, write one from our feeds.

Pure: bytes in, records out; text out. It does not fetch, check addresses or store
(``cli_feeds`` does, at the edge). Reading accepts what feed readers export: ``<outline>``
elements with ``xmlUrl`` at any depth (folders nest them), ``text`` or ``title`` as the name;
an outline without ``xmlUrl`` is a folder. Spec: http://opml.org/spec2.opml
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime

from service.errors import ParseError
from service.parse import ENTITY_DECLARATIONS

# A subscription list of a newsroom is hundreds of feeds; bigger files are a mistake or an
# attack, and ElementTree holds the whole tree in memory.
MAX_OPML_BYTES = 5_000_000


@dataclass(frozen=True, slots=True)
class OpmlFeed:
    url: str
    name: str | None = None


def read_opml(data: bytes) -> tuple[OpmlFeed, ...]:
    """The feeds listed in an OPML document (each outline with an ``xmlUrl``), in document
    order, each URL once. URLs are as written: the caller refuses, and says so, those it
    cannot poll (``feed://``, ``ftp://``, a relative path), so none is dropped unseen.

    Raises ``ParseError`` for a document that is too big, not XML, not OPML, or declares
    entities (see ``parse.ENTITY_DECLARATIONS``).
    """
    if len(data) > MAX_OPML_BYTES:
        raise ParseError(f"OPML file larger than {MAX_OPML_BYTES} bytes")
    if any(marker in data for marker in ENTITY_DECLARATIONS):
        raise ParseError("refused: the OPML file declares XML entities (<!ENTITY ...>)")
    try:
        root = ET.fromstring(data)
    except ET.ParseError as e:
        raise ParseError(f"not an OPML file: {e}") from e
    if root.tag != "opml":
        raise ParseError(f"not an OPML file: the root element is <{root.tag}>, not <opml>")
    feeds: list[OpmlFeed] = []
    seen: set[str] = set()
    for outline in root.iter("outline"):
        url = (outline.get("xmlUrl") or outline.get("xmlurl") or "").strip()
        if not url or url in seen:
            continue
        seen.add(url)
        name = (outline.get("title") or outline.get("text") or "").strip() or None
        feeds.append(OpmlFeed(url=url, name=name))
    return tuple(feeds)


# Characters XML 1.0 cannot hold, even escaped: C0 controls other than tab, newline and
# carriage return, lone surrogates, U+FFFE and U+FFFF. A feed name given through the API or
# the CLI may hold one, and ElementTree writes it as it is: the export was not well-formed
# and our own `feeds import` refused it.
NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def write_opml(feeds: Iterable[OpmlFeed], title: str, now: datetime) -> str:
    """An OPML 2.0 document listing ``feeds`` (type ``rss``, as readers expect); characters
    XML cannot hold (``NOT_XML``) are left out of names and URLs."""
    root = ET.Element("opml", version="2.0")
    head = ET.SubElement(root, "head")
    ET.SubElement(head, "title").text = title
    ET.SubElement(head, "dateCreated").text = format_datetime(now, usegmt=True)
    body = ET.SubElement(root, "body")
    for feed in feeds:
        url = NOT_XML.sub("", feed.url)
        name = NOT_XML.sub("", feed.name or "") or url
        ET.SubElement(body, "outline", type="rss", text=name, title=name, xmlUrl=url)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, "unicode") + "\n"
