"""Authentication, roles and rate limits for every route of the server, as one ASGI middleware.

A request presents ``Authorization: Bearer <credential>`` (or ``X-API-Key: <credential>``):
either an API key (``gyre keys create``), checked against its role and its rate limit, or the
server's shared ``[server] token``, which acts as an admin key. Which permission a route
needs is one table, :data:`PERMISSIONS`, so no route can be forgotten: anything not matched
needs ``admin``.
"""

from __future__ import annotations

import hmac
import math
import re
from typing import TYPE_CHECKING

from gyre.api.keys import ROLES, KeyCache, KeyInfo, TokenBuckets
from gyre.errors import Forbidden, GyreError, RateLimited, Unauthorized

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

    from gyre.meta import MetaStore

OPEN_PATHS = frozenset({"/healthz", "/readyz", "/v2/health/live", "/v2/health/ready"})
_READS = frozenset({"GET", "HEAD", "OPTIONS"})
_ALL = frozenset({"GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"})

# (methods, path pattern, permissions any one of which is enough), first match wins.
PERMISSIONS: list[tuple[frozenset[str], re.Pattern[str], frozenset[str]]] = [
    (_ALL, re.compile(r"^/api/v1/keys(/|$)"), frozenset({"admin"})),
    (frozenset({"POST"}), re.compile(r"^/v1/endpoints/[^/]+/(predict|invocations)$"), frozenset({"predict"})),
    (frozenset({"POST"}), re.compile(r"^/v2/models/[^/]+(/versions/[^/]+)?/infer$"), frozenset({"predict"})),
    (_READS, re.compile(r"^/v2/"), frozenset({"predict", "read"})),
    (frozenset({"POST"}), re.compile(r"^/v1/feedback$"), frozenset({"predict", "write"})),
    (frozenset({"POST"}), re.compile(r"^/v1/datasets/[^/]+/records$"), frozenset({"ingest"})),
    (_ALL - _READS, re.compile(r"^/api/v1/(models/[^/]+/aliases|deployments)(/|$)"), frozenset({"deploy"})),
    (_ALL - _READS, re.compile(r"^/api/v1/"), frozenset({"write"})),
    (_READS, re.compile(r"^/"), frozenset({"read"})),
]

_MAX_ROUTES = 4096

ADMIN = KeyInfo("token", "server token", "admin", None, None, None, "", None)  # type: ignore[arg-type]


def required(method: str, path: str) -> frozenset[str]:
    """The permissions of which a request needs one."""
    for methods, pattern, needs in PERMISSIONS:
        if method in methods and pattern.match(path):
            return needs
    return frozenset({"admin"})


class Auth:
    """Every path but the health probes needs a credential whose role allows it.

    Args:
        token: the shared server token (acts as an admin key), or None.
        meta: where API keys are looked up (every request costs a dict lookup and a SHA-256;
            rows are cached for a few seconds, so a revocation takes that long to apply).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        token: str | None,
        meta: MetaStore,
        keys: KeyCache | None = None,
        buckets: TokenBuckets | None = None,
    ) -> None:
        self.app = app
        self._token = token.encode() if token else None
        self._keys = keys or KeyCache(meta)
        self._buckets = buckets or TokenBuckets()  # share them for one rate limit across apps
        self._needs: dict[tuple[str, str], frozenset[str]] = {}  # required(), per method and path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        try:
            key = self._check(scope)
        except GyreError as err:
            from gyre.api.app import _send_error

            headers = [(b"www-authenticate", b"Bearer")] if isinstance(err, Unauthorized) else []
            if isinstance(err, RateLimited):
                headers.append((b"retry-after", str(max(1, math.ceil(err.retry_after))).encode()))
            await _send_error(send, err, headers)
            return
        scope.setdefault("state", {})["api_key"] = key
        await self.app(scope, receive, send)

    def _check(self, scope: Scope) -> KeyInfo:
        presented = b""
        for name, value in scope["headers"]:
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                presented = value[7:].strip()
            elif name == b"x-api-key":
                presented = value.strip()
        if not presented:
            raise Unauthorized(
                "This Gyre server needs credentials: send 'Authorization: Bearer <API key>' "
                "(create one with 'gyre keys create'), or set GYRE_SERVER_TOKEN for the SDK."
            )
        if self._token is not None and hmac.compare_digest(presented, self._token):
            return ADMIN
        if not presented.startswith(b"gyre_"):
            raise Unauthorized(
                "Wrong bearer token; use the server's token or an API key from 'gyre keys create'."
            )
        key = self._keys.authenticate(presented.decode(errors="replace"))
        route = (scope["method"], scope["path"])
        needs = self._needs.get(route)
        if needs is None:
            if len(self._needs) >= _MAX_ROUTES:  # paths come from clients: keep it bounded
                self._needs.clear()
            needs = self._needs[route] = required(*route)
        if not ROLES[key.role] & needs:
            allowed = sorted(r for r, perms in ROLES.items() if perms & needs)
            raise Forbidden(
                f"API key {key.id} ({key.name}) has role '{key.role}', which may not "
                f"{scope['method']} {scope['path']}; roles that may: {', '.join(allowed)}."
            )
        wait = self._buckets.take(key)
        if wait > 0:
            raise RateLimited(
                f"API key {key.id} ({key.name}) is over its rate limit of {key.rate_per_s:g} requests/s; "
                f"retry in {wait:.2f} s.",
                retry_after=wait,
            )
        return key
