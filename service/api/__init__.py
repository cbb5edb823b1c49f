"""HTTP API: FastAPI app factory, routes and dashboard."""

from service.api.app import create_app

__all__ = ["create_app"]
