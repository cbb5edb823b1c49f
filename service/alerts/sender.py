"""Send due webhook deliveries from the outbox [I/O].

Ordering for crash safety: a delivery is leased, POSTed, then marked. A crash between the
POST and the mark leaves the lease to expire and the same delivery (same ``webhook-id``) is
sent again: at least once, never lost, never under two ids. This module does not decide
retry times (``alerts.retry``) or who gets what (``alerts.routing``).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import httpx

from service.alerts.payload import render, sign
from service.alerts.retry import next_attempt_at
from service.errors import DeliveryError
from service.fetch import parse_retry_after
from service.storage import Storage, hit_payload

log = logging.getLogger(__name__)

# Receivers' error bodies are logged for diagnosis, cut to this many characters.
MAX_ERROR_BODY = 200


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


class WebhookSender:
    def __init__(
        self,
        storage: Storage,
        client: httpx.Client,
        max_attempts: int,
        clock: Callable[[], datetime],
        rng: random.Random,
    ) -> None:
        self.storage = storage
        self.client = client
        self.max_attempts = max_attempts
        self.clock = clock
        self.rng = rng

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        """POST once; return the 2xx status or raise DeliveryError."""
        try:
            resp = self.client.post(url, content=body, headers=headers)
        except httpx.HTTPError as e:
            raise DeliveryError(f"{type(e).__name__}: {e}") from e
        if 200 <= resp.status_code < 300:
            return resp.status_code
        raise DeliveryError(
            f"HTTP {resp.status_code}: {resp.text[:MAX_ERROR_BODY]}",
            status=resp.status_code,
            retry_after=parse_retry_after(resp.headers.get("retry-after"), self.clock()),
        )

    def tick(self, limit: int = 20) -> DeliveryTickReport:
        """Send what is due now. One receiver's failure never stops the others."""
        delivered = retried = failed = 0
        for delivery, sub, hit in self.storage.claim_deliveries(self.clock(), limit):
            now = self.clock()
            timestamp = int(now.timestamp())
            body = render(sub.format, hit_payload(hit), now)
            headers = {
                "content-type": "application/json",
                "webhook-id": delivery.webhook_id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": sign([sub.secret], delivery.webhook_id, timestamp, body),
            }
            try:
                status = self.post(sub.url, body, headers)
            except DeliveryError as e:
                attempts = delivery.attempts + 1
                if e.status == 410:
                    self.storage.disable_subscription(
                        sub.id, f"receiver answered 410 Gone at {now.isoformat()}"
                    )
                    when = None
                else:
                    when = next_attempt_at(
                        now, attempts, self.max_attempts, e.retry_after, self.rng
                    )
                self.storage.mark_attempt_failed(delivery.id, str(e), e.status, when)
                if when is None:
                    failed += 1
                    log.warning(
                        "delivery %s (hit %s) to %s failed for good after %d attempts: %s",
                        delivery.webhook_id,
                        hit.id,
                        sub.url,
                        attempts,
                        e,
                    )
                else:
                    retried += 1
                    log.info(
                        "delivery %s (hit %s) to %s failed (%s); retry at %s",
                        delivery.webhook_id,
                        hit.id,
                        sub.url,
                        e,
                        when.isoformat(),
                    )
                continue
            self.storage.mark_delivered(delivery.id, self.clock(), status)
            delivered += 1
            log.info(
                "delivered %s (hit %s) to %s: HTTP %d", delivery.webhook_id, hit.id, sub.url, status
            )
        return DeliveryTickReport(delivered, retried, failed)
