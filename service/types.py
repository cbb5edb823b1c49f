"""Frozen records that cross stage boundaries.

fetch -> ``FetchResult``; parse -> ``ParsedFeed`` of ``RawEntry``; normalize -> ``Article``;
match -> ``MatchResult``; decide -> ``FeedUpdate``; storage returns ``FeedRecord``, ``HitRecord``
and ``DeliveryRecord``. Records hold data only; behaviour lives in the stage modules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

# The beat's topics, in the order they are reported: a hit has a subset of them, and the
# API's and CLI's ``topic`` filters and a webhook's ``topics`` take only these.
TOPICS: tuple[str, ...] = ("detainer", "sanctuary", "287g")

# ---------------------------------------------------------------- fetching


class FetchStatus(StrEnum):
    OK = "ok"  # 200 with a body
    NOT_MODIFIED = "not_modified"  # 304, or the same body as last time
    ERROR = "error"  # network error, HTTP error status, too large


@dataclass(frozen=True, slots=True)
class FeedForUpdate:
    """What the fetcher needs to know about a feed before a request."""

    id: int
    url: str
    etag: str | None = None
    last_modified: str | None = None
    error_count: int = 0
    interval_s: float | None = None  # per-feed override of [polling].interval


@dataclass(frozen=True, slots=True)
class FetchResult:
    """One HTTP attempt, written for every outcome (ok, not modified, error)."""

    status: FetchStatus
    http_status: int | None = None
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)  # lower-cased names
    etag: str | None = None
    last_modified: str | None = None
    final_url: str | None = None
    error: str | None = None
    retry_after_s: float | None = None
    elapsed_s: float = 0.0
    # Target of a permanent redirect (301/308) when every hop to the answer was permanent.
    permanent_url: str | None = None


# ---------------------------------------------------------------- parsing


@dataclass(frozen=True, slots=True)
class RawEntry:
    """One feed entry as the parser saw it (HTML not yet stripped)."""

    guid: str | None
    link: str | None
    title: str  # may contain HTML/entities
    summary_html: str
    content_html: str
    published: datetime | None  # UTC, aware
    source_title: str | None = None  # <source> (Google News names the outlet here)
    source_url: str | None = None
    author: str | None = None


@dataclass(frozen=True, slots=True)
class ParsedFeed:
    title: str | None
    link: str | None
    entries: tuple[RawEntry, ...]
    # Set when the document was malformed; entries may still hold best-effort results.
    bozo_error: str | None = None
    ttl_minutes: int | None = None


# ---------------------------------------------------------------- articles


@dataclass(frozen=True, slots=True)
class Article:
    """A normalised entry: plain text, canonical URL, UTC time, content hash."""

    url: str  # canonical URL ("" when the entry had no link)
    guid: str  # stable identity within a feed: the entry id, else the URL, else the hash
    title: str
    summary: str
    text: str
    published_at: datetime | None  # UTC, aware
    source: str  # outlet name (Google News <source>, else feed title, else host)
    content_hash: str  # sha256 hex of the normalised title + summary + text
    author: str | None = None


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """What near-duplicate grouping compares (``service.stories``): the hashed word
    shingles of an article's lead and its LSH band keys (empty: too short to compare).

    The shingle hashes are packed, sorted, as 32-bit unsigned integers (``array("I")``
    bytes; ``stories.shingle_set`` unpacks them): the parse workers send every article's
    fingerprint to the poller, which compares shingles only for the few articles sharing a
    band key, and a frozenset of ~100 ints per article cost the poller time to unpickle
    and memory to hold while the article waited to be stored."""

    shingle_hashes: bytes
    band_keys: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class StoryCandidate:
    """A stored sighting a new article might join, as storage looks it up."""

    story_id: int
    url: str
    content_hash: str
    title: str
    summary: str
    text: str
    seen_at: datetime  # published time, else first seen (UTC)
    has_hit: bool  # the story already has its hit


# ---------------------------------------------------------------- matching


@dataclass(frozen=True, slots=True)
class Jurisdiction:
    name: str  # "Boston", "Hennepin County", "Massachusetts"
    kind: str  # "city" | "county" | "state"
    state: str  # two-letter postal code: "MA"

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "state": self.state}


@dataclass(frozen=True, slots=True)
class Entity:
    type: str  # "agency" | "official" | "local_body" | "law" | "count" | ...
    text: str  # as written
    canonical: str  # normalised name

    def as_dict(self) -> dict[str, Any]:
        return {"type": self.type, "text": self.text, "canonical": self.canonical}


@dataclass(frozen=True, slots=True)
class MatchedTerm:
    """A term found in a field; offsets are into that field's text (``text[start:end]``)."""

    term: str
    concept: str  # concept / rule id from the rules file
    start: int
    end: int

    def as_dict(self) -> dict[str, Any]:
        return {"term": self.term, "concept": self.concept, "start": self.start, "end": self.end}


@dataclass(frozen=True, slots=True)
class Evidence:
    """A sentence that made the matcher decide; ``start``/``end`` index the field's text."""

    field: str  # "title" | "summary" | "text"
    sentence: str
    start: int
    end: int
    terms: tuple[MatchedTerm, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "field": self.field,
            "sentence": self.sentence,
            "start": self.start,
            "end": self.end,
            "terms": [t.as_dict() for t in self.terms],
        }


@dataclass(frozen=True, slots=True)
class MatchResult:
    flagged: bool
    score: float  # in [0, 1]
    topics: tuple[str, ...]  # subset of TOPICS
    event_type: str | None
    jurisdictions: tuple[Jurisdiction, ...]
    entities: tuple[Entity, ...]
    evidence: tuple[Evidence, ...]
    ruleset_version: str
    rules: tuple[str, ...] = ()  # concept / rule ids that fired

    def as_dict(self) -> dict[str, Any]:
        """The ``classify`` output shape of DESIGN.md §8 (without ``id``)."""
        return {
            "flagged": self.flagged,
            "score": self.score,
            "topics": list(self.topics),
            "event_type": self.event_type,
            "jurisdictions": [j.as_dict() for j in self.jurisdictions],
            "entities": [e.as_dict() for e in self.entities],
            "evidence": [e.as_dict() for e in self.evidence],
            "ruleset_version": self.ruleset_version,
            "rules": list(self.rules),
        }


# ---------------------------------------------------------------- storage records


@dataclass(frozen=True, slots=True)
class FeedRecord:
    """A feed with its health, as storage returns it."""

    id: int
    url: str
    name: str | None
    origin: str
    interval_s: float | None
    enabled: bool
    disabled_reason: str | None
    etag: str | None
    last_modified: str | None
    body_hash: str | None
    last_checked_at: datetime | None
    last_status: str | None
    last_http_status: int | None
    last_error: str | None
    error_count: int
    last_new_items: int
    next_check_at: datetime | None
    items_per_hour: float | None = None  # EWMA of new items per hour (adaptive interval)
    failing_since: datetime | None = None  # start of the current run of failures
    disabled_at: datetime | None = None

    def for_update(self) -> FeedForUpdate:
        return FeedForUpdate(
            id=self.id,
            url=self.url,
            etag=self.etag,
            last_modified=self.last_modified,
            error_count=self.error_count,
            interval_s=self.interval_s,
        )


@dataclass(frozen=True, slots=True)
class FeedUpdate:
    """What one poll attempt changes on a feed row (written for every outcome)."""

    feed_id: int
    checked_at: datetime
    status: FetchStatus
    http_status: int | None
    error: str | None
    error_count: int
    next_check_at: datetime
    etag: str | None = None
    last_modified: str | None = None
    body_hash: str | None = None
    new_items: int = 0
    items_per_hour: float | None = None  # None keeps the stored rate
    failing_since: datetime | None = None  # set while failing; None clears it
    disabled_reason: str | None = None  # set: the feed is disabled with this reason
    moved_to: str | None = None  # permanent redirect (301/308) target: the new stored URL


@dataclass(frozen=True, slots=True)
class NewArticle:
    """An article to store; ``match`` is None when it joins a story that already has its
    hit. ``fingerprint`` (``stories.article_fingerprint``) is computed by storage when absent.
    """

    article: Article
    match: MatchResult | None
    fingerprint: Fingerprint | None = None


@dataclass(frozen=True, slots=True)
class Subscription:
    id: int
    url: str
    name: str | None
    format: str
    secret: str  # one or more whsec_ secrets, space-separated (rotation)
    min_score: float
    topics: tuple[str, ...]
    enabled: bool
    disabled_reason: str | None = None
    events: tuple[str, ...] = ()
    states: tuple[str, ...] = ()
    jurisdictions: tuple[str, ...] = ()
    feeds: tuple[str, ...] = ()
    digest: str | None = None  # "daily" | "weekly" | None (one message per hit)
    digest_hour: int = 8
    digest_timezone: str = "UTC"
    origin: str = "config"

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(self.secret.split())


@dataclass(frozen=True, slots=True)
class Sighting:
    url: str
    source: str
    published_at: datetime | None


@dataclass(frozen=True, slots=True)
class HitRecord:
    id: int
    title: str
    url: str
    source: str
    published_at: datetime | None
    first_seen_at: datetime | None
    score: float
    topics: tuple[str, ...]
    event_type: str | None
    jurisdictions: tuple[dict[str, Any], ...]
    entities: tuple[dict[str, Any], ...]
    evidence: tuple[dict[str, Any], ...]
    rules: tuple[str, ...]
    ruleset_version: str
    articles: tuple[Sighting, ...] = ()
    # With a full-text query: the matching words in context, HTML-escaped, <mark>ed.
    snippet: str | None = None


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    id: int
    hit_id: int | None  # None for a digest
    subscription_id: int
    webhook_id: str
    event_type: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_http_status: int | None
    last_error: str | None
    created_at: datetime | None
    delivered_at: datetime | None
    digest_period: str | None = None
    digest_hit_ids: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class HitQuery:
    """Filters for reading hits; every field is optional."""

    topic: str | None = None
    event: str | None = None
    jurisdiction: str | None = None
    state: str | None = None
    feed: str | None = None  # feed id or URL
    since: datetime | None = None
    until: datetime | None = None
    min_score: float | None = None
    q: str | None = None  # full-text search (service.search syntax)
    limit: int = 50
    # Where the page starts: an opaque cursor from the previous page (``service.search``),
    # or, as before, a hit id (newest first: hits with a smaller id).
    cursor: str | int | None = None
    source: str | None = None  # outlet of the hit, exactly (case-insensitive)
    sort: str = "newest"  # "newest" (id descending) | "score" (score, then id, descending)


@dataclass(frozen=True, slots=True)
class HitStats:
    """Counts of the hits matching a query, by dimension, largest first (dates ascending).

    A hit with two places counts once for each; ``total`` counts hits."""

    total: int
    by_day: tuple[tuple[str, int], ...]  # ("2025-01-23", n)
    by_topic: tuple[tuple[str, int], ...]
    by_event: tuple[tuple[str | None, int], ...]
    by_state: tuple[tuple[str, int], ...]
    by_jurisdiction: tuple[tuple[str, str, str, int], ...]  # (name, kind, state, n)


@dataclass(frozen=True, slots=True)
class PlaceSummary:
    """A jurisdiction with its hit count and its newest hit."""

    name: str
    kind: str
    state: str
    hits: int
    latest_hit_id: int
    latest_title: str
    latest_event: str | None
    latest_seen_at: datetime | None


@dataclass(frozen=True, slots=True)
class PollReport:
    """One feed's poll, as logged and summarised."""

    feed_url: str
    status: FetchStatus
    http_status: int | None
    new_items: int
    hits: int
    error: str | None
    elapsed_s: float
