"""service.stories: which story an article joins. Pairs are data (tests/data/stories/)."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from service import stories
from service.stories import StoryChoice, StoryPolicy, assign_stories, fingerprint, needs_match
from service.types import Article, Fingerprint, StoryCandidate
from tests.conftest import REPO, shared_path

NOW = datetime(2025, 1, 23, 15, 0, tzinfo=UTC)
PAIRS = json.loads((REPO / "tests" / "data" / "stories" / "pairs.json").read_text("utf-8"))
POLICY = StoryPolicy()

WIRE = {
    "title": "Nashville to end contract to house ICE immigrant detainees",
    "summary": "NASHVILLE, Tenn. (AP) — The sheriff in Tennessee’s largest city says his office "
    "will stop contracting to house detained immigrants for U.S. Immigration and Customs "
    "Enforcement on Dec. 1, calling the issue a distraction.",
    "text": "",
}


def article(part: dict[str, str], n: int = 1, url: str = "", at: datetime = NOW) -> Article:
    return Article(
        url=url or f"https://outlet{n}.example/story",
        guid=f"g{n}",
        title=part["title"],
        summary=part["summary"],
        text=part["text"],
        published_at=at,
        source=f"Outlet {n}",
        content_hash=f"hash-{n}",
    )


def stored(a: Article, story_id: int = 1, has_hit: bool = True) -> StoryCandidate:
    assert a.published_at is not None
    return StoryCandidate(
        story_id=story_id,
        url=a.url,
        content_hash=a.content_hash,
        title=a.title,
        summary=a.summary,
        text=a.text,
        seen_at=a.published_at,
        has_hit=has_hit,
    )


def choose(new: Article, known: list[StoryCandidate], policy: StoryPolicy = POLICY) -> StoryChoice:
    return assign_stories([new], [stories.article_fingerprint(new)], known, policy, NOW)[0]


@pytest.mark.parametrize("pair", PAIRS, ids=[p["name"] for p in PAIRS])
def test_labeled_pairs(pair: dict[str, Any]) -> None:
    first, second = article(pair["a"], 1), article(pair["b"], 2)
    choice = choose(second, [stored(first, story_id=7)])
    if pair["same"]:
        assert (choice.story_id, choice.reason) == (7, "text"), pair["note"]
        assert choice.resemblance >= POLICY.threshold and choice.story_has_hit
    else:
        assert choice == StoryChoice(), pair["note"]


def test_same_url_or_hash_joins_whatever_the_text() -> None:
    first = article(WIRE, 1)
    other = {"title": "Unrelated", "summary": "Nothing alike.", "text": ""}
    assert choose(article(other, 2, url=first.url), [stored(first)]).reason == "url"
    same_hash = dataclasses.replace(article(other, 3), content_hash=first.content_hash)
    assert choose(same_hash, [stored(first)]).reason == "hash"


def test_copies_outside_the_window_start_a_new_story() -> None:
    first = article(WIRE, 1)
    inside = article(WIRE | {"title": "Sheriff ends ICE deal"}, 2, at=NOW + timedelta(days=6))
    outside = article(WIRE | {"title": "Sheriff ends ICE deal"}, 3, at=NOW + timedelta(days=8))
    assert choose(inside, [stored(first)]).story_id == 1
    assert choose(outside, [stored(first)]) == StoryChoice()
    assert choose(outside, [stored(first)], StoryPolicy(window_s=9 * 86400)).story_id == 1


def test_the_most_resembling_story_wins() -> None:
    loose = article(WIRE | {"title": "Other headline entirely, about sheriffs"}, 1)
    close = article(WIRE | {"title": "Nashville ends contract to house ICE detainees"}, 2)
    new = article(WIRE, 3)
    choice = choose(new, [stored(loose, story_id=1), stored(close, story_id=2)])
    assert choice.story_id == 2


def test_copies_within_one_batch_share_a_story() -> None:
    batch = [
        article(WIRE, 1),
        article(WIRE | {"title": "Nashville sheriff drops ICE detention contract"}, 2),
        article({"title": "City budget hearing", "summary": "Parks and roads.", "text": ""}, 3),
        article(WIRE | {"title": "Tennessee sheriff: ICE housing a distraction"}, 4),
    ]
    prints = [stories.article_fingerprint(a) for a in batch]
    choices = assign_stories(batch, prints, [], POLICY, NOW)
    assert [c.same_as for c in choices] == [None, 0, None, 0]
    assert [c.story_id for c in choices] == [None] * 4
    # The matcher runs on the first copy; the others only when the first was not flagged.
    assert needs_match(choices[0], [])
    assert not needs_match(choices[1], [True])
    assert needs_match(choices[1], [False])
    # A batch copy of a stored story joins that story directly.
    joined = assign_stories(batch[:2], prints[:2], [stored(article(WIRE, 9), 5)], POLICY, NOW)
    assert [c.story_id for c in joined] == [5, 5]
    assert not needs_match(joined[1], [False])
    assert needs_match(StoryChoice(story_id=5, story_has_hit=False), [])


@pytest.mark.parametrize("seed", range(5))
def test_band_index_finds_every_earlier_sighting_sharing_a_key(seed: int) -> None:
    """The batch index keeps a key's first sighting apart from later ones; whatever the
    overlap, a look-up returns what comparing with every earlier sighting would, in order."""
    rng = random.Random(seed)
    index = stories._KnownIndex()
    added: list[frozenset[int]] = []
    for n in range(60):
        # Keys from a small space, so that many are shared by two, three or more sightings.
        keys = tuple(rng.sample(range(80), rng.choice([0, 1, 4, 32])))
        fp = Fingerprint(shingle_hashes=b"", band_keys=keys)
        expected = [i for i, earlier in enumerate(added) if earlier & set(keys)]
        assert [index.items.index(k) for k in index.sharing_a_band(fp)] == expected
        index.add(stories._Known(None, None, f"u{n}", f"h{n}", NOW, fp, False))
        added.append(frozenset(keys))


def test_short_texts_are_grouped_by_url_and_hash_only() -> None:
    short = {"title": "Sanctuary cities", "summary": "A short note.", "text": ""}
    fp = fingerprint(**short)
    assert len(stories.shingle_set(fp)) < stories.MIN_SHINGLES and fp.band_keys == ()
    a, b = article(short, 1), article(short, 2)
    assert choose(b, [stored(a)]) == StoryChoice()


def test_signature_and_band_keys() -> None:
    fp = fingerprint(**WIRE)
    assert len(fp.band_keys) == stories.BANDS
    assert sorted(k >> 52 for k in fp.band_keys) == list(range(stories.BANDS))  # one per band
    assert all(0 <= k < 2**63 for k in fp.band_keys)  # fits a BIGINT
    assert stories.signature(sorted(stories.shingle_set(fp), reverse=True)) == stories.signature(
        stories.shingle_set(fp)
    )
    assert stories.signature([]) == ()
    assert stories.band_keys(()) == ()
    # Case, punctuation and spacing do not matter; words do.
    same = fingerprint(WIRE["title"].upper(), "  " + WIRE["summary"].replace(",", ""), "")
    assert same == fp
    assert stories.resemblance_of(fp, fp) == 1.0
    # Packed and unpacked, the shingles are what shingles() hashed.
    assert stories.shingle_set(fp) == stories.shingles(**WIRE)
    assert stories.resemblance(stories.shingle_set(fp), frozenset()) == 0.0


def _signature_by_definition(hashes: list[int]) -> tuple[int, ...]:
    """One-permutation MinHash one hash at a time, as stories.signature did before its
    C-level steps: each bin's smallest value, then each empty bin's first filled donor."""
    smallest: dict[int, int] = {}
    for h in hashes:
        b, v = h % stories.SIGNATURE_BINS, h // stories.SIGNATURE_BINS
        if b not in smallest or v < smallest[b]:
            smallest[b] = v
    if not smallest:
        return ()
    return tuple(
        smallest[i]
        if i in smallest
        else smallest[next(j for j in stories._PROBES[i] if j in smallest)]
        for i in range(stories.SIGNATURE_BINS)
    )


def _band_keys_by_definition(sig: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(
        band * 2**52 + sig[2 * band] % 2**26 * 2**26 + sig[2 * band + 1] % 2**26
        for band in range(stories.BANDS)
        if sig
    )


# Shingle sets of every size that matters: none, one (63 bins densified), a few, about a
# lead's worth (~70, ~20 empty bins), enough to fill every bin; with repeats and with
# several hashes in one bin.
SIGNATURE_SIZES = [0, 1, 2, 7, 8, 40, 72, 130, 600]


@pytest.mark.parametrize("size", SIGNATURE_SIZES)
@pytest.mark.parametrize("seed", range(4))
def test_signature_and_band_keys_are_their_definitions(size: int, seed: int) -> None:
    rng = random.Random(seed * 1000 + size)
    hashes = [rng.getrandbits(32) for _ in range(size)]
    hashes += rng.sample(hashes, min(3, size))  # repeats do not change the set
    rng.shuffle(hashes)
    expected = _signature_by_definition(hashes)
    assert stories.signature(hashes) == expected
    assert stories.signature(frozenset(hashes)) == expected
    assert stories.band_keys(expected) == _band_keys_by_definition(expected)


def test_fingerprints_of_real_articles_are_their_definitions() -> None:
    """Stored band keys stay valid: every corpus item's keys are the definition's."""
    lines = shared_path("corpus", "dev.jsonl").read_text(encoding="utf-8").splitlines()
    items = [json.loads(line) for line in lines if line]
    assert items
    for item in items:
        parts = (item["title"], item.get("summary") or "", item.get("text") or "")
        fp = fingerprint(*parts)
        hashes = sorted(stories.shingles(*parts))
        assert stories.shingle_set(fp) == frozenset(hashes)
        if len(hashes) >= stories.MIN_SHINGLES:
            expected = _band_keys_by_definition(_signature_by_definition(hashes))
            assert fp.band_keys == expected


def test_long_bodies_are_compared_by_their_lead() -> None:
    lead = " ".join(f"word{i}" for i in range(stories.LEAD_WORDS))
    tail_a = " ".join(f"alpha{i}" for i in range(500))
    tail_b = " ".join(f"beta{i}" for i in range(500))
    a = fingerprint("Headline", lead, tail_a)
    b = fingerprint("Headline", lead, tail_b)
    assert a == b


def _lead_words_by_definition(title: str, summary: str, text: str) -> list[str]:
    """The title's words, then the body's up to where its LEAD_WORDS-th word ends, each
    case-folded: word by word, as stories.lead_words did before its one-match lead."""
    body = f"{summary} {text}"
    ends = [m.end() for m in re.finditer(r"\w+", body)][: stories.LEAD_WORDS]
    lead = body[: ends[-1]] if ends else ""
    return (
        re.findall(r"\w+", title.casefold())
        + re.findall(r"\w+", lead.casefold())[: stories.LEAD_WORDS]
    )


LEAD_CASES = [
    ("", "", ""),
    ("Headline only", "", ""),
    ("", "... -- !!", "  ?? "),
    ("T", "one", ""),
    ("T", "_under_scored_ words", "and 42 numbers, 3.5 too"),
    ("T", " ".join(f"w{i}" for i in range(stories.LEAD_WORDS - 1)), "last"),
    ("T", " ".join(f"w{i}" for i in range(stories.LEAD_WORDS)), ""),
    ("T", "", " ".join(f"w{i}" for i in range(stories.LEAD_WORDS + 1)) + " ..."),
    ("T", "— «Straße» İstanbul ﬁnal ŉ", "ÉCOLE naïve café — 東京 の ニュース"),
    ("T", "!" * 5000, "word " * 3000),
    ("T", "a-b-c " * 100, "x,y;z " * 100),
]


@pytest.mark.parametrize("case", LEAD_CASES)
def test_lead_words_are_the_words_up_to_the_lead_end(case: tuple[str, str, str]) -> None:
    """Band keys are stored: the lead must stay word for word what it was defined as."""
    assert stories.lead_words(*case) == _lead_words_by_definition(*case)


def test_lead_words_of_every_corpus_item_are_as_defined() -> None:
    corpus = shared_path("corpus", "dev.jsonl").read_text("utf-8").splitlines()
    items = [json.loads(line) for line in corpus if line.strip()]
    assert items
    for item in items:
        case = (item["title"], item["summary"] or "", item["text"] or "")
        assert stories.lead_words(*case) == _lead_words_by_definition(*case), item["id"]


def test_band_keys_are_the_same_in_every_process() -> None:
    """Keys are stored: they must not depend on Python's per-process hash seed."""
    code = (
        "import json; from service.stories import fingerprint; "
        f"print(json.dumps(fingerprint(**{WIRE!r}).band_keys))"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            cwd=REPO,
            check=True,
            timeout=60,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2")
    }
    assert len(outputs) == 1
    assert json.loads(outputs.pop()) == list(fingerprint(**WIRE).band_keys)
