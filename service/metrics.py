"""Prometheus metrics of one service process: counters the poller and sender feed, and
database counts read at scrape time.

Each ``ServiceMetrics`` owns its own ``CollectorRegistry`` (nothing is registered at import
or in the global registry), built in ``cli.py`` and handed to the scheduler side and to the
app; tests build one per app. Counters are per process: with several workers, Prometheus sums
them; the database gauges are the same from every process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from service.types import PollReport

# Poll durations span a 304 in a few ms to a slow feed at the total timeout (30 s default).
POLL_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# A webhook POST: a few ms to a local receiver up to the delivery timeout (10 s default).
DELIVERY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# The ``status`` of a poll that got no HTTP answer (DNS, connect or read error, timeout).
NO_RESPONSE = "none"


class ServiceMetrics:
    """Counters of polls and deliveries, and the registry /metrics renders."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.polls = Counter(
            "dw_polls",
            "Feed polls by HTTP status (none: no answer) and result (ok, not_modified, error)",
            ["status", "result"],
            registry=self.registry,
        )
        self.poll_errors = Counter(
            "dw_poll_errors", "Feed polls that ended in an error", registry=self.registry
        )
        self.new_articles = Counter(
            "dw_new_articles", "New articles stored by polls", registry=self.registry
        )
        self.hits_created = Counter(
            "dw_hits_created", "Hits created by polls", registry=self.registry
        )
        self.poll_seconds = Histogram(
            "dw_poll_duration_seconds",
            "Wall time of one feed's poll",
            buckets=POLL_BUCKETS,
            registry=self.registry,
        )
        self.delivery_attempts = Counter(
            "dw_delivery_attempts",
            "Webhook delivery attempts by result",
            ["result"],
            registry=self.registry,
        )
        self.delivery_seconds = Histogram(
            "dw_delivery_duration_seconds",
            "Wall time of one webhook POST, answered or not",
            buckets=DELIVERY_BUCKETS,
            registry=self.registry,
        )
        self._watching = False

    def observe_polls(self, reports: Iterable[PollReport]) -> None:
        for r in reports:
            status = NO_RESPONSE if r.http_status is None else str(r.http_status)
            self.polls.labels(status=status, result=str(r.status)).inc()
            if r.error:
                self.poll_errors.inc()
            self.new_articles.inc(r.new_items)
            self.hits_created.inc(r.hits)
            self.poll_seconds.observe(r.elapsed_s)

    def observe_deliveries(
        self, delivered: int, retried: int, failed: int, seconds: Iterable[float] = ()
    ) -> None:
        """One delivery tick: attempts by result, and each POST's wall time."""
        for result, n in (("delivered", delivered), ("retried", retried), ("failed", failed)):
            if n:
                self.delivery_attempts.labels(result=result).inc(n)
        for s in seconds:
            self.delivery_seconds.observe(s)

    def watch_database(self, counts: Callable[[], dict[str, dict[str, int]]]) -> None:
        """Report ``counts()`` (``Storage.metric_counts``) as gauges at every scrape."""
        if not self._watching:
            self.registry.register(_DatabaseCollector(counts))
            self._watching = True


class _DatabaseCollector(Collector):
    LABELS = {"hits": "", "articles": "", "feeds": "state", "deliveries": "status"}
    HELP = {
        "hits": "Hits stored",
        "articles": "Articles stored",
        "feeds": "Feeds by health (last poll status, or disabled)",
        "deliveries": "Webhook deliveries by status",
    }

    def __init__(self, counts: Callable[[], dict[str, dict[str, int]]]) -> None:
        self.counts = counts

    def describe(self) -> Iterator[Metric]:
        return iter(())  # unknown until scraped; keeps registration free of queries

    def collect(self) -> Iterator[Metric]:
        counts = self.counts()
        for name, label in self.LABELS.items():
            family = GaugeMetricFamily(
                f"dw_{name}", self.HELP[name], labels=[label] if label else None
            )
            for key, value in sorted(counts.get(name, {}).items()):
                family.add_metric([key] if label else [], value)
            yield family
