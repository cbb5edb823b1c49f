"""A process that never opens a connection keeps OpenSSL out (``service.heap.keep_openssl_out``):
what the parse processes do before their imports. Each case runs in a fresh Python, since
it is about what one process imports first."""

from __future__ import annotations

import hashlib

import pytest

from tests.conftest import fresh_python

PROBE = """
import json, sys
from service.heap import keep_openssl_out

first = sys.argv[1]
if first != "-":
    __import__(first)  # imported before the call: then nothing is kept out
kept = keep_openssl_out()

import hashlib, urllib.request, xml.sax.saxutils, http.client  # ssl is optional to these
import feedparser
from service.parse_worker import parse_document

try:
    import ssl
    ssl_importable = True
except ImportError:
    ssl_importable = False

doc = parse_document(  # its item has no guid nor link: its guid is a SHA-256 of its text
    b"<rss><channel><title>T</title><item><title>ICE detainer request</title>"
    b"<description>The jail held him for ICE.</description></item></channel></rss>",
    {}, "https://news.example/feed", None,
)
print(json.dumps({
    "kept": kept,
    "ssl_importable": ssl_importable,
    "openssl_hashes": hashlib.sha256.__module__ == "_hashlib",
    "libcrypto": "libcrypto" in open("/proc/self/maps").read(),
    "sha256": hashlib.sha256(b"detainer").hexdigest(),
    "blake2b": hashlib.blake2b(b"detainer", digest_size=8).hexdigest(),
    "guid": doc.articles[0].guid,
    "document": repr(doc),  # every field, the fingerprints (BLAKE2b) among them
}))
"""


def test_kept_out_the_parsing_modules_import_and_hash_the_same() -> None:
    """With OpenSSL kept out, everything a parse process imports still imports, ``ssl``
    cannot, hashes are computed by Python's own modules with the same digests, and a
    document parses to the same article (its fallback guid is a SHA-256) as with OpenSSL."""
    without = fresh_python(PROBE, "-")
    with_it = fresh_python(PROBE, "ssl")
    assert without["kept"] is True and with_it["kept"] is False
    assert without["ssl_importable"] is False and with_it["ssl_importable"] is True
    assert without["openssl_hashes"] is False
    assert without["sha256"] == hashlib.sha256(b"detainer").hexdigest()
    assert without["blake2b"] == hashlib.blake2b(b"detainer", digest_size=8).hexdigest()
    assert len(str(without["guid"])) == 64  # the text's SHA-256
    assert without["document"] == with_it["document"]
    if with_it["libcrypto"]:  # a Python linked to OpenSSL: the point of keeping it out
        assert without["libcrypto"] is False
        # The probe tells OpenSSL's hashes from Python's own (else the check above is void).
        assert with_it["openssl_hashes"] is True


@pytest.mark.parametrize("first", ["ssl", "hashlib", "_hashlib"])
def test_nothing_is_kept_out_once_openssl_may_be_loaded(first: str) -> None:
    """Called after ``ssl`` or ``hashlib`` (which loads OpenSSL's hashes) is imported, it
    changes nothing: OpenSSL is in the process already, and code holding it works on."""
    got = fresh_python(PROBE, first)
    assert got["kept"] is False
    assert got["ssl_importable"] is True
