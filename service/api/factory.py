"""The app factory uvicorn calls in each of its worker processes (``detainer-watch api``).

``uvicorn --workers N`` starts N processes that each import the app by name, so the app
cannot be handed over as an object: each process builds its own from the config named by
``DW_CONFIG`` (the ``api`` command sets it). The API process never migrates the schema (the
workers or ``detainer-watch migrate`` do) but refuses a schema newer than it knows.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

from fastapi import FastAPI

from service.api.app import create_app
from service.config import load_config
from service.heap import freeze_startup_heap, limit_malloc_arenas
from service.storage import Storage, check_schema, engine_for


def create_app_from_env() -> FastAPI:
    """Build the API from ``DW_CONFIG`` (default config file when unset)."""
    limit_malloc_arenas()  # before the server's threads (sync endpoints run in a pool)
    cfg = load_config(os.environ.get("DW_CONFIG"))
    engine = engine_for(cfg)
    check_schema(engine)
    storage = Storage(engine)
    app = create_app(
        storage,
        str(cfg["api.token"]),
        lambda: True,  # the scheduler runs in the worker processes, not here
        allow_private_addresses=bool(cfg["network.allow_private_addresses"]),
        clock=lambda: datetime.now(UTC),
    )
    freeze_startup_heap()
    return app
