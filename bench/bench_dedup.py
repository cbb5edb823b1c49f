"""Measures near-duplicate grouping (``service.stories``) on labeled pairs from real text.

Pairs, all built from the dev corpus (``shared/corpus/dev.jsonl``, real published text):

* **siblings** — different articles about the same event by different outlets (hand-listed
  in ``SIBLINGS``: the 2017 Illinois TRUST Act signing, the 2025 House hearing with
  sanctuary-city mayors, ...). They must stay separate stories.
* **others** — every other pair of distinct corpus items. They must stay separate too.
* **same boilerplate** — every sibling and other pair again, both articles carrying the
  same outlet dateline and copyright notice (two different AP stories): still separate.
* **copies** — synthetic wire copies: a real item against a lightly edited version of
  itself (headline replaced, a sentence added or removed, outlet dateline and copyright
  boilerplate, light word edits, a truncated description, an excerpt against the fuller
  text, and combinations). They must merge.

A pair merges exactly as in production: the two fingerprints share an LSH band key and the
exact resemblance reaches the threshold. Prints markdown tables (docs/stories.md keeps the
last run): false-merge and missed-merge rates per threshold, misses per edit, the LSH
candidate recall, and the cost of a fingerprint.

Run: ``.venv/bin/python bench/bench_dedup.py [--corpus FILE]``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from service import stories
from service.types import Fingerprint

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus" / "dev.jsonl"

# Same event, different outlets, text written separately (read from the corpus).
SIBLINGS: dict[str, tuple[str, ...]] = {
    "2017 Illinois TRUST Act signing": ("d086", "d152"),
    "2025 House hearing with sanctuary-city mayors": ("d014", "d046", "d118"),
    "2019 Nashville ends ICE detention contract": ("d020", "d022", "d148"),
    "2017 Steinle verdict": ("d109", "d119", "d158"),
    "2025 DHS sanctuary list taken down": ("d006", "d085"),
    "2022 Martha's Vineyard flights": ("d009", "d027", "d129"),
    "2017 Lunn ruling (Massachusetts SJC)": ("d094", "d136"),
    "2017 DHS declined-detainer reports": ("d083", "d087"),
    "2018 Oregon Measure 105": ("d039", "d144"),
    "2022-23 NYC right to shelter": ("d033", "d037", "d064"),
    "2017 Texas SB 4": ("d043", "d112"),
    "2025 Laken Riley Act": ("d024", "d060", "d156"),
    "2022 Boston police commissioner": ("d041", "d093", "d141"),
    "2020 coronavirus aid and sanctuary states": ("d124", "d127"),
    "2023 Chicago migrants at police stations": ("d084", "d107"),
}

THRESHOLDS = (0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7, 0.8)

BOILERPLATE_HEAD = "WASHINGTON (AP) — "
BOILERPLATE_TAIL = (
    " Copyright 2025 The Associated Press. All rights reserved. This material may not be "
    "published, broadcast, rewritten or redistributed without permission."
)
# Outlets' light edits: house style and small rewordings.
WORD_EDITS = {
    "said": "says", "says": "said", "U.S.": "US", "Thursday": "on Thursday",
    "Department": "Dept.", "Immigration": "immigration", "will": "would", "the": "a",
}  # fmt: skip
DESCRIPTION_CHARS = 200  # where feeds commonly cut a description

Item = dict[str, str]
Edit = Callable[[Item, random.Random, list[Item]], Item]


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s]


def retitle(item: Item, rng: random.Random, pool: list[Item]) -> Item:
    """A different headline: another item's, so no headline word is shared (worst case)."""
    other = rng.choice([p for p in pool if p["id"] != item["id"]])
    return {**item, "title": other["title"]}


def add_sentence(item: Item, rng: random.Random, pool: list[Item]) -> Item:
    other = rng.choice([p for p in pool if p["id"] != item["id"] and p["summary"]])
    extra = _sentences(other["summary"])[0]
    return {**item, "summary": f"{item['summary']} {extra}"}


def drop_sentence(item: Item, rng: random.Random, pool: list[Item]) -> Item:
    body = _sentences(f"{item['summary']} {item['text']}")
    if len(body) < 2:
        return item
    return {**item, "summary": " ".join(body[:-1]), "text": ""}


def boilerplate(item: Item, rng: random.Random, pool: list[Item]) -> Item:
    return {**item, "summary": BOILERPLATE_HEAD + item["summary"] + BOILERPLATE_TAIL}


def light_edit(item: Item, rng: random.Random, pool: list[Item]) -> Item:
    words = item["summary"].split()
    spots = [i for i, w in enumerate(words) if w in WORD_EDITS]
    for i in rng.sample(spots, min(3, len(spots))):
        words[i] = WORD_EDITS[words[i]]
    summary = " ".join(words).replace("’", "'").replace("“", '"').replace("”", '"')
    return {**item, "summary": summary}


def truncate(item: Item, rng: random.Random, pool: list[Item]) -> Item:
    s = item["summary"]
    if len(s) <= DESCRIPTION_CHARS:
        return item
    return {**item, "summary": s[:DESCRIPTION_CHARS].rsplit(" ", 1)[0] + " …", "text": ""}


def excerpt(item: Item, rng: random.Random, pool: list[Item]) -> Item:
    """The description alone, against a copy that also carries the further passage."""
    return {**item, "text": ""}


def combo(*edits: Edit) -> Edit:
    def run(item: Item, rng: random.Random, pool: list[Item]) -> Item:
        for edit in edits:
            item = edit(item, rng, pool)
        return item

    return run


EDITS: dict[str, Edit] = {
    "new headline": retitle,
    "sentence added": add_sentence,
    "sentence removed": drop_sentence,
    "dateline + copyright": boilerplate,
    "light word edits": light_edit,
    "description truncated": truncate,
    "excerpt vs fuller text": excerpt,
    "headline + boilerplate": combo(retitle, boilerplate),
    "headline + sentence added": combo(retitle, add_sentence),
    "headline + sentence removed": combo(retitle, drop_sentence),
    "headline + light edits": combo(retitle, light_edit),
}


def fp(item: Item) -> Fingerprint:
    return stories.fingerprint(item["title"], item["summary"], item["text"])


def merged(a: Fingerprint, b: Fingerprint, threshold: float) -> bool:
    if not set(a.band_keys) & set(b.band_keys):
        return False
    return stories.resemblance_of(a, b) >= threshold


def rate(hits: int, total: int) -> str:
    return f"{hits}/{total} ({100 * hits / total:.1f} %)" if total else "—"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=CORPUS)
    args = ap.parse_args()
    items = [json.loads(line) for line in args.corpus.read_text(encoding="utf-8").splitlines()]
    by_id = {it["id"]: it for it in items}
    prints = {it["id"]: fp(it) for it in items}

    sibling_pairs = [(a, b) for ids in SIBLINGS.values() for a, b in itertools.combinations(ids, 2)]
    sibling_set = {frozenset(p) for p in sibling_pairs}
    other_pairs = [
        (a["id"], b["id"])
        for a, b in itertools.combinations(items, 2)
        if frozenset((a["id"], b["id"])) not in sibling_set
    ]
    rng = random.Random(4)
    copies: list[tuple[str, str, Fingerprint]] = []  # (edit, item id, copy's fingerprint)
    for name, edit in EDITS.items():
        for it in items:
            copy = edit(dict(it), rng, items)
            if copy != it:
                copies.append((name, it["id"], fp(copy)))

    print(
        f"corpus: {len(items)} items; {len(sibling_pairs)} sibling pairs "
        f"({len(SIBLINGS)} events), {len(other_pairs)} other pairs, "
        f"{len(copies)} synthetic copies\n"
    )

    boiled = {i: fp(boilerplate(it, rng, items)) for i, it in by_id.items()}
    negatives = sibling_pairs + other_pairs

    print(
        "| threshold | false merges, siblings | false merges, all other pairs "
        "| false merges, same boilerplate | missed merges, copies |"
    )
    print("|---|---|---|---|---|")
    for t in THRESHOLDS:
        fs = sum(merged(prints[a], prints[b], t) for a, b in sibling_pairs)
        fo = sum(merged(prints[a], prints[b], t) for a, b in other_pairs)
        fb = sum(merged(boiled[a], boiled[b], t) for a, b in negatives)
        miss = sum(not merged(prints[i], c, t) for _, i, c in copies)
        mark = " **(default)**" if t == stories.DEFAULT_THRESHOLD else ""
        print(
            f"| {t:.2f}{mark} | {rate(fs, len(sibling_pairs))} | "
            f"{rate(fo, len(other_pairs))} | {rate(fb, len(negatives))} | "
            f"{rate(miss, len(copies))} |"
        )

    t = stories.DEFAULT_THRESHOLD
    print(f"\nMissed merges per edit at the default threshold {t}:\n")
    print("| edit | missed | of which too short to compare | median resemblance |")
    print("|---|---|---|---|")
    for name in EDITS:
        rows = [(i, c) for e, i, c in copies if e == name]
        missed = [(i, c) for i, c in rows if not merged(prints[i], c, t)]
        short = sum(1 for i, c in missed if not c.band_keys or not prints[i].band_keys)
        med = statistics.median(stories.resemblance_of(prints[i], c) for i, c in rows)
        print(f"| {name} | {rate(len(missed), len(rows))} | {short} | {med:.2f} |")

    closest = max(
        sibling_pairs,
        key=lambda p: stories.resemblance_of(prints[p[0]], prints[p[1]]),
    )
    top = stories.resemblance_of(prints[closest[0]], prints[closest[1]])
    print(
        f"\nMost resembling siblings: {closest[0]} / {closest[1]} at {top:.2f} "
        f"({by_id[closest[0]]['title'][:50]!r})"
    )
    worst = max(stories.resemblance_of(prints[a], prints[b]) for a, b in other_pairs)
    worst_boiled = max(stories.resemblance_of(boiled[a], boiled[b]) for a, b in negatives)
    print(f"Most resembling other pair: {worst:.2f}; with the same boilerplate: {worst_boiled:.2f}")
    above = [(i, c) for _, i, c in copies if stories.resemblance_of(prints[i], c) >= t]
    found = sum(1 for i, c in above if set(prints[i].band_keys) & set(c.band_keys))
    print(f"LSH candidate recall for copies at resemblance >= {t}: {rate(found, len(above))}")
    short = sum(1 for f in prints.values() if not f.band_keys)
    print(
        f"Corpus items too short to compare (< {stories.MIN_SHINGLES} shingles): "
        f"{rate(short, len(items))}"
    )

    texts = [(it["title"], it["summary"], it["text"]) for it in items]
    runs = []
    for _ in range(5):
        started = time.perf_counter()
        for title, summary, text in texts:
            stories.fingerprint(title, summary, text)
        runs.append((time.perf_counter() - started) / len(texts))
    print(f"Fingerprint cost: median {statistics.median(runs) * 1e6:.0f} µs per item (one core)")


if __name__ == "__main__":
    main()
