"""The errors a prediction request can get, each with its HTTP status.

They extend :class:`~gyre.errors.GyreError`, so every one leaves as
``{"error": code, "message": text}``; input errors add ``fields`` (field -> what is wrong
with it) and an unknown entity adds ``entity`` (its keys).
"""

from __future__ import annotations

from typing import Any

from gyre.errors import BackendUnavailable, GyreError, InvalidArgument, NotFound


class MalformedRequest(InvalidArgument):
    """The body is not JSON, or not shaped like the protocol's request (HTTP 400)."""


class UnsupportedMediaType(InvalidArgument):
    """A content type the route does not read (HTTP 415)."""

    status_code = 415
    code = "unsupported_media_type"


class RequestTooLarge(InvalidArgument):
    """A body over the size limit, or more rows than one request may carry (HTTP 413)."""

    status_code = 413
    code = "request_too_large"


class MethodNotAllowed(InvalidArgument):
    """The route exists, but not for this method (HTTP 405)."""

    status_code = 405
    code = "method_not_allowed"


class InvalidInput(InvalidArgument):
    """Rows that do not meet the model's signature (HTTP 422), with a message per field."""

    status_code = 422
    code = "invalid_input"

    def __init__(self, message: str, fields: dict[str, str]) -> None:
        super().__init__(message)
        self.fields = fields

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "fields": self.fields}


class UnknownEntity(NotFound):
    """The online store has nothing for an entity of a request to an endpoint whose
    ``unknown_entity`` policy is ``"error"`` (HTTP 404)."""

    code = "unknown_entity"

    def __init__(self, message: str, entity: dict[str, Any]) -> None:
        super().__init__(message)
        self.entity = entity

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "entity": self.entity}


class EndpointNotReady(BackendUnavailable):
    """The endpoint is declared but its model (or features) could not be loaded (HTTP 503)."""

    code = "endpoint_not_ready"


class PredictionFailed(GyreError):
    """The model (or the feature lookup, or the prediction log) raised (HTTP 500)."""

    code = "prediction_failed"
