"""APScheduler 3 jobs: the poll tick and the delivery tick [I/O].

Schedule state per feed (next check, backoff) lives in the database; the scheduler only
wakes the poller and the sender up. Each job runs one instance at a time and missed runs
coalesce, so a slow pass never piles up behind itself.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime

from apscheduler.schedulers.background import BackgroundScheduler

from service.alerts.sender import WebhookSender
from service.errors import DetainerWatchError
from service.metrics import ServiceMetrics
from service.pipeline import Poller
from service.wording import counted

log = logging.getLogger(__name__)

# Batches one poll tick claims at most before it yields to the next tick: a bound in case
# some feed stays due after its poll (a clock set back), not a limit anyone should meet.
MAX_BATCHES_PER_TICK = 100


class ServiceScheduler:
    def __init__(
        self,
        poller: Poller,
        sender: WebhookSender,
        poll_tick_s: float,
        delivery_tick_s: float,
        now: datetime,
        metrics: ServiceMetrics | None = None,
    ) -> None:
        """``metrics`` counts every poll and delivery attempt (the app's /metrics shows it)."""
        self.poller = poller
        self.sender = sender
        self.metrics = metrics
        self._wake_lock = threading.Lock()  # see _send_deliveries_now
        self._scheduler = BackgroundScheduler(timezone="UTC")
        self._scheduler.add_job(
            self._poll,
            "interval",
            seconds=poll_tick_s,
            id="poll",
            max_instances=1,
            coalesce=True,
            next_run_time=now,
        )
        self._scheduler.add_job(
            self._deliver,
            "interval",
            seconds=delivery_tick_s,
            id="deliver",
            max_instances=1,
            coalesce=True,
            next_run_time=now,
        )

    def _poll(self) -> None:
        """Poll batch after batch of due feeds (each claimed with a lease by the poller)
        until none is due; a database error ends this tick, the next one starts afresh."""
        for _ in range(MAX_BATCHES_PER_TICK):
            if self.poller.stopping.is_set():
                return
            try:
                reports = self.poller.poll()
            except DetainerWatchError as e:  # the database was unreachable: try next tick
                log.error("poll pass failed: %s; trying again at the next tick", e)
                return
            if not reports:
                return
            if self.metrics is not None:
                self.metrics.observe_polls(reports)
            log.info(
                "poll pass: %s, %s, %s, %s",
                counted(len(reports), "feed"),
                counted(sum(r.new_items for r in reports), "new item"),
                counted(sum(r.hits for r in reports), "hit"),
                counted(sum(1 for r in reports if r.error), "error"),
            )
            # New hits wrote pending deliveries: send them now rather than at the next tick.
            if any(r.hits for r in reports):
                self._send_deliveries_now()

    def _send_deliveries_now(self) -> None:
        # APScheduler's shutdown(wait=True) holds the job store lock while it waits for
        # running jobs, and modify_job takes that lock: a poll job calling it during shutdown
        # hung the worker for good. Under _wake_lock, stopping is either not set yet (and
        # shutdown waits for this call) or set (and we do not call).
        with self._wake_lock:
            if not self.poller.stopping.is_set():
                self._scheduler.modify_job("deliver", next_run_time=datetime.now().astimezone())

    def _deliver(self) -> None:
        try:
            report = self.sender.tick()
        except DetainerWatchError as e:
            log.error("delivery pass failed: %s; trying again at the next tick", e)
            return
        if self.metrics is not None:
            self.metrics.observe_deliveries(
                report.delivered, report.retried, report.failed, report.post_seconds
            )
        if report.delivered or report.retried or report.failed:
            log.info(
                "deliveries: %d delivered, %d to retry, %d failed",
                report.delivered,
                report.retried,
                report.failed,
            )

    def start(self) -> None:
        self._scheduler.start()

    @property
    def alive(self) -> bool:
        return bool(self._scheduler.running)

    def shutdown(self) -> None:
        """Stop after the current poll and delivery (both cut short: claims not started are
        given back), then release every lease this process still holds, so other workers
        take its feeds and deliveries at once rather than when the leases run out."""
        with self._wake_lock:
            self.poller.stopping.set()
            self.sender.stopping.set()
        if self._scheduler.running:
            self._scheduler.shutdown(wait=True)
        release_leases(self.poller, self.sender)


def release_leases(poller: Poller, sender: WebhookSender) -> int:
    """Give back every feed and delivery lease this process still holds (after a stop), so
    that other workers take them at once rather than when the leases run out; how many
    feeds went back. A database that is gone is logged: its leases then run out."""
    try:
        feeds = poller.storage.release_feeds(poller.worker_id)
        deliveries = sender.release_held()
    except DetainerWatchError as e:
        log.warning("could not release this worker's leases (they will expire): %s", e)
        return 0
    if feeds or deliveries:
        log.info(
            "released the leases of %s and %s",
            counted(feeds, "feed"),
            counted(deliveries, "delivery", "deliveries"),
        )
    return feeds
