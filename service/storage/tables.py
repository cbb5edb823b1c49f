"""Table rows (SQLModel). Only ``service.storage`` uses them; everything else sees records.

Lists and nested objects (topics, evidence, ...) are JSON columns: they are written once by
the pipeline and read back whole, so normalising them into tables would buy nothing yet.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, DateTime, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel, col

from service.normalize import feed_url


def _utc_column(nullable: bool = True, index: bool = False) -> Any:
    return Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=nullable, index=index)
    )


class FeedRow(SQLModel, table=True):
    __tablename__ = "feeds"

    id: int | None = Field(default=None, primary_key=True)
    url: str = Field(sa_column=Column(Text, nullable=False, unique=True))
    name: str | None = None
    origin: str = "config"  # "config" (from the TOML file) or "user" (CLI/API)
    interval_s: float | None = None
    enabled: bool = True
    disabled_reason: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    body_hash: str | None = None
    last_checked_at: datetime | None = _utc_column()
    last_status: str | None = None  # ok | not_modified | error
    last_http_status: int | None = None
    last_error: str | None = None
    error_count: int = 0
    last_new_items: int = 0
    next_check_at: datetime | None = _utc_column(index=True)
    created_at: datetime | None = _utc_column()
    # Added in migration 0002 (polling discipline).
    items_per_hour: float | None = None  # EWMA of new items per hour (adaptive interval)
    failing_since: datetime | None = _utc_column()  # start of the current failure run
    disabled_at: datetime | None = _utc_column()
    # Added in migration 0006 (scale-out): the worker polling the feed now, and until when
    # (``FeedStore.claim_feeds``). The last holder stays on the row, for diagnosis.
    lease_until: datetime | None = _utc_column()
    leased_by: str | None = None


def feed_named(url_or_id: str) -> Any:
    """The clause for the feed a user names by its id or its URL: ASCII digits are an id
    (``str.isdigit`` alone takes "¹", which ``int`` refuses), anything else a URL."""
    if url_or_id.isascii() and url_or_id.isdigit():
        return FeedRow.id == int(url_or_id)
    return feed_url_is(url_or_id)


def feed_url_is(url: str) -> Any:
    """The clause for the feed with this URL: normalised as feeds are stored
    (``normalize.feed_url``: "HTTP://Example.org/rss" names the feed), or as given, which
    finds a row stored before feed URLs were normalised."""
    return col(FeedRow.url).in_({url.strip(), feed_url(url)})


class StoryRow(SQLModel, table=True):
    __tablename__ = "stories"

    id: int | None = Field(default=None, primary_key=True)
    # Not indexed: stories are found through their articles' URLs, hashes and band keys
    # (migration 0008).
    canonical_url: str | None = None
    content_hash: str
    first_seen_at: datetime | None = _utc_column()


class ArticleRow(SQLModel, table=True):
    __tablename__ = "articles"
    __table_args__ = (
        UniqueConstraint("feed_id", "guid", name="uq_articles_feed_guid"),
        Index("ix_articles_url", "url"),
        Index("ix_articles_content_hash", "content_hash"),
    )

    id: int | None = Field(default=None, primary_key=True)
    # Look-ups by feed use uq_articles_feed_guid, which starts with feed_id (migration 0008).
    feed_id: int = Field(foreign_key="feeds.id")
    story_id: int = Field(foreign_key="stories.id", index=True)
    guid: str = Field(sa_column=Column(Text, nullable=False))
    url: str = Field(sa_column=Column(Text, nullable=False))
    title: str = Field(sa_column=Column(Text, nullable=False))
    summary: str = Field(sa_column=Column(Text, nullable=False))
    text: str = Field(sa_column=Column(Text, nullable=False))
    source: str
    author: str | None = None
    content_hash: str
    published_at: datetime | None = _utc_column()
    first_seen_at: datetime | None = _utc_column()


class StoryBandRow(SQLModel, table=True):
    """One LSH band key of an article (``service.stories``): near-duplicate lookup finds
    stored sightings sharing a key and seen within the window. The primary key is the
    only index (no rowid on SQLite); ``seen_at`` is epoch seconds (migration 0007)."""

    __tablename__ = "story_bands"
    __table_args__ = {"sqlite_with_rowid": False}

    band_key: int = Field(sa_column=Column(BigInteger, primary_key=True))
    article_id: int = Field(foreign_key="articles.id", primary_key=True)
    seen_at: int = Field(sa_column=Column(BigInteger, nullable=False))


class HitRow(SQLModel, table=True):
    __tablename__ = "hits"

    id: int | None = Field(default=None, primary_key=True)
    story_id: int = Field(foreign_key="stories.id", unique=True)
    article_id: int = Field(foreign_key="articles.id")
    title: str = Field(sa_column=Column(Text, nullable=False))
    url: str = Field(sa_column=Column(Text, nullable=False))
    source: str
    published_at: datetime | None = _utc_column()
    first_seen_at: datetime | None = _utc_column(index=True)
    score: float = Field(index=True)
    topics: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    event_type: str | None = None
    jurisdictions: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    entities: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    evidence: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    rules: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    ruleset_version: str


class SubscriptionRow(SQLModel, table=True):
    __tablename__ = "subscriptions"

    id: int | None = Field(default=None, primary_key=True)
    url: str = Field(sa_column=Column(Text, nullable=False, unique=True))
    name: str | None = None
    origin: str = "config"
    format: str = "standard"
    secret: str  # whsec_... (space-separated during rotation); never returned or logged
    min_score: float = 0.0
    topics: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # The other filters and the digest settings: {"events": [...], "states": [...],
    # "jurisdictions": [...], "feeds": [...], "digest": "daily", "digest_hour": 8,
    # "digest_timezone": "UTC"}; read whole, never queried by key.
    options: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    enabled: bool = True
    disabled_reason: str | None = None
    created_at: datetime | None = _utc_column()


class DeliveryRow(SQLModel, table=True):
    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("hit_id", "subscription_id", name="uq_deliveries_hit_subscription"),
        UniqueConstraint("subscription_id", "digest_period", name="uq_deliveries_digest"),
        Index("ix_deliveries_due", "status", "next_attempt_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    hit_id: int | None = Field(default=None, foreign_key="hits.id", index=True)  # None: digest
    digest_period: str | None = None  # "2025-01-23" (daily) or "2025-W04" (weekly)
    digest_hit_ids: list[int] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    subscription_id: int = Field(foreign_key="subscriptions.id")
    webhook_id: str = Field(unique=True)  # "msg_..." stable across retries
    event_type: str = "hit.created"
    status: str = "pending"  # pending | delivered | failed
    attempts: int = 0
    next_attempt_at: datetime | None = _utc_column()
    lease_until: datetime | None = _utc_column()
    last_http_status: int | None = None
    last_error: str | None = None
    created_at: datetime | None = _utc_column()
    delivered_at: datetime | None = _utc_column()


class HitTopicRow(SQLModel, table=True):
    """One topic of a hit (migration 0005). Filled by a trigger on ``hits``, never by code."""

    __tablename__ = "hit_topics"
    __table_args__ = (Index("ix_hit_topics_topic_hit", "topic", "hit_id"),)

    hit_id: int = Field(foreign_key="hits.id", primary_key=True)
    topic: str = Field(primary_key=True)


class HitPlaceRow(SQLModel, table=True):
    """One jurisdiction of a hit (migration 0005). Filled by a trigger on ``hits``."""

    __tablename__ = "hit_places"
    __table_args__ = (Index("ix_hit_places_state_hit", "state", "hit_id"),)

    hit_id: int = Field(foreign_key="hits.id", primary_key=True)
    name: str = Field(primary_key=True)
    kind: str = Field(primary_key=True)
    state: str = Field(primary_key=True)  # two-letter code, upper case
