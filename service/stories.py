"""Near-duplicate grouping of articles into stories: MinHash with LSH banding.

Pure: no network, no database, no clock. This module owns what "the same story" means:

* the same canonical URL, or the same content hash, at any distance in time;
* else near-duplicate text (wire copy, lightly edited rewrites) within ``window`` of each
  other: the resemblance (Jaccard similarity) of the two articles' word-shingle sets
  reaches ``threshold``.

Finding candidates among stored articles uses MinHash with LSH banding (Broder 1997;
Leskovec, Rajaraman & Ullman, *Mining of Massive Datasets*, ch. 3): each article gets a
signature of ``SIGNATURE_BINS`` minimum hashes, cut into ``BANDS`` bands; storage indexes
one key per band, and two articles sharing any band key are compared exactly. The
signature is one-permutation MinHash with optimal densification (Li, Owen & Zhang 2012;
Shrivastava 2017): every shingle is hashed once, so a signature costs O(shingles) instead
of O(shingles x permutations) in pure Python. The thresholds are measured in
``bench/bench_dedup.py`` and documented in ``docs/stories.md``.

It does *not* read or write stories (``storage`` looks candidates up and records the
choice), fetch pages, or judge relevance (``match``).
"""

from __future__ import annotations

import hashlib
import re
import zlib
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import repeat
from operator import and_, rshift

from service.types import Article, Fingerprint, StoryCandidate

# Words per shingle. 3-word shingles keep a changed word from touching more than three
# shingles, while 2-word ones are too common across different stories on one topic
# ("sanctuary city", "ice detainers"); measured in docs/stories.md.
SHINGLE_WORDS = 3

# Only the lead is compared: title plus the first LEAD_WORDS words of summary and text.
# Feeds disagree on how much body they carry (a two-sentence description here, the full
# article in content:encoded there); the lead is what every copy of a story shares, and
# the cap bounds the cost of full-text feeds.
LEAD_WORDS = 120

# Articles with fewer shingles than this (a bare or generic headline) are grouped by URL
# and content hash only: a handful of shared words says nothing about being one story.
MIN_SHINGLES = 8

# Jaccard resemblance at which two articles are one story. Measured in docs/stories.md:
# different articles (same-event siblings included) stay below 0.1, even with the same
# outlet boilerplate below 0.2, while lightly edited copies mostly score 0.4-0.9; 0.3
# keeps a margin on both sides. Configurable as [stories] threshold.
DEFAULT_THRESHOLD = 0.3

# Copies of one story run within days of each other; a text resembling one from a month
# ago is a new story (an anniversary piece, a recycled explainer). [stories] window.
DEFAULT_WINDOW_S = 7 * 86400.0

# Signature layout: 64 bins cut into 32 bands of 2 rows. The chance that two articles of
# resemblance J share at least one band is 1 - (1 - J^2)^32: 0.95 at the threshold 0.3,
# 0.998 at 0.45, but 0.08 at 0.05 (different stories on one topic share a few stock
# phrases), so few needless candidates reach the exact comparison.
SIGNATURE_BINS = 64
BAND_ROWS = 2
BANDS = SIGNATURE_BINS // BAND_ROWS
_BIN_BITS = SIGNATURE_BINS.bit_length() - 1
# Shingle hashes are 32 bits: CRC-32 (each of its bits depends on the whole shingle), times
# an odd constant so the carries scramble the order of values (CRC alone is linear). Four
# times cheaper than a cryptographic hash in pure Python (bench/bench_dedup.py), and two
# different shingles of two articles collide with odds of about 1 in 400,000 per pair of
# 100-shingle articles, which moves a resemblance by 1 % at most.
_MIX = 0x9E3779B1  # Knuth's multiplicative constant (2^32 / golden ratio)
_MASK32 = 0xFFFFFFFF
# Fingerprints pack the hashes as C unsigned ints: 4 bytes on every platform CPython runs on.
_HASH_TYPE = "I"

_WORD = re.compile(r"\w+")
# The lead in one C call: up to LEAD_WORDS words, each after the non-word run before it,
# ending where the last of them ends. Greedy \w+ never splits a word, so the match ends
# exactly where the LEAD_WORDS-th word of _WORD.finditer ends (or the last, if fewer).
_LEAD = re.compile(rf"(?:\W*\w+){{1,{LEAD_WORDS}}}")


def _stable_hash(data: str) -> int:
    """A 64-bit hash that is the same in every process (band keys are stored)."""
    return int.from_bytes(hashlib.blake2b(data.encode(), digest_size=8).digest(), "little")


# Optimal densification: an empty bin i takes the value of the first non-empty bin in its
# own fixed probe order, the same for every article, so equal sets stay equal.
def _probe_order(i: int) -> tuple[int, ...]:
    others = [j for j in range(SIGNATURE_BINS) if j != i]
    return tuple(sorted(others, key=lambda j: _stable_hash(f"probe:{i}:{j}")))


_PROBES: tuple[tuple[int, ...], ...] = tuple(_probe_order(i) for i in range(SIGNATURE_BINS))
_BINS = range(SIGNATURE_BINS)


@dataclass(frozen=True, slots=True)
class StoryPolicy:
    threshold: float = DEFAULT_THRESHOLD
    window_s: float = DEFAULT_WINDOW_S


@dataclass(frozen=True, slots=True)
class StoryChoice:
    """Which story an article joins.

    ``story_id``: a stored story; ``same_as``: the index of an earlier article of the same
    batch (whose story is new); both None: a new story. ``story_has_hit``: the stored
    story already has its hit, so this sighting needs no matching and makes no alert.
    """

    story_id: int | None = None
    same_as: int | None = None
    reason: str = "new"  # "new" | "url" | "hash" | "text"
    resemblance: float = 0.0
    story_has_hit: bool = False


def lead_words(title: str, summary: str, text: str) -> list[str]:
    """The normalised words compared: the title's, then the body's first ``LEAD_WORDS``."""
    body = f"{summary} {text}"
    # Only the lead is read: find where its last word ends in the original text, so that a
    # full-text article is not case-folded and split whole (~half the fingerprint's cost).
    # One regex match, not a match object per word (~85 -> ~63 µs on bench_poll's articles).
    lead_match = _LEAD.match(body)
    lead = body[: lead_match.end()] if lead_match else ""
    return _WORD.findall(title.casefold()) + _WORD.findall(lead.casefold())[:LEAD_WORDS]


def shingles(title: str, summary: str, text: str) -> frozenset[int]:
    """Hashes of the overlapping ``SHINGLE_WORDS``-word runs of the article's lead."""
    words = lead_words(title, summary, text)
    # Runs joined, encoded and CRC'd by map/zip in C; only the mixing is a Python step.
    # The shorter slices end the runs: strict=False is the point.
    runs = map(" ".join, zip(*(words[k:] for k in range(SHINGLE_WORDS)), strict=False))
    return frozenset([(crc * _MIX) & _MASK32 for crc in map(zlib.crc32, map(str.encode, runs))])


def signature(hashes: Iterable[int]) -> tuple[int, ...]:
    """One-permutation MinHash of a shingle set: per bin, the smallest hash that falls in
    it; empty bins densified. Empty input gives an empty signature."""
    return _signature_of_descending(sorted(hashes, reverse=True))


def _signature_of_descending(hashes: Sequence[int]) -> tuple[int, ...]:
    """``signature`` of hashes sorted from largest to smallest, in C-level steps.

    A bin's hashes share their low bits, so the smallest hash of a bin has the smallest
    value: ``dict(zip(...))`` keeps the last value given for a key, which in descending
    order is the bin's minimum. An empty bin's donor is the first filled bin of its probe
    order (``filter``). The same result as one Python step per hash and per probed bin, a
    quarter less CPU (26.6 -> 19.5 us on bench_poll's articles; tests/test_stories.py
    compares the two)."""
    bins = dict(
        zip(
            map(and_, hashes, repeat(SIGNATURE_BINS - 1)),
            map(rshift, hashes, repeat(_BIN_BITS)),
            strict=True,
        )
    )
    if not bins:
        return ()
    if len(bins) == SIGNATURE_BINS:
        return tuple(map(bins.__getitem__, _BINS))
    filled = bins.__contains__
    return tuple(bins[i] if i in bins else bins[next(filter(filled, _PROBES[i]))] for i in _BINS)


# A band key packs the band's number and its rows' 26-bit values into one integer below
# 2^63 (a BIGINT on both databases): band << 52 | row0 << 26 | row1.
_ROW_BITS = 26
_ROW_MASK = (1 << _ROW_BITS) - 1
# Each band's number, shifted into place. band_keys pairs the rows up (BAND_ROWS = 2).
_BAND_BASES = tuple(band << (_ROW_BITS * BAND_ROWS) for band in range(BANDS))


def band_keys(sig: Sequence[int]) -> tuple[int, ...]:
    """One index key per band: the band's number and its rows' values in one integer."""
    if not sig:
        return ()
    return tuple(
        [
            base | (first & _ROW_MASK) << _ROW_BITS | (second & _ROW_MASK)
            for base, first, second in zip(_BAND_BASES, sig[0::2], sig[1::2], strict=True)
        ]
    )


def fingerprint(title: str, summary: str, text: str) -> Fingerprint:
    """Shingles and band keys of an article; no band keys when it is too short to compare."""
    ordered = sorted(shingles(title, summary, text))  # one sort for the packing and the signature
    packed = array(_HASH_TYPE, ordered).tobytes()
    if len(ordered) < MIN_SHINGLES:
        return Fingerprint(shingle_hashes=packed, band_keys=())
    return Fingerprint(
        shingle_hashes=packed, band_keys=band_keys(_signature_of_descending(ordered[::-1]))
    )


def shingle_set(fp: Fingerprint) -> frozenset[int]:
    """The shingle hashes of a fingerprint, as ``shingles`` gave them."""
    return frozenset(array(_HASH_TYPE, fp.shingle_hashes))


def article_fingerprint(article: Article) -> Fingerprint:
    return fingerprint(article.title, article.summary, article.text)


def resemblance(a: frozenset[int], b: frozenset[int]) -> float:
    """Exact Jaccard similarity of two shingle sets (0 when either is too short)."""
    if len(a) < MIN_SHINGLES or len(b) < MIN_SHINGLES:
        return 0.0
    return len(a & b) / len(a | b)


def resemblance_of(a: Fingerprint, b: Fingerprint) -> float:
    """``resemblance`` of two fingerprints' shingles."""
    return resemblance(shingle_set(a), shingle_set(b))


def seen_at(article: Article, now: datetime) -> datetime:
    """When an article counts as published, for the window: its date, else first sight."""
    return article.published_at or now


def candidate_window(times: Iterable[datetime], policy: StoryPolicy) -> tuple[datetime, datetime]:
    """The span of stored sightings a batch of articles published at ``times`` may join."""
    moments = list(times)
    window = timedelta(seconds=policy.window_s)
    return min(moments) - window, max(moments) + window


@dataclass(slots=True)
class _Known:
    story_id: int | None
    same_as: int | None
    url: str
    content_hash: str
    at: datetime
    fp: Fingerprint
    has_hit: bool


def assign_stories(
    articles: Sequence[Article],
    fingerprints: Sequence[Fingerprint],
    candidates: Sequence[StoryCandidate],
    policy: StoryPolicy,
    now: datetime,
) -> list[StoryChoice]:
    """The story of each article of a batch, in order, given stored ``candidates``.

    An article joins the story of a stored sighting or of an earlier article of the batch
    with the same URL, else the same content hash, else the most resembling text within
    the window (resemblance >= threshold). Otherwise it starts a new story, which later
    articles of the batch may join (two copies in one feed document).
    """
    known = _KnownIndex()
    for c in candidates:
        known.add(
            _Known(
                c.story_id,
                None,
                c.url,
                c.content_hash,
                c.seen_at,
                fingerprint(c.title, c.summary, c.text),
                c.has_hit,
            )
        )
    window = timedelta(seconds=policy.window_s)
    choices: list[StoryChoice] = []
    for index, (a, fp) in enumerate(zip(articles, fingerprints, strict=True)):
        at = seen_at(a, now)
        choice = _choose(a, fp, at, known, policy.threshold, window)
        choices.append(choice)
        story_id: int | None = choice.story_id
        same_as: int | None = choice.same_as
        if story_id is None and same_as is None:
            same_as = index
        known.add(_Known(story_id, same_as, a.url, a.content_hash, at, fp, choice.story_has_hit))
    return choices


class _KnownIndex:
    """Sightings in the order they became known, indexed by URL, content hash and band
    key: each article is compared with the few sharing one, not with the whole batch.

    Band keys are rarely shared within a batch, so each maps to the position of its first
    sighting, and only a shared key keeps a list of the later ones: adding and looking up
    an article's 32 keys are then set operations done in C, not 32 Python steps each (the
    storing thread, the narrow side of a first poll, does this for every new article)."""

    def __init__(self) -> None:
        self.items: list[_Known] = []
        self.by_url: dict[str, _Known] = {}
        self.by_hash: dict[str, _Known] = {}
        self.first_by_band: dict[int, int] = {}
        self.later_by_band: dict[int, list[int]] = {}

    def add(self, k: _Known) -> None:
        position = len(self.items)
        self.items.append(k)
        if k.url:
            self.by_url.setdefault(k.url, k)  # the first sighting wins, as in a scan
        self.by_hash.setdefault(k.content_hash, k)
        keys = k.fp.band_keys
        shared = self.first_by_band.keys() & keys
        for key in shared:
            self.later_by_band.setdefault(key, []).append(position)
        if shared:
            keys = tuple(key for key in keys if key not in shared)
        self.first_by_band.update(dict.fromkeys(keys, position))

    def sharing_a_band(self, fp: Fingerprint) -> list[_Known]:
        shared = self.first_by_band.keys() & fp.band_keys
        if not shared:
            return []
        positions = {self.first_by_band[key] for key in shared}
        for key in shared & self.later_by_band.keys():
            positions.update(self.later_by_band[key])
        return [self.items[p] for p in sorted(positions)]


def _choose(
    a: Article,
    fp: Fingerprint,
    at: datetime,
    known: _KnownIndex,
    threshold: float,
    window: timedelta,
) -> StoryChoice:
    def joined(k: _Known, reason: str, score: float) -> StoryChoice:
        return StoryChoice(k.story_id, k.same_as, reason, score, k.has_hit)

    if a.url and (same_url := known.by_url.get(a.url)) is not None:
        return joined(same_url, "url", 1.0)
    if (same_hash := known.by_hash.get(a.content_hash)) is not None:
        return joined(same_hash, "hash", 1.0)
    best: _Known | None = None
    best_score = 0.0
    mine: frozenset[int] | None = None  # unpacked once, and only if a candidate is in time
    for k in known.sharing_a_band(fp):
        if abs(k.at - at) > window:
            continue
        if mine is None:
            mine = shingle_set(fp)
        score = resemblance(mine, shingle_set(k.fp))
        if score >= threshold and score > best_score:
            best, best_score = k, score
    return StoryChoice() if best is None else joined(best, "text", best_score)


def needs_match(choice: StoryChoice, flagged: Sequence[bool]) -> bool:
    """Whether to run the matcher on an article: not when its story already has a hit
    (stored, or flagged earlier in this batch); ``flagged`` is per earlier article."""
    if choice.story_has_hit:
        return False
    return choice.same_as is None or not flagged[choice.same_as]


__all__ = [
    "DEFAULT_THRESHOLD",
    "DEFAULT_WINDOW_S",
    "StoryChoice",
    "StoryPolicy",
    "article_fingerprint",
    "assign_stories",
    "candidate_window",
    "fingerprint",
    "needs_match",
    "resemblance",
    "resemblance_of",
    "shingle_set",
    "shingles",
    "signature",
]
