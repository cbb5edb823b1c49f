"""Storage contract, claims: feeds and deliveries leased to one claimer at a time.

Part of the storage contract suite: the ``store`` fixture of ``tests/test_storage.py`` runs
each test on SQLite and on PostgreSQL (DW_TEST_POSTGRES_URL). Claimers racing at the same
moment are threads, each in its own transaction on its own connection, started together at
a barrier; the process-level proof is ``tests/test_scaleout.py``.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from datetime import timedelta

from service.config import WebhookConfig
from service.storage import Storage
from service.types import NewArticle
from tests.test_storage import NOW, SECRET, article, match, poll_update

LEASE = timedelta(minutes=3)
CLAIMERS = 4


def race(claim: Callable[[str], list[int]], claimers: int = CLAIMERS) -> dict[str, list[int]]:
    """Run ``claim(name)`` in ``claimers`` threads released at once; what each got."""
    barrier = threading.Barrier(claimers)
    got: dict[str, list[int]] = {}
    errors: list[BaseException] = []

    def run(name: str) -> None:
        barrier.wait()
        try:
            got[name] = claim(name)
        except BaseException as e:  # re-raised in the test's thread below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(f"w{i}",)) for i in range(claimers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    if errors:
        raise errors[0]
    return got


def add_feeds(store: Storage, n: int) -> list[int]:
    return [store.add_feed(f"https://f{i}.example/rss", NOW)[0].id for i in range(n)]


def test_racing_feed_claims_never_share_a_feed(store: Storage) -> None:
    feeds = add_feeds(store, 30)
    claimed: Counter[int] = Counter()
    for _ in range(10):  # rounds of claimers all at once, 3 feeds each, until none is left
        got = race(lambda w: [f.id for f in store.claim_feeds(NOW, w, 3, LEASE)])
        for ids in got.values():
            claimed.update(ids)
        if not any(got.values()):
            break
    assert sorted(claimed) == sorted(feeds)  # every due feed was claimed ...
    assert set(claimed.values()) == {1}  # ... by exactly one claimer, once


def test_expired_feed_lease_is_taken_over(store: Storage) -> None:
    feeds = add_feeds(store, 3)
    assert sorted(f.id for f in store.claim_feeds(NOW, "crashed", 10, LEASE)) == feeds
    assert store.claim_feeds(NOW + LEASE - timedelta(seconds=1), "other", 10, LEASE) == []
    later = NOW + LEASE + timedelta(seconds=1)
    assert sorted(f.id for f in store.claim_feeds(later, "other", 10, LEASE)) == feeds
    assert store.claim_feeds(later, "third", 10, LEASE) == []  # now the taker holds them


def test_released_feed_lease_is_claimable_at_once(store: Storage) -> None:
    polled, *rest = add_feeds(store, 4)
    assert len(store.claim_feeds(NOW, "stopping", 10, LEASE)) == 4
    store.record_poll(poll_update(polled), [], NOW)  # its poll is recorded: lease ended
    assert store.release_feeds("someone-else") == 0  # only the holder's leases go
    assert store.claim_feeds(NOW, "other", 10, LEASE) == []
    assert store.release_feeds("stopping") == 3  # the three it had not polled
    assert sorted(f.id for f in store.claim_feeds(NOW, "other", 10, LEASE)) == rest
    assert store.release_feeds("stopping") == 0
    # The polled feed kept its schedule: due again only at its next check.
    assert store.claim_feeds(NOW, "third", 10, LEASE) == []


def queue_deliveries(store: Storage, subscriptions: int, hits: int) -> int:
    store.sync_config_webhooks(
        [WebhookConfig(url=f"https://h{i}.example/x", secret=SECRET) for i in range(subscriptions)],
        NOW,
    )
    feed, _ = store.add_feed("https://a.example/rss", NOW)
    items = [NewArticle(article(n, body=f"distinct body {n}"), match()) for n in range(hits)]
    store.record_poll(poll_update(feed.id, hits), items, NOW)
    pending = store.list_deliveries("pending", limit=1000)
    assert len(pending) == subscriptions * hits
    return len(pending)


def test_racing_delivery_claims_never_share_a_delivery(store: Storage) -> None:
    total = queue_deliveries(store, subscriptions=4, hits=6)
    claimed: Counter[int] = Counter()
    for _ in range(10):
        got = race(lambda _w: [d.id for d, _, _ in store.claim_deliveries(NOW, limit=5)])
        for ids in got.values():
            claimed.update(ids)
            for delivery_id in ids:  # sent: the subscription's next deliveries come free
                store.mark_delivered(delivery_id, NOW, 200)
        if not any(got.values()):
            break
    assert len(claimed) == total  # every pending delivery was claimed ...
    assert set(claimed.values()) == {1}  # ... by exactly one claimer, once


def test_released_delivery_lease_is_claimable_at_once(store: Storage) -> None:
    queue_deliveries(store, subscriptions=1, hits=2)
    first = store.claim_deliveries(NOW)
    assert len(first) == 2
    assert store.claim_deliveries(NOW) == []  # leased (and expiring only after the lease)
    sent, unsent = first[0][0], first[1][0]
    store.mark_delivered(sent.id, NOW, 200)
    assert store.release([sent.id, unsent.id]) == 1  # a delivered one has no lease to give
    again = store.claim_deliveries(NOW)
    assert [d.webhook_id for d, _, _ in again] == [unsent.webhook_id]  # same id, at once
    assert again[0][0].attempts == unsent.attempts  # releasing is not an attempt
