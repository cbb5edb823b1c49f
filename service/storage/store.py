"""The one storage class: every SQL statement of the service lives behind its methods.

``Storage`` takes and returns records from ``service.types``; no ``Session`` leaves the
storage package. It is split by domain (feeds, articles and stories, hits, deliveries) into
classes that share one engine and are combined here. It does not decide anything (what is
new, when next, whom to alert): callers pass decisions in, and the one piece of policy it
applies inside a transaction (which subscriptions want a hit) is the pure
``service.alerts.routing.wants``.
"""

from __future__ import annotations

from service.storage.deliveries import DeliveryStore
from service.storage.hits import hit_payload
from service.storage.rematch import RematchStore

__all__ = ["Storage", "hit_payload"]


class Storage(RematchStore, DeliveryStore):
    """Reads and writes feeds, articles, stories, hits, subscriptions and deliveries."""
