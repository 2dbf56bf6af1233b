"""The prediction routes, as plain ASGI in front of the control-plane app.

:class:`ServingRoutes` takes the paths under ``/v1/endpoints`` and ``/v2`` and passes every
other request on. It is plain ASGI on purpose: a prediction is one dict lookup for its route,
one body read, one JSON parse and one ``send`` of ready bytes, with no per-request router
scan, request object, dependency injection or validation model (see STYLE.md, hot paths).
Sitting inside the server's middleware, it still gets its authentication, roles and body
limit.

Routes:

* ``GET /v1/endpoints``, ``GET /v1/endpoints/{name}``: what is served, and each endpoint's inputs.
* ``POST /v1/endpoints/{name}/predict``: Gyre JSON.
* ``POST /v1/endpoints/{name}/invocations``: MLflow scoring.
* ``GET /v2``, ``/v2/health/live``, ``/v2/health/ready``, ``/v2/models/{name}[/versions/{v}]``,
  ``…/ready``, ``POST …/infer``: Open Inference Protocol v2.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson

from gyre.errors import GyreError, NotFound, did_you_mean
from gyre.serving import protocols
from gyre.serving.batching import Job
from gyre.serving.endpoint import CompiledEndpoint
from gyre.serving.errors import (
    EndpointNotReady,
    MalformedRequest,
    MethodNotAllowed,
    RequestTooLarge,
    UnsupportedMediaType,
)
from gyre.serving.inputs import Prepared
from gyre.serving.routing import Route
from gyre.serving.service import Serving

log = logging.getLogger(__name__)

_JSON = [(b"content-type", b"application/json")]
_JSON_TYPES = frozenset({b"", b"application/json"})
_OIP_TYPES = frozenset({b"", b"application/json", b"application/octet-stream"})


def takes(path: str) -> bool:
    """Whether ``path`` may be a prediction route (under ``/v1/endpoints`` or ``/v2``)."""
    return path.startswith("/v1/endpoints") or (path.startswith("/v2") and (len(path) == 3 or path[3] == "/"))


class ServingRoutes:
    """ASGI middleware serving predictions; everything else goes to ``app``.

    Args:
        app: the rest of the server.
        serving: the loaded endpoints.
        max_body_size: the largest request body, in bytes (413 above it).
        is_ready: whether the server as a whole is ready (``/v2/health/ready``), beyond the
            endpoints; default: always.
    """

    def __init__(
        self,
        app: Any,
        serving: Serving,
        *,
        max_body_size: int,
        is_ready: Callable[[], bool] | None = None,
    ) -> None:
        self.app = app
        self.serving = serving
        self.max_body_size = max_body_size
        self.is_ready = is_ready or (lambda: True)
        self._shadows: set[asyncio.Future[Job]] = set()  # shadow predictions in flight

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if path.startswith("/v1/endpoints"):
                parts = path.split("/")
                if parts[2] == "endpoints":
                    await self._v1(scope, receive, send, parts[3:])
                    return
            elif path.startswith("/v2") and (len(path) == 3 or path[3] == "/"):
                await self._v2(scope, receive, send, path.split("/")[2:])
                return
        await self.app(scope, receive, send)

    # -- Gyre and MLflow routes ------------------------------------------------------------------

    async def _v1(self, scope: dict[str, Any], receive: Any, send: Any, parts: list[str]) -> None:
        method = scope["method"]
        try:
            if len(parts) == 2 and parts[1] in ("predict", "invocations"):
                _method(method, "POST", scope)
                protocol = _gyre if parts[1] == "predict" else _mlflow
                await self._predict(scope, receive, send, parts[0], protocol)
                return
            if not parts or parts == [""]:
                _method(method, "GET", scope)
                listing = {
                    "endpoints": [_describe(r) for r in self.serving.routes.values()],
                    "not_serving": dict(self.serving.failed),
                }
                await _send(send, 200, orjson.dumps(listing))
                return
            if len(parts) == 1 or parts[1:] == [""]:
                _method(method, "GET", scope)
                await _send(send, 200, orjson.dumps(_describe(self._route(parts[0]))))
                return
            raise NotFound(_no_route(scope))
        except GyreError as err:
            await _send(send, err.status_code, _error_body(err, oip=False))

    async def _predict(
        self,
        scope: dict[str, Any],
        receive: Any,
        send: Any,
        name: str,
        protocol: Callable[[CompiledEndpoint, bytes, dict[bytes, bytes]], tuple[Prepared, Any]],
        *,
        oip: bool = False,
        pinned: CompiledEndpoint | None = None,
    ) -> None:
        started = time.perf_counter()
        route = self._route(name) if pinned is None else Route(pinned)
        endpoint = route.primary
        metrics = endpoint.metrics
        batcher = endpoint.batcher
        batcher.arrive()
        submitted = False
        try:
            headers = _headers(scope)
            body = await _read_body(receive, self.max_body_size)
            prepared, shape = protocol(endpoint, body, headers)
            if route.candidate is not None:
                variant = route.pick(prepared)
                if variant is not endpoint:
                    batcher.depart()
                    endpoint, metrics, batcher = variant, variant.metrics, variant.batcher
                    batcher.arrive()
                    if not variant.plan.same_as(route.primary.plan):
                        prepared, shape = protocol(variant, body, headers)
            submitted = True
            job = await batcher.submit(Job(prepared, started))
            if job.error is not None:
                raise job.error
            assert job.outputs is not None and job.ids is not None
            answer = shape(endpoint, job)
            if route.shadow is not None:
                self._shadow(route.shadow, protocol, body, headers, prepared, route.primary, job, started)
        except Exception as exc:
            if not submitted:
                batcher.depart()
            err = _as_gyre_error(exc, f"endpoint '{name}'")
            metrics.error(err.status_code)
            await _send(send, err.status_code, _error_body(err, oip))
            return
        metrics.requests.inc()
        metrics.rows.inc(job.n)
        body_out, extra_headers = answer
        await _send(send, 200, body_out, extra_headers)
        metrics.latency.observe(time.perf_counter() - started)

    def _shadow(
        self,
        shadow: CompiledEndpoint,
        protocol: Callable[[CompiledEndpoint, bytes, dict[bytes, bytes]], tuple[Prepared, Any]],
        body: bytes,
        headers: dict[bytes, bytes],
        prepared: Prepared,
        primary: CompiledEndpoint,
        job: Job,
        started: float,
    ) -> None:
        """Predict on a copy of an answered request with the shadow version, in the background:
        its answers are only logged (``shadow_of``), and its failures never reach the caller."""
        try:
            if not shadow.plan.same_as(primary.plan):
                prepared, _ = protocol(shadow, body, headers)
        except GyreError as err:
            log.debug("Shadow version %s refused a request: %s", shadow.model_version, err.message)
            return
        shadow.batcher.arrive()
        task = asyncio.ensure_future(shadow.batcher.submit(Job(prepared, started, shadow_of=job.ids)))
        self._shadows.add(task)
        task.add_done_callback(self._shadows.discard)

    def _route(self, name: str) -> Route:
        route = self.serving.routes.get(name)
        if route is not None:
            return route
        self._endpoint(name)  # raises why not
        raise NotFound(f"No endpoint named '{name}' is served here.")

    def _endpoint(self, name: str) -> CompiledEndpoint:
        endpoint = self.serving.endpoints.get(name)
        if endpoint is not None:
            return endpoint
        why = self.serving.failed.get(name)
        if why is not None:
            raise EndpointNotReady(f"Endpoint '{name}' is not serving: {why.rstrip('.')}.")
        names = sorted(self.serving.endpoints)
        raise NotFound(
            f"No endpoint named '{name}' is served here; endpoints: {', '.join(names) or 'none'}."
            + did_you_mean(name, names)
            + " Declare one with gyre.Endpoint and run 'gyre apply'; a running server loads it in seconds."
        )

    # -- Open Inference Protocol v2 ----------------------------------------------------------------

    async def _v2(self, scope: dict[str, Any], receive: Any, send: Any, parts: list[str]) -> None:
        method = scope["method"]
        try:
            if not parts or parts == [""]:
                _method(method, "GET", scope)
                meta = {"name": "gyre", "version": _version(), "extensions": ["binary_tensor_data"]}
                await _send(send, 200, orjson.dumps(meta))
                return
            if parts[0] == "health" and len(parts) == 2 and parts[1] in ("live", "ready"):
                _method(method, "GET", scope)
                if parts[1] == "live":
                    await _send(send, 200, b'{"live":true}')
                    return
                ready = self.is_ready() and self.serving.readiness().ready
                await _send(send, 200 if ready else 503, orjson.dumps({"ready": ready}))
                return
            if parts[0] == "models" and len(parts) >= 2:
                name, rest = parts[1], parts[2:]
                version = None
                if len(rest) >= 2 and rest[0] == "versions":
                    version, rest = rest[1], rest[2:]
                if rest == ["infer"]:
                    _method(method, "POST", scope)
                    endpoint = self._oip_endpoint(name, version)
                    pinned = endpoint if version is not None else None
                    await self._predict(scope, receive, send, endpoint.name, _oip, oip=True, pinned=pinned)
                    return
                if rest in ([], ["ready"]):
                    _method(method, "GET", scope)
                    if rest == ["ready"]:
                        ready = name in self.serving.endpoints
                        if ready and version is not None:
                            self._oip_endpoint(name, version)
                        await _send(send, 200 if ready else 503, orjson.dumps({"name": name, "ready": ready}))
                        return
                    await _send(send, 200, orjson.dumps(_oip_metadata(self._oip_endpoint(name, version))))
                    return
            raise NotFound(_no_route(scope))
        except GyreError as err:
            await _send(send, err.status_code, _error_body(err, oip=True))

    def _oip_endpoint(self, name: str, version: str | None) -> CompiledEndpoint:
        """The endpoint's primary version, or the served ``version`` (during a deployment, the
        candidate and shadow versions are served too)."""
        endpoint = self._endpoint(name)
        if version is None:
            return endpoint
        served = self._route(name).versions()
        for e in served:
            if version == str(e.model_version):
                return e
        shown = ", ".join(str(e.model_version) for e in served)
        raise NotFound(
            f"Endpoint '{name}' serves version(s) {shown} of model {endpoint.model_name}, "
            f"not version {version}."
        )


def _describe(route: Route) -> dict[str, Any]:
    """An endpoint as ``GET /v1/endpoints/{name}`` shows it, with its deployment's split."""
    described = route.primary.describe()
    split = route.split
    if split is not None:
        described["deployment"] = {
            "id": split.deployment,
            "baseline_version": split.baseline,
            "candidate_version": split.candidate,
            "candidate_share": split.weight,
            "shadow": split.shadow,
            "candidate_loaded": route.candidate is not None or route.shadow is not None,
        }
    return described


# -- protocols: body -> prepared rows, and how to shape the answer --------------------------------

Answer = tuple[bytes, list[tuple[bytes, bytes]]]


def _gyre(endpoint: CompiledEndpoint, body: bytes, headers: dict[bytes, bytes]) -> tuple[Prepared, Any]:
    _content_type(headers, _JSON_TYPES, "application/json")
    data = protocols.parse_json(body, protocols.GYRE_EXAMPLE)
    prepared = protocols.parse_gyre(endpoint.plan, data)

    def shape(endpoint: CompiledEndpoint, job: Job) -> Answer:
        return (
            orjson.dumps(
                {
                    "endpoint": endpoint.name,
                    "model": endpoint.model_name,
                    "model_version": endpoint.model_version,
                    "predictions": job.outputs,
                    "prediction_ids": job.ids,
                }
            ),
            _JSON,
        )

    return prepared, shape


def _mlflow(endpoint: CompiledEndpoint, body: bytes, headers: dict[bytes, bytes]) -> tuple[Prepared, Any]:
    _content_type(headers, _JSON_TYPES, "application/json")
    data = protocols.parse_json(body, protocols.MLFLOW_EXAMPLE)
    prepared = protocols.parse_mlflow(endpoint.plan, data)

    def shape(endpoint: CompiledEndpoint, job: Job) -> Answer:
        return orjson.dumps({"predictions": job.outputs}), _JSON

    return prepared, shape


def _oip(endpoint: CompiledEndpoint, body: bytes, headers: dict[bytes, bytes]) -> tuple[Prepared, Any]:
    _content_type(headers, _OIP_TYPES, "application/json or application/octet-stream")
    length = headers.get(b"inference-header-content-length")
    header_length = None
    if length is not None:
        if not length.isdigit():
            raise MalformedRequest(
                f"Inference-Header-Content-Length must be a number, got {length.decode()!r}."
            )
        header_length = int(length)
    request = protocols.parse_infer(endpoint.plan, body, header_length)

    def shape(endpoint: CompiledEndpoint, job: Job) -> Answer:
        assert job.outputs is not None
        out, json_length = protocols.infer_response(
            endpoint.name, endpoint.model_version, request.id, job.outputs, request.binary_output, job.ids
        )
        if json_length is None:
            return out, _JSON
        return out, [
            (b"content-type", b"application/octet-stream"),
            (b"inference-header-content-length", str(json_length).encode()),
        ]

    return request.prepared, shape


def _oip_metadata(endpoint: CompiledEndpoint) -> dict[str, Any]:
    outputs = endpoint.outputs
    width = len(outputs)
    out_type = "FP64"
    if outputs and all(c.dtype.startswith(("int", "uint")) for c in outputs):
        out_type = "INT64"
    elif outputs and all(c.dtype in ("string", "object", "category") for c in outputs):
        out_type = "BYTES"
    return {
        "name": endpoint.name,
        "versions": [str(endpoint.model_version)],
        "platform": f"gyre_{endpoint.flavor}",
        "inputs": [
            {"name": f.name, "datatype": protocols.DATATYPE_OF_KIND[f.kind], "shape": [-1]}
            for f in endpoint.plan.fields
        ],
        "outputs": [
            {
                "name": protocols.OUTPUT_NAME,
                "datatype": out_type,
                "shape": [-1] if width <= 1 else [-1, width],
            }
        ],
        "parameters": {"model": endpoint.model_name},
    }


# -- plumbing -------------------------------------------------------------------------------------


def _headers(scope: dict[str, Any]) -> dict[bytes, bytes]:
    return dict(scope["headers"])


def _content_type(headers: dict[bytes, bytes], allowed: frozenset[bytes], expected: str) -> None:
    media = headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower()
    if media not in allowed:
        raise UnsupportedMediaType(
            f"Content type {media.decode(errors='replace')!r} is not read here; send {expected}."
        )


async def _read_body(receive: Any, limit: int) -> bytes:
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise MalformedRequest("The client disconnected before sending the whole body.")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise RequestTooLarge(
                f"A request body of {size:,} bytes or more is over this server's limit of {limit:,} bytes; "
                "send fewer rows per request."
            )
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _error_body(err: GyreError, oip: bool) -> bytes:
    """``{"error": code, "message": text, ...}``; for OIP routes ``{"error": text, "code": code,
    ...}``, since the protocol (and Triton's client) reads the message from ``error``."""
    payload: dict[str, Any] = err.to_dict()
    if oip:
        payload = {**payload, "error": err.message, "code": err.code}
        del payload["message"]
    return orjson.dumps(payload)


def _method(method: str, allowed: str, scope: dict[str, Any]) -> None:
    if method != allowed:
        raise MethodNotAllowed(f"{method} is not allowed on {scope['path']}; use {allowed}.")


def _no_route(scope: dict[str, Any]) -> str:
    return (
        f"No route {scope['method']} {scope['path']}. Prediction routes: POST /v1/endpoints/NAME/predict, "
        "POST /v1/endpoints/NAME/invocations, POST /v2/models/NAME/infer."
    )


def _as_gyre_error(exc: BaseException, where: str) -> GyreError:
    if isinstance(exc, GyreError):
        if exc.status_code >= 500:
            log.error("Prediction on %s failed: %s", where, exc.message, exc_info=exc.__cause__ or exc)
        return exc
    log.error("Prediction on %s failed", where, exc_info=exc)
    return GyreError(f"Prediction on {where} failed: {type(exc).__name__}; the server log has the details.")


async def _send(send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]] = _JSON) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gyre-ml")
    except PackageNotFoundError:
        return "0+unknown"
