"""The matcher's first step, run in the parse workers: same answers as the matcher's own.

An article the workers flag as holding no anchor never reaches ``Matcher.classify``; these
tests show that the matcher would have found nothing in it (every dev-corpus item and every
article of every shared feed), that the flags survive the trip to a worker process, and that
the poller skips the matcher for exactly those articles.
"""

from __future__ import annotations

import json
import pickle
import random
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from service.fetch import Fetcher, build_client
from service.match import Matcher
from service.match.prefilter import Prefilter, case_forms
from service.parse_worker import ParsedDocument, ParsePool, parse_document
from service.pipeline import Poller, PollSettings
from service.storage import Storage
from service.types import Article, MatchResult
from tests.conftest import RULES, shared_path
from tests.seedfeed import other_items, rss, seed_feed
from tests.servers import FeedServer

T0 = datetime(2025, 1, 23, 15, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def matcher() -> Matcher:
    return Matcher.load(RULES)


def _corpus_items() -> list[dict[str, str]]:
    corpus: Path = shared_path("corpus", "dev.jsonl")
    lines = corpus.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line]


def _feed_articles(prefilter: Prefilter) -> list[tuple[Article, bool]]:
    """Every article of every shared feed, with the prefilter's flag."""
    out: list[tuple[Article, bool]] = []
    for path in sorted(shared_path("feeds").glob("*.xml")):
        doc = parse_document(path.read_bytes(), {}, f"https://example.org/{path.name}", prefilter)
        # A broken document has neither articles nor flags; any other has one per article.
        out.extend(zip(doc.articles, doc.anchored or (), strict=True))
    return out


def _count_classify(m: Matcher, calls: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Record the title of every item ``m`` classifies in ``calls``."""
    real = m.classify

    def counting(title: str, summary: str = "", text: str = "") -> MatchResult:
        calls.append(title)
        return real(title, summary, text)

    monkeypatch.setattr(m, "classify", counting)


def _poller(storage: Storage, matcher: Matcher, client: Any, pool: ParsePool | None) -> Poller:
    return Poller(
        storage,
        Fetcher(client, 1_000_000, 10),
        matcher,
        PollSettings(interval_s=600, min_interval_s=60, max_interval_s=3600, concurrency=2),
        lambda: T0,
        random.Random(0),
        parse_pool=pool,
    )


def test_no_anchor_means_nothing_matched_in_the_dev_corpus(matcher: Matcher) -> None:
    items = _corpus_items()
    unanchored = 0
    for item in items:
        parts = (item.get("title", ""), item.get("summary", ""), item.get("text", ""))
        result = matcher.classify(*parts)
        if not matcher.prefilter.holds_anchor(*parts):
            unanchored += 1
            assert result == matcher.no_match, item["id"]
        if result.flagged:
            assert matcher.prefilter.holds_anchor(*parts), item["id"]
    assert 0 < unanchored < len(items)  # both kinds are exercised


def test_no_anchor_means_nothing_matched_in_every_shared_feed(matcher: Matcher) -> None:
    articles = _feed_articles(matcher.prefilter)
    assert len(articles) > 100
    flags = [flag for _, flag in articles]
    assert True in flags and False in flags
    for article, anchored in articles:
        result = matcher.classify(article.title, article.summary, article.text)
        if not anchored:
            assert result == matcher.no_match, article.url


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("Deputies will not ask what country they are from", True),
        ("What Country They Are From: the sheriff's new booking form", True),
        ("What country they are from no longer matters at booking", True),
        ("WHAT COUNTRY THEY ARE FROM", True),
        ("what COUNTRY they ARE from", False),  # an odd mixture, as "SaNcTuArY" is
        ("TRUST Act", True),
        ("Trust ACT", True),
    ],
)
def test_phrase_anchors_are_held_in_the_cases_news_copy_prints(text: str, found: bool) -> None:
    pre = Prefilter([("what country they are from", False), ("trust act", True)])
    assert bool(pre.find(text)) is found


def test_long_phrase_anchors_do_not_multiply_their_case_forms() -> None:
    """Each word in three cases would hold 3^5 = 243 spellings of a five-word anchor in every
    process that builds the automaton; lower or Title case per word and the phrase in UPPER
    case are 2^5 + 1 = 33. Two-word anchors keep all nine ("TRUST Act")."""
    assert len(case_forms("what country they are from")) == 33
    assert len(case_forms("trust act")) == 9
    assert len(case_forms("ice")) == 3


def test_prefilter_pickles_as_its_anchors(matcher: Matcher) -> None:
    copy = pickle.loads(pickle.dumps(matcher.prefilter))
    assert copy.anchors == matcher.prefilter.anchors
    text = "ICE lodged a detainer; the sanctuary city ignored it. Ice storm, police service."
    assert copy.find(text) == matcher.prefilter.find(text) != []
    assert not copy.holds_anchor("Police service budget", "Parks and roads")


def test_worker_processes_flag_the_same_articles_as_in_thread(matcher: Matcher) -> None:
    documents = [seed_feed(), rss(other_items(3))]
    documents += [p.read_bytes() for p in sorted(shared_path("feeds").glob("*.xml"))[:8]]
    pool = ParsePool(processes=1)
    try:
        for body in documents:
            here = parse_document(body, {}, "https://example.org/f", matcher.prefilter)
            there = pool.parse(body, {}, "https://example.org/f", matcher.prefilter)
            assert there.anchored == here.anchored
            assert there.articles == here.articles
        # Other anchors (reloaded rules) reach the worker with the next document.
        budget = Prefilter((*matcher.prefilter.anchors, ("budget", False)))
        quiet = pool.parse(rss(other_items(3)), {}, "https://example.org/f", budget)
        assert quiet.anchored == (True, True, True)
        assert pool.parse(rss(other_items(3)), {}, "https://example.org/f").anchored is None
    finally:
        pool.close()
    seed = parse_document(seed_feed(), {}, "https://example.org/f", matcher.prefilter)
    assert seed.anchored == (True,)
    quiet = parse_document(rss(other_items(3)), {}, "https://example.org/f", matcher.prefilter)
    assert quiet.anchored == (False, False, False)
    assert parse_document(seed_feed(), {}, "https://example.org/f").anchored is None


def test_poller_runs_the_matcher_on_anchored_articles_only(
    storage: Storage, matcher: Matcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    classified: list[str] = []
    _count_classify(matcher, classified, monkeypatch)
    client = build_client("detainer-watch-test", 5, 5, 4)
    poller = _poller(storage, matcher, client, None)
    try:
        with FeedServer() as srv:
            srv.route("/seed.xml", body=seed_feed())
            srv.route("/quiet.xml", body=rss(other_items(4)))
            for path in ("/seed.xml", "/quiet.xml"):
                storage.add_feed(srv.url(path), T0)
            reports = {r.feed_url.rsplit("/", 1)[1]: r for r in poller.poll()}
    finally:
        client.close()
    assert reports["seed.xml"].hits == 1
    assert reports["quiet.xml"].new_items == 4 and reports["quiet.xml"].hits == 0
    assert len(classified) == 1  # the seed story; the four budget items had no anchor


def _with_budget_anchor(matcher: Matcher) -> Matcher:
    """``matcher``'s rules plus the anchor "budget" (what a SIGHUP reload could bring)."""
    lexicon = replace(matcher.lexicon, anchors=(*matcher.lexicon.anchors, ("budget", False)))
    return Matcher(lexicon, matcher._gazetteer, matcher.threshold)


@pytest.mark.parametrize("processes", [0, 1])
@pytest.mark.parametrize("when", ["before the poll", "between parsing and storing"])
def test_reloaded_rules_reach_the_prefilter(
    storage: Storage,
    matcher: Matcher,
    processes: int,
    when: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A SIGHUP reload swaps the poller's matcher. Documents parsed after it are flagged with
    the new rules' anchors; one flagged under the old rules is matched in full."""
    calls: list[str] = []
    reloaded = _with_budget_anchor(matcher)
    _count_classify(reloaded, calls, monkeypatch)
    client = build_client("detainer-watch-test", 5, 5, 4)
    pool = ParsePool(processes=processes)
    poller = _poller(storage, matcher, client, pool)
    if when == "before the poll":
        poller.matcher = reloaded
    else:
        parse = pool.parse

        def parse_then_reload(*args: Any) -> ParsedDocument:
            doc = parse(*args)
            assert doc.anchored == (False, False, False, False)  # the old rules' anchors
            poller.matcher = reloaded
            return doc

        pool.parse = parse_then_reload  # type: ignore[method-assign]
    try:
        with FeedServer() as srv:
            srv.route("/quiet.xml", body=rss(other_items(4)))
            storage.add_feed(srv.url("/quiet.xml"), T0)
            assert poller.poll()[0].new_items == 4
    finally:
        pool.close()
        client.close()
    assert len(calls) == 4  # every budget item went to the reloaded matcher
