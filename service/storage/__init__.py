"""Storage: the one class that owns the database, its engine factory and migrations."""

from service.storage.engine import (
    check_schema,
    current_revision,
    engine_for,
    head_revision,
    make_engine,
    migrate,
)
from service.storage.store import Storage, hit_payload

__all__ = [
    "Storage",
    "check_schema",
    "current_revision",
    "engine_for",
    "head_revision",
    "hit_payload",
    "make_engine",
    "migrate",
]
