"""The HTTP API (FastAPI app factory). Routes read and write only through ``Storage``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from service import __version__
from service.addresses import Resolver, system_resolver
from service.api.auth import token_checks
from service.api.dashboard import add_dashboard_routes
from service.api.feeds import add_feed_routes
from service.api.hits import add_hit_routes
from service.api.metrics import add_metrics_route
from service.api.webhooks import add_webhook_routes
from service.errors import StorageError, StorageValueError
from service.metrics import ServiceMetrics
from service.storage import Storage

# Seconds a client is asked to wait after a 503 for a failing database (a restart or a
# failover takes about that long).
STORAGE_RETRY_AFTER_S = 5


def create_app(
    storage: Storage,
    api_token: str = "",
    scheduler_alive: Callable[[], bool] = lambda: True,
    *,
    allow_private_addresses: bool = False,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    metrics: ServiceMetrics | None = None,
    resolve: Resolver = system_resolver,
) -> FastAPI:
    """Build the app around a storage. ``api_token`` guards /api/* when set; ``metrics``
    holds the in-process counters /metrics shows beside the database counts; ``resolve``
    looks up the host names of feeds and webhooks added through the API (tests give a
    table, so that no test asks the machine's resolver)."""
    app = FastAPI(
        title="detainer-watch",
        version=__version__,
        description="Detainer and sanctuary-policy news hits.",
    )

    require_token, require_write = token_checks(api_token)

    # Starlette's class, which FastAPI's subclasses: the router's own 404 (no such path) and
    # 405 (a path without that method) come in the same {"error": ...} shape as ours, not
    # as {"detail": ...}.
    @app.exception_handler(HTTPException)
    async def _json_error(_request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        """422 in our ``{"error": ...}`` shape, naming each invalid parameter."""
        problems = [
            f"{e['loc'][-1] if e.get('loc') else 'request'}: {e.get('msg', 'invalid')}"
            for e in exc.errors()
        ]
        return JSONResponse(
            {"error": "; ".join(problems), "errors": jsonable_encoder(exc.errors())},
            status_code=422,
        )

    @app.exception_handler(StorageValueError)
    async def _refused(_request: Request, exc: StorageValueError) -> JSONResponse:
        """A value in the request the database will not hold (a NUL character on
        PostgreSQL, an id past its integer range): the request's fault."""
        return JSONResponse({"error": f"{exc}; change that value in the request"}, 400)

    @app.exception_handler(UnicodeEncodeError)
    async def _not_unicode(_request: Request, exc: UnicodeEncodeError) -> JSONResponse:
        """JSON may escape a lone UTF-16 surrogate ("\\ud800"), which no database stores:
        the request's fault, like any other value it cannot hold."""
        return JSONResponse(
            {
                "error": f"the request holds text that is not valid Unicode ({exc.reason}: "
                f"{exc.object[exc.start : exc.end]!r}); send it as UTF-8 text"
            },
            status_code=422,
        )

    @app.exception_handler(StorageError)
    async def _unavailable(_request: Request, exc: StorageError) -> JSONResponse:
        """The database is down or failing: say so, and when to try again."""
        return JSONResponse(
            {"error": f"{exc}; the database is unavailable, try again shortly"},
            status_code=503,
            headers={"Retry-After": str(STORAGE_RETRY_AFTER_S)},
        )

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        db, sched = storage.ping(), scheduler_alive()
        ok = db and sched
        return JSONResponse(
            {"status": "ok" if ok else "unavailable", "database": db, "scheduler": sched},
            status_code=200 if ok else 503,
        )

    add_hit_routes(app, storage, require_token)
    add_metrics_route(app, storage, metrics)
    add_dashboard_routes(app, storage, api_token)

    add_webhook_routes(
        app, storage, require_token, require_write, allow_private_addresses, clock, resolve
    )
    add_feed_routes(
        app, storage, require_token, require_write, allow_private_addresses, clock, resolve
    )
    return app
