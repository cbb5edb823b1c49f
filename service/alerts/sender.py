"""Send due webhook deliveries from the outbox [I/O].

Ordering for crash safety: a delivery is leased, POSTed, then marked. A crash between the
POST and the mark leaves the lease to expire and the same delivery (same ``webhook-id``) is
sent again: at least once, never lost, never under two ids. Deliveries to one subscription
go in hit order; when one fails, the rest of that subscription's batch waits for it. This
module does not decide retry times (``alerts.retry``), routing (``alerts.routing``) or digest
periods (``alerts.digest``).
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import httpx

from service.alerts.digest import latest_period
from service.alerts.payload import render, render_digest, sign
from service.alerts.retry import next_attempt_at
from service.alerts.routing import matches_filters
from service.decide import parse_retry_after
from service.errors import DeliveryError
from service.storage import Storage, hit_payload
from service.storage.deliveries import Claim
from service.types import DeliveryRecord, HitRecord, Subscription

log = logging.getLogger(__name__)

# Receivers' error bodies are logged for diagnosis, cut to this many characters.
MAX_ERROR_BODY = 200
# Control characters in an error body, shown as U+FFFD: PostgreSQL refuses text holding NUL
# (the delivery's attempt could not be recorded, so it was sent again at every tick without
# ever counting), and escape sequences would reach the terminal of `deliveries list`.
ERROR_BODY_CONTROLS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def build_webhook_client(timeout_s: float, user_agent: str) -> httpx.Client:
    """Webhooks never follow redirects: a 3xx is a failed attempt, not a new target."""
    return httpx.Client(
        timeout=timeout_s, follow_redirects=False, headers={"User-Agent": user_agent}
    )


@dataclass(frozen=True, slots=True)
class DeliveryTickReport:
    delivered: int = 0
    retried: int = 0
    failed: int = 0
    digests_queued: int = 0
    post_seconds: tuple[float, ...] = ()  # wall time of each POST made, answered or not


def _host(url: str) -> str:
    return urlsplit(url).netloc


class WebhookSender:
    def __init__(
        self,
        storage: Storage,
        client: httpx.Client,
        max_attempts: int,
        clock: Callable[[], datetime],
        rng: random.Random,
        retry_span_s: float | None = None,
        batch: int = 100,
        attempt_timeout_s: float = 10.0,
    ) -> None:
        self.storage = storage
        # Set when the process is stopping: claims not yet sent are given back, not sent.
        self.stopping = threading.Event()
        # Deliveries claimed by the batch being sent; left here only when sending it failed
        # part-way (the database went away), for ``release_held`` to give back.
        self._held: set[int] = set()
        self._given_back = 0  # deliveries released unsent because we were stopping
        self.client = client
        self.max_attempts = max_attempts
        self.clock = clock
        self.rng = rng
        self.retry_span_s = retry_span_s
        self.batch = batch
        self.attempt_timeout = timedelta(seconds=attempt_timeout_s)

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        """POST once; return the 2xx status or raise DeliveryError."""
        try:
            resp = self.client.post(url, content=body, headers=headers)
        except httpx.HTTPError as e:
            raise DeliveryError(f"{type(e).__name__}: {e}") from e
        if 200 <= resp.status_code < 300:
            return resp.status_code
        detail = ERROR_BODY_CONTROLS.sub("\ufffd", resp.text[:MAX_ERROR_BODY]).strip()
        if 300 <= resp.status_code < 400:
            detail = f"redirect to {resp.headers.get('location', '?')} not followed"
        raise DeliveryError(
            f"HTTP {resp.status_code}" + (f": {detail}" if detail else ""),
            status=resp.status_code,
            retry_after=parse_retry_after(resp.headers.get("retry-after"), self.clock()),
        )

    def queue_digests(self) -> int:
        """Queue each digest subscription's latest ended period once (empty ones are skipped)."""
        now = self.clock()
        queued = 0
        for sub in self.storage.list_subscriptions():
            if not sub.enabled or not sub.digest:
                continue
            period = latest_period(now, sub.digest, sub.digest_hour, sub.digest_timezone)
            if sub.digest and period.end <= now:
                hits = [
                    h.id
                    for h, feeds in self.storage.hits_between(period.start, period.end)
                    if matches_filters(sub, h.score, h.topics, h.event_type, h.jurisdictions, feeds)
                ]
                if self.storage.add_digest(sub.id, period.label, hits, now) is not None:
                    queued += bool(hits)
        return queued

    def _body(
        self, delivery: DeliveryRecord, sub: Subscription, hits: list[HitRecord], now: datetime
    ) -> bytes:
        if delivery.event_type == "digest":
            return render_digest(
                sub.format, delivery_period(delivery), [hit_payload(h) for h in hits], now
            )
        return render(sub.format, hit_payload(hits[0]), now)

    def tick(self, limit: int | None = None) -> DeliveryTickReport:
        """Send what is due now, batch after batch, up to ``limit`` (default: the batch
        setting). One receiver's failure never stops the others."""
        digests = self.queue_digests()
        delivered = retried = failed = 0
        seconds: list[float] = []
        budget = limit or self.batch
        while budget > 0 and not self.stopping.is_set():
            claims = self.storage.claim_deliveries(self.clock(), budget, self.attempt_timeout)
            if not claims:
                break
            budget -= len(claims)
            batch = {delivery.id for delivery, _, _ in claims}
            self._held |= batch
            report = self._send(claims)  # marks or releases every claim it returns from
            self._held -= batch
            delivered += report.delivered
            retried += report.retried
            failed += report.failed
            seconds += report.post_seconds
        return DeliveryTickReport(delivered, retried, failed, digests, tuple(seconds))

    def release_held(self) -> int:
        """Give back the leases of deliveries claimed and neither sent nor released (a batch
        cut off by an error), so another sender takes them now rather than after the lease.
        Called when stopping, after the last tick. Returns how many deliveries went back
        unsent since stopping began, these included."""
        held, self._held = sorted(self._held), set()
        return self._given_back + self.storage.release(held)

    def _send(self, claims: list[Claim]) -> DeliveryTickReport:
        delivered = retried = failed = 0
        seconds: list[float] = []
        stalled: set[int] = set()  # subscriptions whose earlier delivery just failed
        for delivery, sub, hits in claims:
            if self.stopping.is_set():  # the rest of the batch goes back, unsent
                self._given_back += self.storage.release([delivery.id])
                continue
            if sub.id in stalled:
                self.storage.release([delivery.id])
                continue
            if not hits and delivery.event_type != "digest":
                self.storage.mark_attempt_failed(delivery.id, "hit no longer exists", None, None)
                failed += 1
                continue
            now = self.clock()
            timestamp = int(now.timestamp())
            body = self._body(delivery, sub, hits, now)
            headers = {
                "content-type": "application/json",
                "webhook-id": delivery.webhook_id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": sign(sub.secrets, delivery.webhook_id, timestamp, body),
            }
            started = time.monotonic()
            try:
                status = self.post(sub.url, body, headers)
            except DeliveryError as e:
                seconds.append(time.monotonic() - started)
                stalled.add(sub.id)
                attempts = delivery.attempts + 1
                if e.status == 410:
                    self.storage.disable_subscription(
                        sub.id, f"receiver answered 410 Gone at {now.isoformat(timespec='seconds')}"
                    )
                    when = None
                else:
                    when = next_attempt_at(
                        now,
                        attempts,
                        self.max_attempts,
                        e.retry_after,
                        self.rng,
                        delivery.created_at,
                        self.retry_span_s,
                    )
                self.storage.mark_attempt_failed(delivery.id, str(e), e.status, when)
                if when is None:
                    failed += 1
                    log.warning(
                        "delivery %s to %s failed for good after %d attempts: %s",
                        delivery.webhook_id,
                        _host(sub.url),
                        attempts,
                        e,
                    )
                else:
                    retried += 1
                    log.info(
                        "delivery %s to %s failed (%s); retry at %s",
                        delivery.webhook_id,
                        _host(sub.url),
                        e,
                        when.isoformat(timespec="seconds"),
                    )
                continue
            seconds.append(time.monotonic() - started)
            self.storage.mark_delivered(delivery.id, self.clock(), status)
            delivered += 1
            log.info(
                "delivered %s (%s) to %s: HTTP %d",
                delivery.webhook_id,
                f"hit {hits[0].id}" if delivery.hit_id else f"digest, {len(hits)} hits",
                _host(sub.url),
                status,
            )
        return DeliveryTickReport(delivered, retried, failed, post_seconds=tuple(seconds))


def delivery_period(delivery: DeliveryRecord) -> str:
    return delivery.digest_period or ""
