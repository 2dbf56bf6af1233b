"""The control-plane ASGI app: routes under ``/api/v1``, health probes, auth, limits, errors.

Every error leaves as ``{"error": code, "message": text}`` with the status of its
:class:`~gyre.errors.GyreError` class, so the HTTP client can raise the same class with the
same message the local SDK would have raised.
"""

from __future__ import annotations

import gc
import json
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, cast

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gyre.api.auth import Auth
from gyre.api.keys import KeyCache, TokenBuckets
from gyre.config import Settings
from gyre.errors import ERRORS_BY_CODE, GyreError, InvalidArgument
from gyre.meta import MetaStore
from gyre.store import ArtifactStore

API_PREFIX = "/api/v1"
DEFAULT_MAX_BLOB_SIZE = 5 << 30  # 5 GiB: room for large model packages
DEFAULT_MAX_BODY_SIZE = 64 << 20  # every other request body (JSON)

log = logging.getLogger(__name__)


class PayloadTooLarge(InvalidArgument):
    """A request body over the server's limit (HTTP 413; the client sees InvalidArgument)."""

    status_code = 413


class GyreApp(FastAPI):
    """FastAPI, with the prediction routes answered before its middleware stack.

    A prediction passes Gyre's own authentication and body limit, then
    :class:`~gyre.serving.http.ServingRoutes`, which answers its errors as JSON itself; it
    skips FastAPI's error, telemetry and body-limit layers (measured: 17 us of a 170 us
    single-row prediction). Every other request takes the whole stack.
    """

    front: Any = None  # the prediction routes behind auth and the body limit
    front_takes: Callable[[str], bool] | None = None  # which paths go to ``front``

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        takes = self.front_takes
        if takes is not None and scope["type"] == "http" and takes(scope["path"]):
            await self.front(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(
    settings: Settings,
    *,
    token: str | None = None,
    max_blob_size: int = DEFAULT_MAX_BLOB_SIZE,
    max_body_size: int = DEFAULT_MAX_BODY_SIZE,
    auth: bool | None = None,
    flush_process: bool = False,
    freeze_gc: bool = False,
) -> FastAPI:
    """Build the API over the metadata and artifact stores named in ``settings``.

    Args:
        settings: where the metadata database and the artifact store are.
        token: the shared server token; it acts as an admin API key.
        auth: require credentials (the token or an API key, see :mod:`gyre.api.auth`) on every
            route but the health probes; default: when a token is set.
        max_blob_size: the largest ``PUT /api/v1/blobs`` body, in bytes.
        max_body_size: the largest body of any other request, in bytes.
        flush_process: commit pushed records and the prediction log from a process of its own
            (``gyre serve`` does), so the request loop keeps the GIL; default: a thread.
        freeze_gc: once started, exempt what start-up made from the garbage collector's full
            passes (``gc.freeze``), for a process that runs this app alone (``gyre serve`` does).
    """
    from gyre.api.routes import blobs, datasets, experiments, feedback, metrics, models, runs
    from gyre.data.lake import Lake
    from gyre.data.push import PushBuffer
    from gyre.deploy.rollout import traffic
    from gyre.features.store import FeatureStore
    from gyre.project import project_definitions
    from gyre.serving.http import ServingRoutes, takes
    from gyre.serving.service import Serving

    meta = MetaStore(settings.metadata_url, actor="api")
    store = ArtifactStore(settings.store_url)
    lake = Lake(settings.store_url)
    push = PushBuffer(settings.root / ".gyre" / "push", meta, lake)
    # On-demand features run the project's own functions, so serving needs its definitions.
    features = FeatureStore(meta, lake, settings.online_url, lambda: project_definitions(settings))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            await run_in_threadpool(app.state.check_ready)
        except Exception as exc:  # the server still starts; /readyz answers 503 and says why
            log.warning("The metadata store is not ready: %s", exc)
        # Commit what a previous process acknowledged but had not committed, then keep flushing.
        await run_in_threadpool(lambda: push.start(separate_process=flush_process))
        # Every registered endpoint's model loads before the first request is taken; then the
        # server follows new endpoints, alias moves and deployments on its own.
        await run_in_threadpool(serving.load)
        serving.start()
        if freeze_gc:
            # What start-up made (libraries, models: ~230k objects) lives as long as the server;
            # frozen, the collector's full passes skip it (measured: 123 ms with every request
            # stalled, against well under a millisecond).
            gc.freeze()
        yield
        serving.close()
        await run_in_threadpool(push.close)
        features.close()
        meta.close()

    app = GyreApp(
        title="Gyre control plane",
        version=_version(),
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.meta = meta
    app.state.store = store
    app.state.push = push
    app.state.metrics = metrics.metrics_registry(features)
    app.state.ready = False
    serving = Serving(
        meta,
        store,
        features,
        push,
        cache_dir=settings.root / ".gyre" / "cache" / "models",
        registry=app.state.metrics,
        traffic=lambda: traffic(meta),
    )
    app.state.serving = serving

    def check_ready() -> None:
        meta.ensure_schema()
        app.state.ready = True

    app.state.check_ready = check_ready

    api = APIRouter(prefix=API_PREFIX)
    for module in (experiments, runs, models, blobs):
        api.include_router(module.router)
    app.include_router(api)
    app.include_router(datasets.router)
    app.include_router(feedback.router)
    app.include_router(metrics.router)
    app.add_api_route("/healthz", healthz, methods=["GET"], include_in_schema=False)
    app.add_api_route("/readyz", readyz, methods=["GET"], include_in_schema=False)

    app.add_exception_handler(GyreError, _gyre_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)

    # Auth answers before any body is read; the prediction routes (plain ASGI, no router scan)
    # see a request after auth and the body limit, in front of FastAPI's stack (see GyreApp).
    # Paths they do not take go on to the whole stack.
    async def whole_stack(scope: Scope, receive: Receive, send: Send) -> None:
        await FastAPI.__call__(app, scope, receive, send)

    routes = ServingRoutes(
        whole_stack, serving, max_body_size=max_body_size, is_ready=lambda: app.state.ready
    )
    app.front = BodyLimit(cast(ASGIApp, routes), max_blob_size=max_blob_size, max_body_size=max_body_size)
    app.front_takes = takes
    # The last added middleware runs first.
    app.add_middleware(BodyLimit, max_blob_size=max_blob_size, max_body_size=max_body_size)
    if auth if auth is not None else bool(token):
        keys, buckets = KeyCache(meta), TokenBuckets()  # one rate limit per key across both paths
        app.front = Auth(app.front, token=token, meta=meta, keys=keys, buckets=buckets)
        app.add_middleware(Auth, token=token, meta=meta, keys=keys, buckets=buckets)
    return app


async def healthz() -> JSONResponse:
    """Liveness: the process answers."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    """Readiness: the metadata store is reachable and at this Gyre's schema revision, and every
    registered endpoint's model is loaded."""
    state = request.app.state
    if not state.ready:
        try:
            await run_in_threadpool(state.check_ready)
        except GyreError as exc:
            return JSONResponse(exc.to_dict(), status_code=503)
        except Exception as exc:
            message = (
                f"The metadata store is not ready: {type(exc).__name__}; the server log has the details."
            )
            log.warning("Readiness check failed: %s", exc)
            return JSONResponse({"error": "backend_unavailable", "message": message}, status_code=503)
    serving = state.serving.readiness()
    if not serving.ready:
        body = {"error": "endpoint_not_ready", "message": serving.message(), "endpoints": serving.problems}
        return JSONResponse(body, status_code=503)
    return JSONResponse({"status": "ready"})


# -- errors ------------------------------------------------------------------------------


async def _gyre_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, GyreError)
    if exc.status_code >= 500:
        log.error("%s %s failed: %s", request.method, request.url.path, exc.message)
    return JSONResponse(exc.to_dict(), status_code=exc.status_code)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()))
        problems.append(f"{where}: {err.get('msg', 'invalid')}" if where else err.get("msg", "invalid"))
    message = "Invalid request: " + "; ".join(problems) + "."
    return JSONResponse({"error": InvalidArgument.code, "message": message}, status_code=400)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = next((c for c, cls in ERRORS_BY_CODE.items() if cls.status_code == exc.status_code), None)
    if code is None:
        code = InvalidArgument.code if exc.status_code < 500 else GyreError.code
    message = str(exc.detail)
    if exc.status_code == 404:
        message = f"No route {request.method} {request.url.path}; see {API_PREFIX}/docs for the API."
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}."
    return JSONResponse({"error": code, "message": message}, status_code=exc.status_code, headers=exc.headers)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    # Starlette re-raises after this answer, so uvicorn logs the traceback.
    return JSONResponse(
        {"error": GyreError.code, "message": "Internal server error; the server log has the details."},
        status_code=500,
    )


# -- middleware (plain ASGI: no per-request task or body copy) ------------------------------


class BodyLimit:
    """Refuse request bodies over the limit: ``max_blob_size`` for blob uploads, else ``max_body_size``.

    A declared ``Content-Length`` over the limit is refused before reading; a chunked body
    is counted as it streams in, and reading past the limit raises :class:`PayloadTooLarge`.
    """

    def __init__(self, app: ASGIApp, max_blob_size: int, max_body_size: int) -> None:
        self.app = app
        self.max_blob_size = max_blob_size
        self.max_body_size = max_body_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        is_blob = scope["path"].startswith(f"{API_PREFIX}/blobs")
        limit = self.max_blob_size if is_blob else self.max_body_size
        what = "A blob" if is_blob else "A request body"
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _send_error(send, _too_large(what, int(declared), limit))
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _too_large(what, received, limit)
            return message

        await self.app(scope, counted, send)


def _too_large(what: str, size: int, limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"{what} of {size:,} bytes or more is over this server's limit of {limit:,} bytes; "
        "raise the limit where the server is started, or send less."
    )


async def _send_error(send: Send, err: GyreError, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps(err.to_dict()).encode()
    await send(
        {
            "type": "http.response.start",
            "status": err.status_code,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _version() -> str:
    # Not ``gyre.__version__``: importing the top package counts as importing the SDK (its
    # type-checking imports), which the layer contract forbids the API.
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gyre-ml")
    except PackageNotFoundError:
        return "0+unknown"
