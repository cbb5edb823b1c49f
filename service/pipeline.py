"""One poll pass: due feeds -> fetch -> parse -> normalise -> drop known -> match -> store.

Orchestration only: every decision is made by a pure module (``decide``, ``match``,
``alerts.routing``) and every side effect by ``fetch`` or ``storage``. Per-feed failures are
values recorded on the feed row; one bad feed never stops the pass. This module does not
send webhooks (``alerts.sender`` does, from the outbox rows written here).
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

from service.decide import (
    effective_interval_s,
    next_check_after_error,
    next_check_after_success,
)
from service.errors import ParseError
from service.fetch import Fetcher
from service.match import Matcher
from service.normalize import normalize_entry
from service.parse import parse_feed
from service.storage import Storage
from service.types import (
    Article,
    FeedRecord,
    FeedUpdate,
    FetchResult,
    FetchStatus,
    NewArticle,
    ParsedFeed,
    PollReport,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PollSettings:
    interval_s: float
    min_interval_s: float
    max_interval_s: float
    concurrency: int


@dataclass(frozen=True, slots=True)
class _Fetched:
    """A feed's fetch and parse outcome, produced in a worker thread."""

    feed: FeedRecord
    result: FetchResult
    parsed: ParsedFeed | None
    articles: tuple[Article, ...]
    body_hash: str | None
    error: str | None


def _fetch_and_parse(fetcher: Fetcher, feed: FeedRecord) -> _Fetched:
    result = fetcher.fetch(feed.for_update())
    if result.status is not FetchStatus.OK or result.body is None:
        return _Fetched(feed, result, None, (), None, result.error)
    body_hash = hashlib.sha256(result.body).hexdigest()
    if feed.body_hash == body_hash:
        # The server ignored our validators but sent the same bytes: nothing new to parse.
        return _Fetched(feed, result, None, (), body_hash, None)
    try:
        parsed = parse_feed(result.body, result.headers, result.final_url or feed.url)
    except ParseError as e:
        return _Fetched(feed, result, None, (), body_hash, f"malformed feed: {e}")
    base = result.final_url or feed.url
    articles = tuple(normalize_entry(entry, parsed.title, base) for entry in parsed.entries)
    if parsed.bozo_error and not parsed.entries:
        return _Fetched(feed, result, None, (), body_hash, f"malformed feed: {parsed.bozo_error}")
    return _Fetched(feed, result, parsed, articles, body_hash, None)


def _warning(f: _Fetched) -> str | None:
    """The problem to show on a feed that answered: a malformed but recoverable document.

    Entries recovered from it are stored and the feed is not backed off (many real feeds
    are a little broken); an unchanged body keeps the warning it had.
    """
    if f.parsed is not None and f.parsed.bozo_error:
        return f"malformed feed ({len(f.articles)} entries recovered): {f.parsed.bozo_error}"
    if f.parsed is None and f.feed.error_count == 0:
        return f.feed.last_error  # 304 or the same bytes: the same document as last time
    return None


class Poller:
    """Runs poll passes. Holds the collaborators; decides nothing itself."""

    def __init__(
        self,
        storage: Storage,
        fetcher: Fetcher,
        matcher: Matcher,
        settings: PollSettings,
        clock: Callable[[], datetime],
        rng: random.Random,
    ) -> None:
        self.storage = storage
        self.fetcher = fetcher
        self.matcher = matcher
        self.settings = settings
        self.clock = clock
        self.rng = rng
        self._lock = threading.Lock()  # one pass at a time in this process
        self.stopping = threading.Event()

    def poll(self, feeds: Sequence[FeedRecord] | None = None) -> list[PollReport]:
        """Poll the given feeds (default: the due ones); returns one report per feed."""
        with self._lock:
            todo = list(feeds) if feeds is not None else self.storage.due_feeds(self.clock())
            if not todo:
                return []
            reports: list[PollReport] = []
            workers = max(1, min(self.settings.concurrency, len(todo)))
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fetch") as pool:
                futures = [pool.submit(_fetch_and_parse, self.fetcher, f) for f in todo]
                for future in futures:
                    if self.stopping.is_set():
                        future.cancel()
                        continue
                    fetched = future.result()
                    reports.append(self._store(fetched))
            return reports

    def _store(self, f: _Fetched) -> PollReport:
        started = time.monotonic()
        now = self.clock()
        feed = f.feed
        ttl = f.parsed.ttl_minutes if f.parsed is not None else None
        interval = effective_interval_s(
            feed.interval_s or self.settings.interval_s,
            ttl,
            self.settings.min_interval_s,
            self.settings.max_interval_s,
        )
        items: list[NewArticle] = []
        if f.error is None:
            known = self.storage.known_guids(feed.id, (a.guid for a in f.articles))
            fresh = [a for a in f.articles if a.guid not in known]
            # Deduplicate within the document too (some feeds repeat an entry).
            fresh = list({a.guid: a for a in reversed(fresh)}.values())[::-1]
            story_keys = self.storage.known_story_keys(
                (a.url for a in fresh), (a.content_hash for a in fresh)
            )
            for a in fresh:
                known_story = (a.url and a.url in story_keys) or a.content_hash in story_keys
                match = None if known_story else self.matcher.classify(a.title, a.summary, a.text)
                items.append(NewArticle(article=a, match=match))
            update = FeedUpdate(
                feed_id=feed.id,
                checked_at=now,
                status=f.result.status,
                http_status=f.result.http_status,
                error_count=0,
                error=_warning(f),
                next_check_at=next_check_after_success(now, interval, self.rng),
                etag=f.result.etag,
                last_modified=f.result.last_modified,
                body_hash=f.body_hash,
                new_items=len(items),
            )
        else:
            errors = feed.error_count + 1
            update = FeedUpdate(
                feed_id=feed.id,
                checked_at=now,
                status=FetchStatus.ERROR,
                http_status=f.result.http_status,
                error=f.error,
                error_count=errors,
                next_check_at=next_check_after_error(
                    now, interval, errors, f.result.retry_after_s, self.rng
                ),
            )
        hit_ids = self.storage.record_poll(update, items, now)
        report = PollReport(
            feed_url=feed.url,
            status=update.status,
            http_status=update.http_status,
            new_items=len(items),
            hits=len(hit_ids),
            error=update.error,
            elapsed_s=f.result.elapsed_s + (time.monotonic() - started),
        )
        if update.error_count:
            log.warning(
                "poll %s: %s (HTTP %s) error #%d: %s; next check %s",
                feed.url,
                report.status.value,
                report.http_status,
                update.error_count,
                report.error,
                update.next_check_at.isoformat(timespec="seconds"),
            )
        else:
            if report.error:
                log.warning("poll %s: %s", feed.url, report.error)
            log.info(
                "poll %s: %s (HTTP %s) new=%d hits=%d in %.2fs",
                feed.url,
                report.status.value,
                report.http_status,
                report.new_items,
                report.hits,
                report.elapsed_s,
            )
        return report
