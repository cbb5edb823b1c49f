"""The dashboard: escaped, filterable, and looked at in a real headless Chromium."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from service.api import create_app
from service.api.dashboard import evidence_segments, place_table, weekly_counts
from service.storage import Storage
from service.types import Evidence, Jurisdiction, MatchedTerm, NewArticle
from tests.conftest import serve_app
from tests.test_storage import NOW, article, match, poll_update

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
XSS = "<script>window.pwned = 1</script> Sheriff declines detainers"
SCRIPT_LINK = "javascript:window.pwned=2"


def seeded(storage: Storage) -> None:
    feed, _ = storage.add_feed("https://a.example/rss", NOW)
    sentence = "Boston police rejected all 15 immigration detainer requests from ICE."
    ev = Evidence(
        "summary",
        sentence,
        0,
        len(sentence),
        (MatchedTerm("immigration detainer requests", "detainer.request", 30, 59),),
    )
    places = [("Boston", "MA"), ("Chicago", "IL"), ("Denver", "CO"), ("Boston", "MA")]
    for n, (city, state) in enumerate(places):
        m = replace(
            match(),
            jurisdictions=(Jurisdiction(city, "city", state),),
            evidence=(ev,),
            topics=("detainer",) if n % 2 else ("sanctuary",),
        )
        a = article(n)
        a = replace(a, published_at=NOW - timedelta(days=7 * n))
        if n == 2:
            a = replace(a, title=XSS)
        if n == 3:  # a link a feed wrote, stored before links were held to http(s)
            a = replace(a, url=SCRIPT_LINK)
        storage.record_poll(poll_update(feed.id), [NewArticle(a, m)], NOW - timedelta(days=7 * n))


def test_pure_helpers() -> None:
    ev = {
        "sentence": "ICE detainer requests were declined",
        "start": 100,
        "terms": [{"start": 104, "end": 112}, {"start": 100, "end": 103}],
    }
    assert evidence_segments(ev) == [
        ("ICE", True),
        (" ", False),
        ("detainer", True),
        (" requests were declined", False),
    ]
    hits = [
        {
            "id": 2,
            "title": "b",
            "event_type": "x",
            "published_at": "2025-01-22T00:00:00Z",
            "topics": ["detainer"],
            "jurisdictions": [{"name": "Boston", "kind": "city", "state": "MA"}],
        },
        {
            "id": 1,
            "title": "a",
            "event_type": "y",
            "published_at": "2025-01-01T00:00:00Z",
            "topics": ["sanctuary"],
            "jurisdictions": [{"name": "Boston", "kind": "city", "state": "MA"}],
        },
    ]
    places = place_table(hits)
    assert places[0]["count"] == 2 and places[0]["latest_hit_id"] == 2
    weeks = weekly_counts(hits, NOW.date(), weeks=5)
    assert len(weeks) == 5 and sum(sum(c.values()) for _, c in weeks) == 2


@pytest.fixture
def site(storage: Storage) -> Iterator[str]:
    seeded(storage)
    with serve_app(create_app(storage)) as base:
        yield base


def test_pages_escape_feed_text_and_filter(site: str) -> None:
    index = httpx.get(site + "/").text
    assert "<script>window.pwned" not in index
    assert "&lt;script&gt;window.pwned = 1&lt;/script&gt;" in index
    assert "<mark>immigration detainer requests</mark>" in index
    assert "<svg" in index
    only_il = httpx.get(site + "/", params={"state": "il"}).text
    assert "Chicago, IL" in only_il and "Story 0" not in only_il
    assert httpx.get(site + "/hits/1").status_code == 200
    assert httpx.get(site + "/hits/999").status_code == 404
    assert "a.example/rss" in httpx.get(site + "/feeds").text
    assert "Denver" in httpx.get(site + "/jurisdictions").text
    # Filters that cannot be read are said on the page, as a search that does not parse is
    # (a bad date was a bare JSON 422; a state name matched nothing without a word).
    bad_date = httpx.get(site + "/", params={"since": "not-a-date"})
    assert bad_date.status_code == 200
    assert "since: expected a date such as 2025-01-31, not &#39;not-a-date&#39;" in bad_date.text
    bad_state = httpx.get(site + "/", params={"state": "Illinois"}).text
    assert "state: expected a two-letter state code such as MA" in bad_state
    assert "Chicago, IL" not in bad_state.split('id="no-hits"')[0]
    scripted = httpx.get(site + "/hits/4")  # its article's link is "javascript:..."
    assert SCRIPT_LINK in scripted.text and 'href="javascript' not in scripted.text
    assert 'href="https://news.example/1"' in httpx.get(site + "/hits/2").text
    policy = scripted.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script" not in policy


def test_dashboard_needs_the_token_when_one_is_set(storage: Storage) -> None:
    with serve_app(create_app(storage, api_token="t")) as base:
        assert httpx.get(base + "/").status_code == 401


@pytest.mark.skipif(
    CHROMIUM is None,
    reason="Debian's chromium is not installed (apt-get install chromium; .ci/run installs it)",
)
def test_in_headless_chromium(site: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(site + "/")
        page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
        assert page.evaluate("window.pwned") is None  # the <script> title did not run
        assert page.locator("svg rect").count() == 4  # one bar a week with a hit
        assert page.locator("#hits tr").count() == 5  # header + 4 hits
        assert page.locator("text=" + XSS).count() == 1  # shown as text
        page.fill("input[name=state]", "MA")
        page.click("button[type=submit]")
        page.wait_for_url("**/?*state=MA*")
        page.screenshot(path=str(tmp_path / "filtered.png"), full_page=True)
        rows = page.locator("#hits tr")
        assert rows.count() == 3  # header + the two Boston hits
        assert page.locator("#hits").inner_text().count("Boston, MA") == 2
        page.locator("#hits .hit-title a").first.click()
        page.wait_for_url("**/hits/*")
        assert page.locator("#sightings tr").count() == 2
        page.goto(site + "/hits/4")
        assert page.locator("a[href^='javascript']").count() == 0
        assert page.locator("text=" + SCRIPT_LINK).count() >= 1  # shown, not linked
        page.goto(site + "/feeds")
        assert "a.example/rss" in page.locator("#feeds").inner_text()
        page.screenshot(path=str(tmp_path / "feeds.png"))
        browser.close()
    assert (tmp_path / "dashboard.png").stat().st_size > 10_000
