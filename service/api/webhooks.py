"""Routes for webhook subscriptions and deliveries (reads and writes through Storage)."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, HTTPException, Query, Request

from service.addresses import Resolver, private_address_reason, system_resolver
from service.alerts.subscription import parse_webhook
from service.api.hits import MAX_ID, RowId
from service.errors import ConfigError
from service.storage import Storage
from service.types import DeliveryRecord, Subscription

MAX_PAGE = 500


def _iso(d: datetime | None) -> str | None:
    return None if d is None else d.astimezone(UTC).isoformat().replace("+00:00", "Z")


def subscription_payload(s: Subscription) -> dict[str, Any]:
    """A subscription as the API shows it: never its secret."""
    return {
        "id": s.id,
        "url": s.url,
        "name": s.name,
        "format": s.format,
        "origin": s.origin,
        "enabled": s.enabled,
        "disabled_reason": s.disabled_reason,
        "min_score": s.min_score,
        "topics": list(s.topics),
        "events": list(s.events),
        "states": list(s.states),
        "jurisdictions": list(s.jurisdictions),
        "feeds": list(s.feeds),
        "digest": s.digest,
        "digest_hour": s.digest_hour,
        "digest_timezone": s.digest_timezone,
        "secrets": len(s.secrets),
    }


def delivery_payload(d: DeliveryRecord) -> dict[str, Any]:
    return {
        "id": d.id,
        "hit_id": d.hit_id,
        "subscription_id": d.subscription_id,
        "webhook_id": d.webhook_id,
        "type": d.event_type,
        "status": d.status,
        "attempts": d.attempts,
        "next_attempt_at": _iso(d.next_attempt_at),
        "last_http_status": d.last_http_status,
        "last_error": d.last_error,
        "created_at": _iso(d.created_at),
        "delivered_at": _iso(d.delivered_at),
        "digest_period": d.digest_period,
        "digest_hit_ids": list(d.digest_hit_ids),
    }


def add_webhook_routes(
    app: FastAPI,
    storage: Storage,
    read: Callable[[Request], None],
    write: Callable[[Request], None],
    allow_private: bool,
    clock: Callable[[], datetime],
    resolve: Resolver = system_resolver,
) -> None:
    reads, writes = [Depends(read)], [Depends(write)]

    @app.get("/api/v1/webhooks", dependencies=reads)
    def list_webhooks() -> dict[str, Any]:
        return {"items": [subscription_payload(s) for s in storage.list_subscriptions()]}

    @app.post("/api/v1/webhooks", dependencies=writes, status_code=201)
    def add_webhook(body: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
        try:
            hook = parse_webhook(body, "request body", "webhook", os.environ, allow_private)
        except ConfigError as e:
            raise HTTPException(
                422, f"{e.key}: {e.problem}" + (f"; {e.fix}" if e.fix else "")
            ) from e
        if not allow_private:
            # Names are resolved here too, so a public-looking name for an inside address is
            # refused. A name that does not resolve yet is accepted: delivery retries it.
            reason = private_address_reason(hook.url, resolve)
            if reason and "does not resolve" not in reason:
                raise HTTPException(
                    422,
                    f"webhook.url: refused: {reason} (set [network] "
                    "allow_private_addresses = true to allow it)",
                )
        sub = storage.add_subscription(hook, clock())
        if sub is None:
            raise HTTPException(409, f"{hook.url} already has a subscription")
        return subscription_payload(sub)

    @app.delete("/api/v1/webhooks/{sub_id}", dependencies=writes, status_code=204)
    def delete_webhook(sub_id: RowId) -> None:
        if not storage.delete_subscription(sub_id):
            raise HTTPException(404, f"no webhook {sub_id}")

    @app.post("/api/v1/webhooks/{sub_id}/enable", dependencies=writes)
    def enable_webhook(sub_id: RowId) -> dict[str, Any]:
        sub = storage.enable_subscription(sub_id)
        if sub is None:
            raise HTTPException(404, f"no webhook {sub_id}")
        return subscription_payload(sub)

    @app.get("/api/v1/deliveries", dependencies=reads)
    def list_deliveries(
        status: str | None = None,
        hit_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    ) -> dict[str, Any]:
        if status not in (None, "pending", "delivered", "failed", "skipped"):
            raise HTTPException(422, "status: use pending, delivered, failed or skipped")
        return {
            "items": [delivery_payload(d) for d in storage.list_deliveries(status, limit, hit_id)]
        }

    @app.post("/api/v1/deliveries/{delivery_id}/retry", dependencies=writes)
    def retry_delivery(delivery_id: RowId) -> dict[str, Any]:
        d = storage.retry_delivery(delivery_id, clock())
        if d is None:
            raise HTTPException(404, f"no delivery {delivery_id}")
        return delivery_payload(d)

    @app.post("/api/v1/hits/{hit_id}/redeliver", dependencies=writes)
    def redeliver(hit_id: RowId) -> dict[str, Any]:
        out = storage.redeliver_hit(hit_id, clock())
        if out is None:
            raise HTTPException(404, f"no hit {hit_id}")
        return {"items": [delivery_payload(d) for d in out]}
