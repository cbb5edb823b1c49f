"""Where a first poll's CPU goes: each step of the poll path, per article, in one process.

    .venv/bin/python bench/bench_stages.py [--feeds 200] [--rounds 3] [--sqlite-cache-mb 16]

One command, under a minute. It builds bench/bench_poll.py's feed set (the real feeds of
../shared/feeds plus generated RSS of ~65 KB with 25 items) in memory and times, with
``time.process_time`` (CPU of this process, one thread), every step a first poll runs per
article, on the same documents:

* parse: ``parse.parse_feed`` as the service runs it (plain RSS through the expat fast path
  of ``fastparse``, the rest through feedparser without its sanitizer and without resolving
  links inside entry HTML), with feedparser for every document (``fast=False``), and with
  feedparser's own defaults (sanitizer and link resolution on);
* HTML to text and the rest of ``normalize.normalize_entry``;
* the MinHash fingerprint (``stories.article_fingerprint``);
* matching (``Matcher.classify``) of every article, its prefilter alone (run in the parse
  workers) and matching of the articles the prefilter passed (what the main process runs);
* the stored-story look-up alone (``Storage.story_candidates``, what the pipeline no longer
  runs before matching) and storing (``Storage.record_polls``, 16 feeds a transaction, as
  the pipeline batches them), on a fresh SQLite database, then storing the same feeds'
  no-change (304) polls (per feed);

and the resident memory of a fresh process once ``cli.build`` has made the service's parts
(imports, matcher and gazetteer) on a database ``migrate`` made beforehand, before any poll.
Fetching is left out (bench_poll.py measures the whole path, HTTP included). Medians of the
rounds; prints a markdown table for the README.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.bench_poll import SHARED, build_corpus, migrate_database  # noqa: E402
from service.cli import build  # noqa: E402
from service.config import DEFAULT_SQLITE_CACHE_MB, load_config  # noqa: E402
from service.errors import ParseError  # noqa: E402
from service.normalize import normalize_entry  # noqa: E402
from service.parse import parse_feed  # noqa: E402
from service.stories import StoryPolicy, article_fingerprint  # noqa: E402
from service.types import FeedUpdate, FetchStatus, NewArticle, ParsedFeed  # noqa: E402

RULES = REPO / "config" / "rules" / "detainer-sanctuary.toml"
HEADERS = {"content-type": "application/rss+xml"}
STORE_BATCH = 16  # pipeline.STORE_BATCH


# Run in a fresh process: its resident memory at each step from a bare interpreter to the
# service's parts built, before any poll (each import adds what the ones before left out).
BUILT_RSS = """
import sys
from pathlib import Path

def rss():
    status = Path("/proc/self/status").read_text().splitlines()
    return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024

steps = [("Python", rss())]
from service.heap import import_httpx_without_cli
import_httpx_without_cli()  # as the run, worker and poll commands import it
steps.append(("+ httpx (without its command-line tool)", rss()))
import sqlalchemy
steps.append(("+ SQLAlchemy", rss()))
import sqlmodel
steps.append(("+ SQLModel (pydantic)", rss()))
import feedparser
steps.append(("+ feedparser", rss()))
from service.cli import build
from service.config import load_config
steps.append(("+ the service's modules", rss()))
with build(load_config(Path(sys.argv[1]), env={})):
    steps.append(("+ built parts (engine, clients, matcher, gazetteer)", rss()))
for name, mb in steps:
    print(f"{mb:.1f}\t{name}")
"""


# Run in a fresh process: its resident memory after importing httpx, either as a plain
# ``import httpx`` does (with the command-line tool whenever click, rich and pygments are
# installed) or as the commands do (``service.heap.import_httpx_without_cli``).
HTTPX_RSS = """
import sys
from pathlib import Path

if sys.argv[1] == "without":
    from service.heap import import_httpx_without_cli
    import_httpx_without_cli()
else:
    import httpx
status = Path("/proc/self/status").read_text().splitlines()
print(next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024)
"""


def httpx_rss_mb(how: str) -> float:
    """Resident MB of a fresh process that imported httpx ``with`` or ``without`` its
    command-line tool."""
    done = subprocess.run(
        [sys.executable, "-c", HTTPX_RSS, how], capture_output=True, text=True, cwd=REPO, check=True
    )
    return float(done.stdout)


def built_rss_mb(tmp: Path) -> list[tuple[str, float]]:
    """Resident MB of a fresh process after each step of BUILT_RSS, in order."""
    config = tmp / "empty.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{tmp / "empty.db"}"\n[matcher]\nrules = "{RULES}"\n',
        encoding="utf-8",
    )
    migrate_database(config)
    done = subprocess.run(
        [sys.executable, "-c", BUILT_RSS, str(config)],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    )
    steps = []
    for line in done.stdout.strip().splitlines():
        mb, name = line.split("\t", 1)
        steps.append((name, float(mb)))
    return steps


def _cpu(work: Callable[[], Any]) -> float:
    started = time.process_time()
    work()
    return time.process_time() - started


def _parse_all(docs: list[tuple[str, bytes]], **flags: bool) -> list[tuple[str, ParsedFeed]]:
    parsed = []
    for url, body in docs:
        try:
            parsed.append((url, parse_feed(body, HEADERS, url, **flags)))
        except ParseError:
            continue  # the shared corpus's broken documents: no articles either way
    return parsed


@dataclass(frozen=True)
class Round:
    """One round: CPU seconds of each per-article step over all articles, and of storing
    every feed's no-change poll; how many articles, feeds and anchored articles there were."""

    steps: dict[str, float]
    store_304_s: float
    articles: int
    feeds: int
    anchored: int


def one_round(docs: list[tuple[str, bytes]], tmp: Path, cache_mb: int) -> Round:
    """Time every step over ``docs``."""
    out: dict[str, float] = {}
    out["parse, feedparser defaults"] = _cpu(
        lambda: _parse_all(docs, sanitize_html=True, resolve_relative_uris=True)
    )
    out["parse, feedparser only (no expat fast path)"] = _cpu(lambda: _parse_all(docs, fast=False))
    parsed: list[tuple[str, ParsedFeed]] = []
    out["parse, as the service runs it"] = _cpu(lambda: parsed.extend(_parse_all(docs)))
    articles: list[list[Any]] = []
    out["HTML to text, URLs, hash (normalize)"] = _cpu(
        lambda: articles.extend(
            [normalize_entry(e, p.title, url) for e in p.entries] for url, p in parsed
        )
    )
    prints: list[list[Any]] = []
    out["MinHash fingerprint"] = _cpu(
        lambda: prints.extend([article_fingerprint(a) for a in doc] for doc in articles)
    )
    config = tmp / "bench.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{tmp / "dw.db"}"\nsqlite_cache_mb = {cache_mb}\n'
        f'[matcher]\nrules = "{RULES}"\n'
        + "".join(f'[[feeds]]\nurl = "{url}"\n' for url, _ in parsed)
        + "[network]\nallow_private_addresses = true\n",
        encoding="utf-8",
    )
    with build(load_config(config, env={})) as parts:
        matcher, storage = parts.poller.matcher, parts.storage
        matches: list[list[Any]] = []
        out["matching, every article"] = _cpu(
            lambda: matches.extend(
                [matcher.classify(a.title, a.summary, a.text) for a in doc] for doc in articles
            )
        )
        anchored: list[Any] = []
        out["prefilter alone (the parse workers' share of matching)"] = _cpu(
            lambda: anchored.extend(
                a
                for doc in articles
                for a in doc
                if matcher.prefilter.holds_anchor(a.title, a.summary, a.text)
            )
        )
        out["matching, anchored articles only (the main process's share)"] = _cpu(
            lambda: [matcher.classify(a.title, a.summary, a.text) for a in anchored]
        )
        now = datetime.now(UTC)
        policy = StoryPolicy()
        feed_ids = {f.url: f.id for f in storage.enabled_feeds()}
        polls = []
        for (url, _), doc, fps, ms in zip(parsed, articles, prints, matches, strict=True):
            unique = {a.guid: (a, fp, m) for a, fp, m in zip(doc, fps, ms, strict=True)}
            items = [NewArticle(article=a, match=m, fingerprint=fp) for a, fp, m in unique.values()]
            update = FeedUpdate(
                feed_id=feed_ids[url],
                checked_at=now,
                status=FetchStatus.OK,
                http_status=200,
                error_count=0,
                error=None,
                next_check_at=now,
                new_items=len(items),
            )
            polls.append((update, items))

        # The look-up as the pipeline used to run it: before storing, every feed's articles
        # against what is stored so far (interleaved so the tables grow the same way).
        look_up_s = store_s = 0.0
        for i in range(0, len(polls), STORE_BATCH):
            batch = polls[i : i + STORE_BATCH]
            look_up_s += _cpu(
                lambda b=batch: [
                    storage.story_candidates(
                        [x.article for x in items], [x.fingerprint for x in items], policy, now
                    )
                    for _, items in b
                ]
            )
            store_s += _cpu(lambda b=batch: storage.record_polls(b, now, policy))
        out["stored-story look-up (no longer before matching)"] = look_up_s
        out["storing (record_polls, 16 feeds a transaction)"] = store_s
        # The same feeds answering 304: only their state changes (per feed, not article).
        unchanged = [
            (replace(update, status=FetchStatus.NOT_MODIFIED, http_status=304, new_items=0), [])
            for update, _ in polls
        ]
        store_304_s = sum(
            _cpu(lambda b=unchanged[i : i + STORE_BATCH]: storage.record_polls(b, now, policy))
            for i in range(0, len(unchanged), STORE_BATCH)
        )
    articles = sum(len(items) for _, items in polls)
    return Round(out, store_304_s, articles, len(unchanged), len(anchored))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--feeds", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--sqlite-cache-mb",
        type=int,
        default=DEFAULT_SQLITE_CACHE_MB,
        help="[database].sqlite_cache_mb of the storing step (default: the setting's)",
    )
    args = ap.parse_args()
    if not (SHARED / "feeds").is_dir():
        print(f"skipped: {SHARED / 'feeds'} is absent (the shared feed corpus)")
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-stages-") as tmp_name:
        tmp = Path(tmp_name)
        root = tmp / "www"
        root.mkdir()
        names = build_corpus(root, args.feeds)
        docs = [(f"http://127.0.0.1/{n}", (root / n).read_bytes()) for n in names]
        runs = []
        for i in range(args.rounds):
            run_dir = tmp / f"round-{i}"
            run_dir.mkdir()
            runs.append(one_round(docs, run_dir, args.sqlite_cache_mb))
        rss_built = built_rss_mb(tmp)
        httpx_with, httpx_without = httpx_rss_mb("with"), httpx_rss_mb("without")
    n = runs[0].articles
    print(
        f"{len(docs)} feeds, {n:,} articles stored; {args.rounds} rounds, median; "
        f"CPU of one process (time.process_time); SQLite cache {args.sqlite_cache_mb} MB\n"
    )
    print("| step | µs per article |")
    print("|---|---:|")
    for step in runs[0].steps:
        us = statistics.median(r.steps[step] for r in runs) / n * 1e6
        print(f"| {step} | {us:,.0f} |")
    anchored = runs[0].anchored
    print(f"\narticles holding a prefilter anchor: {anchored:,} of {n:,} ({anchored / n:.1%})")
    us = statistics.median(r.store_304_s / r.feeds for r in runs) * 1e6
    print(f"\nstoring a no-change (304) poll, per feed: {us:,.0f} µs")
    print(
        f"\nresident memory once cli.build made the parts, before polling: "
        f"{rss_built[-1][1]:.0f} MB\n"
    )
    print("| fresh process, step by step | resident MB | added |")
    print("|---|---:|---:|")
    before = 0.0
    for name, mb in rss_built:
        print(f"| {name} | {mb:.0f} | {mb - before:+.0f} |")
        before = mb
    print(
        f"\na fresh process after a plain `import httpx`: {httpx_with:.1f} MB, its command-line "
        f"tool loaded; as the commands import it: {httpx_without:.1f} MB "
        f"({httpx_with - httpx_without:.1f} MB less)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
