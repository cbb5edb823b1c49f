"""Benchmark of the matcher, printed as a markdown table (docs/matcher.md keeps the last run).

Measures, in one process on one core:

* build time of ``Matcher.load`` (rules + gazetteer), median of 5, each cold: ``re``'s cache
  of compiled patterns is purged first, as it is empty when a process starts (without the
  purge the second and later builds reuse the first's compiled patterns and read ~5× faster);
* memory the built matcher holds (tracemalloc, retained after a cold load, as the build) and
  the load's peak;
* how many concept terms the rules file holds, and how many anchors the prefilter holds, in
  how many spellings (``prefilter.case_forms``);
* how many first letters the anchors begin with: each new one measured ~10 % more scan time per
  KB (docs/matcher.md, "Editing the rules");
* items/s for title + summary with explanation and entities on: real news-feed items (mostly
  off-topic, so mostly the prefilter path) and the dev corpus (on-topic heavy);
* µs per KB of non-matching body text (target ≤ 20);
* feedparser's per-item parse cost on the same feeds, and the matcher's share of it
  (target ≤ 10%);
* with ``--try-anchor WORD`` (repeatable): the prefilter alone over the same non-matching
  text, with the rules' anchors and with each extra anchor added, in alternating rounds - what
  a new anchor would cost every article before it is added to the rules.

Run: ``.venv/bin/python bench/bench_matcher.py [--feeds DIR] [--corpus FILE]``. Feeds and the
corpus come from the team's ``shared/`` folder beside the checkout; missing parts are skipped.
"""

from __future__ import annotations

import argparse
import functools
import gc
import html
import json
import re
import statistics
import time
import tomllib
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import feedparser

from service.match import Matcher
from service.match.prefilter import Prefilter, case_forms

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
RULES = REPO / "config" / "rules" / "detainer-sanctuary.toml"
# English-language news feeds of the shared samples (the matcher's real diet).
FEEDS = (
    "npr-news-2023-11-24.xml",
    "bbc-news-frontpage-2023-11-24.xml",
    "japantimes-latest-2023-11-24.xml",
    "nytimes-homepage-2017-01-07.xml",
    "moscowtimes-2017-01-23.xml",
    "aeon-essays-2023-11-24.xml",
)
_TAG = re.compile(r"<[^>]+>")


def plain(s: str) -> str:
    return " ".join(html.unescape(_TAG.sub(" ", s)).split())


def best_of(fn: Callable[[], object], repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def anchor_costs(
    anchors: tuple[tuple[str, bool], ...], extra: list[str], text: str
) -> list[tuple[str, str, str]]:
    """µs/KB of ``Prefilter.find`` over ``text`` with the rules' anchors and with each extra
    anchor added; five alternating rounds, each the best of 10, the median reported."""
    if not extra:
        return []
    letters = {a[0] for a, _ in anchors}
    variants = {"the rules' anchors": Prefilter(anchors)}
    for word in extra:
        anchor = word.lower().rstrip("*")
        new = "new" if anchor[0] not in letters else "existing"
        variants[f'+ "{word}" ({new} first letter)'] = Prefilter(
            (*anchors, (anchor, word.endswith("*")))
        )
    kb = len(text.encode()) / 1024
    runs: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(5):
        for name, pre in variants.items():
            runs[name].append(best_of(functools.partial(pre.find, text), 10) / kb * 1e6)
    return [
        (f"prefilter alone, {name}", f"{statistics.median(v):.1f} µs/KB", "")
        for name, v in runs.items()
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--feeds", type=Path, default=SHARED / "feeds")
    ap.add_argument("--corpus", type=Path, default=SHARED / "corpus" / "dev.jsonl")
    ap.add_argument(
        "--try-anchor",
        action="append",
        default=[],
        metavar="WORD",
        help='time the prefilter with this extra anchor ("word" or "prefix*"); repeatable',
    )
    args = ap.parse_args()

    builds = []
    for _ in range(5):
        re.purge()  # a cold build, as at start-up: no pattern compiled by an earlier one
        t0 = time.perf_counter()
        Matcher.load(RULES)
        builds.append(time.perf_counter() - t0)
    gc.collect()
    re.purge()  # or the load reuses cached patterns, and their memory goes uncounted
    tracemalloc.start()
    matcher = Matcher.load(RULES)
    gc.collect()
    retained, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    anchors = matcher.lexicon.anchors
    spellings = sum(len(case_forms(anchor)) for anchor, _ in anchors)
    with RULES.open("rb") as f:  # the terms as written (the lexicon keeps compiled patterns)
        terms = sum(len(c.get("terms", [])) for c in tomllib.load(f).get("concepts", []))
    rows: list[tuple[str, str, str]] = [
        (
            "matcher build time, cold (median of 5)",
            f"{statistics.median(builds) * 1000:.0f} ms",
            "≤ 1 s",
        ),
        (
            "matcher memory retained / load peak",
            f"{retained / 2**20:.1f} / {peak / 2**20:.1f} MB",
            "≤ 50 MB",
        ),
        # The automaton is C memory, which tracemalloc does not see; every parse worker
        # builds one too.
        ("concept terms in the rules file", f"{terms}", ""),
        ("prefilter anchors / spellings in its automaton", f"{len(anchors)} / {spellings:,}", ""),
        # An anchor that begins with a letter no other anchor begins with widened the
        # automaton's root and cost ~10 % of the scan of every text (docs/matcher.md).
        ("prefilter anchors' first letters", f"{len({a[0] for a, _ in anchors})}", ""),
    ]

    docs: list[bytes] = []
    items: list[tuple[str, str]] = []
    for name in FEEDS:
        path = args.feeds / name
        if path.exists():
            body = path.read_bytes()
            docs.append(body)
            for e in feedparser.parse(body).entries:
                items.append((plain(e.get("title", "")), plain(e.get("summary", ""))))
    if items:
        n = len(items)
        parse_s = best_of(lambda: [feedparser.parse(d) for d in docs], 3)
        match_s = best_of(lambda: [matcher.classify(t, s) for t, s in items])
        flagged = sum(matcher.classify(t, s).flagged for t, s in items)
        rows += [
            (
                f"news-feed items/s, title + summary ({n} items, {flagged} flagged)",
                f"{n / match_s:,.0f}",
                "",
            ),
            ("feedparser parse cost per item (same feeds)", f"{parse_s / n * 1e6:,.0f} µs", ""),
            ("matcher cost per item", f"{match_s / n * 1e6:,.1f} µs", ""),
            ("matcher / feedparser", f"{match_s / parse_s:.1%}", "≤ 10%"),
        ]
        quiet = [s for t, s in items if not matcher.anchors(t + " " + s)]
        chunk = " ".join(quiet)
        text = (chunk * (64_000 // max(1, len(chunk)) + 1))[:64_000]
        kb = len(text.encode()) / 1024
        per = best_of(lambda: matcher.classify("", "", text), 20)
        rows.append(("non-matching body text", f"{per / kb * 1e6:.1f} µs/KB", "≤ 20 µs/KB"))
        rows += anchor_costs(anchors, args.try_anchor, text)
    if args.corpus.exists():
        dev = [json.loads(line) for line in args.corpus.read_text(encoding="utf-8").splitlines()]
        pairs = [(d["title"], d["summary"]) for d in dev]
        s = best_of(lambda: [matcher.classify(t, x) for t, x in pairs])
        rows.append(
            (
                f"dev-corpus items/s, title + summary ({len(pairs)} items)",
                f"{len(pairs) / s:,.0f}",
                "",
            )
        )

    print("| measure | value | target |")
    print("|---|---|---|")
    for label, value, target in rows:
        print(f"| {label} | {value} | {target} |")


if __name__ == "__main__":
    main()
