"""Gyre's errors: one base class, a shallow tree, one HTTP status per class.

Every message says what was wrong and what to do about it. The CLI prints the
message alone (no traceback unless ``--debug``); the API answers with the
status and the message as JSON.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class GyreError(Exception):
    """Base class of every error Gyre raises on purpose."""

    status_code = 500
    code = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, str]:
        return {"error": self.code, "message": self.message}


class InvalidArgument(GyreError, ValueError):
    """A value the caller passed is malformed or out of range (HTTP 400)."""

    status_code = 400
    code = "invalid_argument"


class ConfigError(InvalidArgument):
    """``gyre.toml`` or a ``GYRE_*`` variable holds something Gyre cannot use."""

    code = "config_error"


class NotFound(GyreError, LookupError):
    """The named thing does not exist (HTTP 404)."""

    status_code = 404
    code = "not_found"


class AlreadyExists(GyreError):
    """The thing being created exists already (HTTP 409)."""

    status_code = 409
    code = "already_exists"


class Conflict(GyreError):
    """The request clashes with the current state, e.g. logging to a finished run (HTTP 409)."""

    status_code = 409
    code = "conflict"


class Unauthorized(GyreError):
    """Missing or wrong credentials (HTTP 401)."""

    status_code = 401
    code = "unauthorized"


class Forbidden(GyreError):
    """Valid credentials whose role does not allow this (HTTP 403)."""

    status_code = 403
    code = "forbidden"


class RateLimited(GyreError):
    """Too many requests for this key's rate limit (HTTP 429); ``retry_after`` in seconds."""

    status_code = 429
    code = "rate_limited"

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class CorruptArtifact(GyreError):
    """Stored bytes no longer match their digest (HTTP 500)."""

    status_code = 500
    code = "corrupt_artifact"


class BackendUnavailable(GyreError):
    """A backend (database, object store, server) cannot be reached (HTTP 503)."""

    status_code = 503
    code = "backend_unavailable"


class SchemaOutdated(BackendUnavailable):
    """The metadata database is at an older schema revision than this Gyre."""

    code = "schema_outdated"


ERRORS_BY_CODE: dict[str, type[GyreError]] = {
    cls.code: cls
    for cls in (
        GyreError,
        InvalidArgument,
        ConfigError,
        NotFound,
        AlreadyExists,
        Conflict,
        Unauthorized,
        Forbidden,
        RateLimited,
        CorruptArtifact,
        BackendUnavailable,
        SchemaOutdated,
    )
}


def did_you_mean(value: str, options: Iterable[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for the nearest option, or an empty string."""
    close = difflib.get_close_matches(value, list(options), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""
