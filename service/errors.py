"""The exception tree of detainer-watch.

Only user and environment errors are wrapped; bugs crash as they are. Errors from
httpx, SQLAlchemy and feedparser are translated at the edge (``raise X(...) from e``)
and never leak past the module that calls them::

    DetainerWatchError
    ├── ConfigError          bad config or rules file: names file, key and the fix
    ├── FetchError           a feed could not be fetched (network, HTTP status, size)
    │   └── BodyTooLarge     the body passed the configured maximum
    ├── ParseError           a feed document could not be parsed at all
    ├── StorageError         the database is unreachable or refused a statement
    ├── QueryError           a hit query a user wrote is invalid (search syntax, cursor)
    └── DeliveryError        a webhook could not be delivered (network, HTTP status)
"""

from __future__ import annotations


class DetainerWatchError(Exception):
    """Base of every error this service raises on purpose."""


class ConfigError(DetainerWatchError):
    """A configuration or rules file is invalid.

    ``str(err)`` is one line a user can act on: ``FILE: KEY: what is wrong; what to do``.
    """

    def __init__(self, file: str, key: str, problem: str, fix: str = "") -> None:
        self.file = file
        self.key = key
        self.problem = problem
        self.fix = fix
        msg = f"{file}: {key}: {problem}" if key else f"{file}: {problem}"
        if fix:
            msg += f"; {fix}"
        super().__init__(msg)


class FetchError(DetainerWatchError):
    """A feed could not be fetched. ``status`` is the HTTP status when there was one."""

    def __init__(self, message: str, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class BodyTooLarge(FetchError):
    """The response body passed the configured maximum size."""


class ParseError(DetainerWatchError):
    """A feed document yielded nothing usable."""


class StorageError(DetainerWatchError):
    """The database could not be reached or refused a statement."""


class StorageValueError(StorageError):
    """The database refused a value it was given (PostgreSQL: text holding a NUL
    character): the input's fault, where a plain ``StorageError`` is the database's."""


class QueryError(DetainerWatchError):
    """A hit query is invalid. ``param`` names the parameter (``q``, ``cursor``, ...)."""

    def __init__(self, param: str, message: str) -> None:
        self.param = param
        super().__init__(f"{param}: {message}")


class DeliveryError(DetainerWatchError):
    """A webhook delivery attempt failed. ``retry_after`` is seconds the receiver asked for."""

    def __init__(
        self, message: str, status: int | None = None, retry_after: float | None = None
    ) -> None:
        self.status = status
        self.retry_after = retry_after
        super().__init__(message)
