"""One poll pass: due feeds -> fetch -> parse -> normalise -> drop known -> match -> store.

Orchestration only: every decision is made by a pure module (``decide``, ``match``,
``alerts.routing``) and every side effect by ``fetch`` or ``storage``. Per-feed failures are
values recorded on the feed row; one bad feed never stops the pass. This module does not
send webhooks (``alerts.sender`` does, from the outbox rows written here).
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import secrets
import socket
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from service.decide import (
    adaptive_interval_s,
    cache_lifetime_s,
    disable_reason,
    effective_interval_s,
    interleave_by_host,
    items_per_hour,
    next_check_after_error,
    next_check_after_success,
)
from service.errors import DetainerWatchError, StorageError
from service.fetch import Fetcher
from service.match import Matcher
from service.match.prefilter import Prefilter
from service.parse_worker import ParsePool
from service.politeness import Stopped, host_key
from service.storage import Storage
from service.stories import StoryPolicy, article_fingerprint, assign_stories, needs_match
from service.types import (
    Article,
    FeedRecord,
    FeedUpdate,
    FetchResult,
    FetchStatus,
    Fingerprint,
    MatchResult,
    NewArticle,
    ParsedFeed,
    PollReport,
)
from service.wording import counted

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PollSettings:
    interval_s: float
    min_interval_s: float
    max_interval_s: float
    concurrency: int
    # A feed failing this long and this many times in a row is disabled (410: at once).
    disable_after_s: float = 30 * 86400.0
    disable_after_errors: int = 10
    # Near-duplicate grouping ([stories] threshold and window).
    stories: StoryPolicy = field(default_factory=StoryPolicy)
    # Due feeds are claimed in batches of this many, each leased for lease_s seconds (cli
    # sizes the lease from the fetch timeout); 0: CLAIM_ROUNDS x concurrency.
    lease_s: float = 180.0
    claim_batch: int = 0


# A claimed batch is CLAIM_ROUNDS fetches per fetch thread: small enough that the other
# workers find due feeds too, large enough to keep the threads busy.
CLAIM_ROUNDS = 2


# Match results the storing thread keeps, by the exact text of the article they are for.
MATCH_MEMO_SIZE = 512


class _RecentMatches:
    """The last MATCH_MEMO_SIZE match results of one matcher, by the exact title, summary and
    text they were computed from (a digest, so no article text is held; not
    ``Article.content_hash``, which is case-folded, while the matcher tells ICE from ice).

    The same item often reaches the poller verbatim from several feeds: overlapping Google
    News searches, an outlet's section feeds, syndicated copies. Those copies are separate
    articles (each joins the story, none alerts again) but the matcher, pure, would give
    each the same answer at the same cost, the largest per-article cost of the storing
    thread for a flagged story (bench_stages: ~3 ms each on the eighth sitting's machine,
    against ~0.4 ms of storing). Used only from the poll's storing thread; a new matcher
    (SIGHUP reload) empties it."""

    def __init__(self, size: int = MATCH_MEMO_SIZE) -> None:
        self.size = size
        self._matcher: Matcher | None = None
        self._results: OrderedDict[bytes, MatchResult] = OrderedDict()

    def classify(self, matcher: Matcher, a: Article) -> MatchResult:
        if matcher is not self._matcher:
            self._matcher = matcher
            self._results.clear()
        digest = hashlib.blake2b(digest_size=16)
        for part in (a.title, a.summary, a.text):
            data = part.encode("utf-8", "surrogatepass")
            digest.update(len(data).to_bytes(8, "little"))
            digest.update(data)
        key = digest.digest()
        found = self._results.get(key)
        if found is not None:
            self._results.move_to_end(key)
            return found
        result = matcher.classify(a.title, a.summary, a.text)
        self._results[key] = result
        if len(self._results) > self.size:
            self._results.popitem(last=False)
        return result


def worker_name() -> str:
    """``host:pid:random``: who holds a feed's lease (unique per process, readable in logs)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass(frozen=True, slots=True)
class _Fetched:
    """A feed's fetch and parse outcome, produced in a worker thread."""

    feed: FeedRecord
    result: FetchResult
    parsed: ParsedFeed | None
    articles: tuple[Article, ...]
    body_hash: str | None
    error: str | None
    fingerprints: tuple[Fingerprint, ...] = ()  # of each of ``articles``
    anchored: tuple[bool, ...] | None = None  # whether each holds an anchor; None: unknown
    prefilter: Prefilter | None = None  # whose anchors ``anchored`` is about


def _internal_error(e: BaseException) -> str:
    """A feed's error for an exception our own code raised on its input (a bug)."""
    return (
        f"internal error while reading this feed ({type(e).__name__}: {e}); the other feeds "
        "were polled, and this one is tried again at its next poll; if it keeps failing, "
        "please report it with the traceback from the log"
    )


def _fetch_and_parse(
    fetcher: Fetcher,
    parser: ParsePool,
    feed: FeedRecord,
    prefilter: Prefilter,
    stop: threading.Event | None,
) -> _Fetched | None:
    """Fetch and parse one feed. Whatever its response does to our code, the outcome is
    this feed's: an exception (a bug met on its input) becomes its error, so that one feed
    cannot stop the pass and keep the others of its batch from being stored. None when
    ``stop`` was set while the feed waited for its host's turn: it was not fetched, and
    is not stored (its lease is given back with the others not polled)."""
    try:
        return _fetch_and_parse_unguarded(fetcher, parser, feed, prefilter, stop)
    except Stopped:
        return None
    except Exception as e:
        log.exception("internal error while fetching or parsing %s", feed.url)
        error = _internal_error(e)
        return _Fetched(feed, FetchResult(FetchStatus.ERROR, error=error), None, (), None, error)


def _fetch_and_parse_unguarded(
    fetcher: Fetcher,
    parser: ParsePool,
    feed: FeedRecord,
    prefilter: Prefilter,
    stop: threading.Event | None,
) -> _Fetched:
    result = fetcher.fetch(feed.for_update(), stop)
    if result.status is not FetchStatus.OK or result.body is None:
        return _Fetched(feed, result, None, (), None, result.error)
    body_hash = hashlib.sha256(result.body).hexdigest()
    if feed.body_hash == body_hash:
        # The server ignored our validators but sent the same bytes: nothing new to parse.
        return _Fetched(feed, replace(result, body=None), None, (), body_hash, None)
    doc = parser.parse(result.body, result.headers, result.final_url or feed.url, prefilter)
    # The body is not needed past here; dropping it keeps a pass's memory to the parsed
    # documents waiting to be stored.
    result = replace(result, body=None)
    return _Fetched(
        feed,
        result,
        doc.parsed,
        doc.articles,
        body_hash,
        doc.error,
        doc.fingerprints,
        doc.anchored,
        prefilter,
    )


# Fetched documents waiting to be stored, per fetch thread: storing is one thread, so
# without a bound a pass whose fetching outruns its storing would hold every parsed feed
# in memory at once (peak RSS grows with the number of feeds; bench/bench_poll.py).
AHEAD_PER_WORKER = 2


def _submitted_ahead(
    pool: ThreadPoolExecutor,
    work: Callable[[FeedRecord], _Fetched | None],
    feeds: Sequence[FeedRecord],
    ahead: int,
) -> Iterator[Future[_Fetched | None]]:
    """Futures of ``work`` over ``feeds`` in order, at most ``ahead`` of them submitted
    and not yet handed out."""
    pending: deque[Future[_Fetched | None]] = deque()
    for feed in feeds:
        pending.append(pool.submit(work, feed))
        if len(pending) >= ahead:
            yield pending.popleft()
    yield from pending


# Feeds stored per transaction at most: as many fetched documents as are ready when the
# storing thread comes back for more, or become ready within STORE_WAIT_S. A transaction per
# feed costs ~1 ms of CPU (a feed-row read, update and commit), which is most of a 304 poll;
# waiting a few milliseconds for the next fetch to land lets 304s share one.
STORE_BATCH = 16
STORE_WAIT_S = 0.02


def _ready_batches(
    futures: Iterator[Future[_Fetched | None]], size: int, stopping: threading.Event
) -> Iterator[list[_Fetched]]:
    """The futures' results in order, in lists of up to ``size``: the next one (waiting for
    it) and those after it that are already done. Once ``stopping`` is set, the futures
    not yet taken are cancelled. A None result (a feed that ``stopping`` kept from being
    fetched) is left out."""
    batch: list[_Fetched] = []
    upcoming = next(futures, None)
    while upcoming is not None:
        if stopping.is_set():
            upcoming.cancel()
        elif batch and (len(batch) >= size or not _lands_soon(upcoming)):
            yield batch
            batch = []
            continue
        else:
            fetched = upcoming.result()
            if fetched is not None:
                batch.append(fetched)
        upcoming = next(futures, None)
    if batch:
        yield batch


def _lands_soon(future: Future[_Fetched | None]) -> bool:
    """Whether the future is done, or is within STORE_WAIT_S."""
    return future.done() or not wait([future], timeout=STORE_WAIT_S).not_done


def malformed_warning(recovered: int, error: object) -> str:
    """A feed's note for a document parsed despite ``error``, with ``recovered`` entries."""
    return f"malformed feed ({counted(recovered, 'entry', 'entries')} recovered): {error}"


def _warning(f: _Fetched) -> str | None:
    """The problem to show on a feed that answered: a malformed but recoverable document.

    Entries recovered from it are stored and the feed is not backed off (many real feeds
    are a little broken); an unchanged body keeps the warning it had.
    """
    if f.parsed is not None and f.parsed.bozo_error:
        return malformed_warning(len(f.articles), f.parsed.bozo_error)
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
        parse_pool: ParsePool | None = None,
        worker_id: str = "",
    ) -> None:
        self.storage = storage
        self.worker_id = worker_id or worker_name()
        # Where documents are parsed: worker processes (cli builds one per core), or the
        # fetch thread itself when none is given (tests, one-feed commands).
        self.parse_pool = parse_pool or ParsePool(processes=0)
        self.fetcher = fetcher
        self.matcher = matcher
        self.settings = settings
        self.clock = clock
        self.rng = rng
        self._lock = threading.Lock()  # one pass at a time in this process
        self._recent_matches = _RecentMatches()
        self.stopping = threading.Event()

    def poll(self, feeds: Sequence[FeedRecord] | None = None) -> list[PollReport]:
        """Poll the given feeds (default: the due ones); returns one report per feed."""
        with self._lock:
            todo = list(feeds) if feeds is not None else self._claim()
            todo = interleave_by_host(todo, lambda f: host_key(f.url))
            if not todo:
                return []
            reports: list[PollReport] = []
            workers = max(1, min(self.settings.concurrency, len(todo)))
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fetch") as pool:
                futures = _submitted_ahead(
                    pool,
                    # The prefilter of the rules in force when the feed is fetched (a
                    # SIGHUP reload swaps the matcher).
                    lambda f: _fetch_and_parse(
                        self.fetcher, self.parse_pool, f, self.matcher.prefilter, self.stopping
                    ),
                    todo,
                    AHEAD_PER_WORKER * workers,
                )
                for batch in _ready_batches(futures, STORE_BATCH, self.stopping):
                    reports.extend(self._store(batch))
            return reports

    def _claim(self) -> list[FeedRecord]:
        """Lease the next batch of due feeds to this worker (none other polls them now)."""
        batch = self.settings.claim_batch or CLAIM_ROUNDS * self.settings.concurrency
        lease = timedelta(seconds=self.settings.lease_s)
        return self.storage.claim_feeds(self.clock(), self.worker_id, batch, lease)

    def _interval(self, f: _Fetched, rate: float | None, now: datetime) -> float:
        """The feed's next interval: adaptive around its own, lengthened by <ttl> and the
        response's cache lifetime, within the configured bounds (all decided in decide)."""
        low, high = self.settings.min_interval_s, self.settings.max_interval_s
        return effective_interval_s(
            adaptive_interval_s(f.feed.interval_s or self.settings.interval_s, rate, low, high),
            f.parsed.ttl_minutes if f.parsed is not None else None,
            low,
            high,
            cache_lifetime_s(f.result.headers, now),
        )

    def _store(self, batch: Sequence[_Fetched]) -> list[PollReport]:
        """Store a batch of fetched feeds in one transaction; a report per feed."""
        started = time.monotonic()
        now = self.clock()
        try:
            prepared, hit_lists = self._store_together(batch, now)
        except Exception:
            # One feed's rows kept conflicting, the database refused one of its values, or
            # storing met a bug on one feed's input: store each feed alone, so that only
            # that feed fails (a failing database fails the first and ends the pass).
            stored = [self._store_alone(f, now) for f in batch]
            prepared = [p for p, _ in stored]
            hit_lists = [hit_ids for _, hit_ids in stored]
        spent = (time.monotonic() - started) / len(batch)
        return [
            self._report(f, update, hit_ids, spent)
            for f, (update, _), hit_ids in zip(batch, prepared, hit_lists, strict=True)
        ]

    def _store_together(
        self, batch: Sequence[_Fetched], now: datetime
    ) -> tuple[list[tuple[FeedUpdate, list[NewArticle]]], list[list[int]]]:
        """Match and store the batch's feeds in one transaction; what was stored of each
        feed and the ids of the hits each created."""
        # Which entries the batch's feeds already stored, in one transaction (a session per
        # feed was a tenth of the storing thread's time in py-spy of bench_poll's first poll).
        # A 304 or an unchanged body has no articles and asks nothing.
        asked: dict[int, set[str]] = {}
        for f in batch:
            if f.error is None and f.articles:
                asked.setdefault(f.feed.id, set()).update(a.guid for a in f.articles)
        known = self.storage.known_guids_by_feed(asked)
        prepared = [self._prepare_guarded(f, now, known.get(f.feed.id, set())) for f in batch]
        return prepared, self.storage.record_polls(prepared, now, self.settings.stories)

    def _store_alone(
        self, f: _Fetched, now: datetime
    ) -> tuple[tuple[FeedUpdate, list[NewArticle]], list[int]]:
        """``_store_together`` for one feed; when the database will not store what it
        fetched (or storing it meets a bug), the feed's poll is stored as that error (an
        error stores none of the new validators, so its next poll reads the articles again).
        Raises when even that cannot be stored: the database itself is failing."""
        try:
            prepared, hit_lists = self._store_together([f], now)
            return prepared[0], hit_lists[0]
        except StorageError as e:
            log.error("poll %s: its articles could not be stored: %s", f.feed.url, e)
            error = f"the database could not store this feed's articles: {e}"
        except Exception as e:
            log.exception("internal error while storing the articles of %s", f.feed.url)
            error = _internal_error(e)
        failed = replace(f, parsed=None, articles=(), fingerprints=(), error=error)
        update = self._prepare(failed, now, ())
        return update, self.storage.record_polls([update], now, self.settings.stories)[0]

    def _prepare_guarded(
        self, f: _Fetched, now: datetime, known: Collection[str]
    ) -> tuple[FeedUpdate, list[NewArticle]]:
        """``_prepare``, with an exception our own code raises on the feed's articles (a
        bug in matching or grouping met on its input) made the feed's error, so that its
        batch is stored without it. Database errors are left to ``_store``."""
        try:
            return self._prepare(f, now, known)
        except DetainerWatchError:
            raise
        except Exception as e:
            log.exception("internal error while matching the articles of %s", f.feed.url)
            failed = replace(f, parsed=None, articles=(), fingerprints=(), error=_internal_error(e))
            return self._prepare(failed, now, known)

    def _prepare(
        self, f: _Fetched, now: datetime, known: Collection[str]
    ) -> tuple[FeedUpdate, list[NewArticle]]:
        """What to store of one fetched feed: its state and its new, matched articles
        (``known``: the entry ids of its articles that the feed already stored)."""
        feed = f.feed
        items: list[NewArticle] = []
        if f.error is None:
            fresh = [a for a in f.articles if a.guid not in known]
            # Deduplicate within the document too (some feeds repeat an entry).
            fresh = list({a.guid: a for a in reversed(fresh)}.values())[::-1]
            # Fingerprints come with the articles from the parse workers.
            print_of = {id(a): fp for a, fp in zip(f.articles, f.fingerprints, strict=False)}
            prints = [print_of.get(id(a)) or article_fingerprint(a) for a in fresh]
            items = self._matched(fresh, prints, self._may_match(f, fresh), now)
            # 304s and unchanged bodies count too: they are the quiet stretches of the rate.
            rate = items_per_hour(feed.items_per_hour, len(items), feed.last_checked_at, now)
            interval = self._interval(f, rate, now)
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
                items_per_hour=rate,
                moved_to=f.result.permanent_url,
            )
        else:
            errors = feed.error_count + 1
            interval = self._interval(f, feed.items_per_hour, now)
            failing_since = feed.failing_since or now
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
                failing_since=failing_since,
                disabled_reason=disable_reason(
                    f.result.http_status,
                    f.error,
                    errors,
                    failing_since,
                    now,
                    self.settings.disable_after_s,
                    self.settings.disable_after_errors,
                ),
            )
        return update, items

    def _may_match(self, f: _Fetched, fresh: list[Article]) -> list[bool]:
        """Per fresh article, whether the matcher could find anything in it: ``False`` only
        where the parse workers ran the current rules' prefilter (its first step) and found
        no anchor; flags made under rules since reloaded are not used."""
        if f.anchored is None or f.prefilter is not self.matcher.prefilter:
            return [True] * len(fresh)
        held = {id(a): h for a, h in zip(f.articles, f.anchored, strict=False)}
        return [held.get(id(a), True) for a in fresh]

    def _matched(
        self,
        fresh: list[Article],
        prints: list[Fingerprint],
        may_match: list[bool],
        now: datetime,
    ) -> list[NewArticle]:
        """The fresh articles of a document with their matches (``None``: not matched,
        because an earlier copy in the document was flagged); an article that may not
        match gets the matcher's "nothing matched" without being scanned again."""
        if not any(may_match):
            # Nothing to match in the whole document, so finding its copies (below) could
            # not spare the matcher anything: most documents of general news.
            no_match = self.matcher.no_match
            return [NewArticle(a, no_match, fp) for a, fp in zip(fresh, prints, strict=True)]
        # Copies within this document are matched once (``assign_stories`` without stored
        # candidates: pure, ~20 us an article). Which stored story an article joins, and so
        # whether its story already has a hit, is looked up once, in record_poll under the
        # story lock; looking it up here too to spare the matcher (~40 us an article) cost
        # more than it saved (bench/bench_poll.py).
        choices = assign_stories(fresh, prints, [], self.settings.stories, now)
        items: list[NewArticle] = []
        flagged: list[bool] = []
        for a, fp, choice, may in zip(fresh, prints, choices, may_match, strict=True):
            if not needs_match(choice, flagged):
                match = None
            elif not may:
                match = self.matcher.no_match
            else:
                match = self._recent_matches.classify(self.matcher, a)
            flagged.append(match is not None and match.flagged)
            items.append(NewArticle(article=a, match=match, fingerprint=fp))
        return items

    def _report(
        self, f: _Fetched, update: FeedUpdate, hit_ids: Sequence[int], store_s: float
    ) -> PollReport:
        """The feed's poll report, logged."""
        feed = f.feed
        report = PollReport(
            feed_url=feed.url,
            status=update.status,
            http_status=update.http_status,
            new_items=update.new_items or 0,
            hits=len(hit_ids),
            error=update.error,
            elapsed_s=f.result.elapsed_s + store_s,
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
        if update.disabled_reason:
            log.error("feed %s disabled: %s", feed.url, update.disabled_reason)
        if update.moved_to and update.moved_to != feed.url:
            log.warning("feed %s moved permanently to %s", feed.url, update.moved_to)
        return report
