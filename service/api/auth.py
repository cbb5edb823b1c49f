"""Bearer-token checks for the API: reads need the token when one is set; writes always."""

from __future__ import annotations

import hmac
from collections.abc import Callable

from fastapi import HTTPException, Request


def _given(request: Request) -> str:
    header = request.headers.get("authorization", "")
    return header[len("Bearer ") :].strip() if header.startswith("Bearer ") else ""


def token_checks(api_token: str) -> tuple[Callable[[Request], None], Callable[[Request], None]]:
    """(read check, write check) FastAPI dependencies for one configured token.

    Without a token set, reads are open and writes are refused with 403, so an API that
    nobody protected cannot be used to add feeds or webhooks. Tokens are compared in
    constant time and never echoed.
    """

    def check(request: Request) -> None:
        if not hmac.compare_digest(_given(request).encode(), api_token.encode()):
            raise HTTPException(
                401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"}
            )

    def read(request: Request) -> None:
        if api_token:
            check(request)

    def write(request: Request) -> None:
        if not api_token:
            raise HTTPException(
                403,
                "writes are disabled: start the service with "
                "DW_API_TOKEN set and send Authorization: Bearer TOKEN",
            )
        check(request)

    return read, write
