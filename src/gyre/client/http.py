"""``HttpBackend``: the SDK over a Gyre server's control-plane API (``gyre.connect("http://…")``).

Every call is one request on a shared keep-alive connection pool, answered with the same
entities and the same errors as :class:`~gyre.client.backend.LocalBackend`: the server sends
``{"error": code, "message": text}`` and the client raises the :class:`~gyre.errors.GyreError`
subclass with that code and message. Artifact bytes stream both ways and are verified against
their sha256 on this side too, so a damaged transfer or a corrupt blob on the server is caught.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

import httpx

from gyre.client.backend import Backend
from gyre.errors import (
    ERRORS_BY_CODE,
    BackendUnavailable,
    CorruptArtifact,
    GyreError,
    InvalidArgument,
    NotFound,
    Unauthorized,
)
from gyre.jsonsafe import encode_float, encode_floats, from_json
from gyre.models.registry import AliasMove, ModelVersionInfo, RegisteredModelInfo
from gyre.store import Blob, TreeStore, check_relative_path
from gyre.store.artifacts import hash_file
from gyre.tracking.entities import (
    ArtifactInfo,
    ExperimentInfo,
    MetricPoint,
    RunInfo,
)

API_PREFIX = "/api/v1"
CHUNK = 1 << 20
DIGEST_HEADER = "X-Gyre-Digest"
HEAD_BEFORE_PUT = 64 << 10  # bytes: below this, uploading is as cheap as asking whether to
# Reads wait longer than the metadata store's 60 s lock timeout, so a busy server answers
# with its own error rather than the client giving up first.
TIMEOUT = httpx.Timeout(connect=10.0, read=90.0, write=90.0, pool=30.0)
# Idle connections close before the server's 30 s keep-alive, so a request never races a close.
LIMITS = httpx.Limits(max_connections=20, max_keepalive_connections=10, keepalive_expiry=20.0)
_ACTOR_UNSAFE = re.compile(r"[^\w.@+\-: ]")


class HttpBackend(Backend):
    """Talks to a Gyre server at ``url`` (``http(s)://host:port``, optionally with a path prefix)."""

    def __init__(self, url: str, token: str | None = None, *, actor: str | None = None) -> None:
        from gyre import __version__

        self.location = url.rstrip("/")
        headers = {"User-Agent": f"gyre/{__version__}", "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if actor:
            headers["X-Gyre-Actor"] = _ACTOR_UNSAFE.sub("_", actor)[:128]
        self._http = httpx.Client(
            base_url=self.location + API_PREFIX, headers=headers, timeout=TIMEOUT, limits=LIMITS
        )
        self._blobs = RemoteBlobStore(self)

    def __repr__(self) -> str:
        return f"HttpBackend({self.location!r})"

    @property
    def blobs(self) -> RemoteBlobStore:
        return self._blobs

    def close(self) -> None:
        self._http.close()

    # -- transport ---------------------------------------------------------------------------

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """One request; the decoded JSON answer, or the server's error raised as a GyreError."""
        try:
            resp = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise self._unavailable(exc) from exc
        if resp.status_code >= 400:
            raise self._error(resp)
        return resp.json() if resp.content else None

    @contextmanager
    def stream(self, method: str, path: str, **kwargs: Any) -> Iterator[httpx.Response]:
        """A streamed response, checked for an error status before the body is read."""
        try:
            with self._http.stream(method, path, **kwargs) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    raise self._error(resp)
                yield resp
        except httpx.TransportError as exc:
            raise self._unavailable(exc) from exc

    def _unavailable(self, exc: httpx.TransportError) -> BackendUnavailable:
        what = "did not answer in time" if isinstance(exc, httpx.TimeoutException) else "cannot be reached"
        return BackendUnavailable(
            f"The Gyre server at {self.location} {what} ({type(exc).__name__}: {exc}). Check that it is "
            "running and that the URL (GYRE_SERVER_URL or the one given to gyre.connect()) is right."
        )

    def _error(self, resp: httpx.Response) -> GyreError:
        try:
            data = resp.json()
            code, message = data["error"], data["message"]
        except (ValueError, KeyError, TypeError):  # not Gyre's JSON: a proxy or another server answered
            text = resp.text.strip()[:200] or resp.reason_phrase
            message = f"The server at {self.location} answered {resp.status_code}: {text}"
            cls: type[GyreError] = {401: Unauthorized, 404: NotFound}.get(resp.status_code, GyreError)
            if resp.status_code >= 500:
                cls = BackendUnavailable
            return cls(message)
        return ERRORS_BY_CODE.get(code, GyreError)(message)

    # -- tracking ------------------------------------------------------------------------------

    def create_experiment(
        self, name: str, description: str = "", tags: dict[str, str] | None = None
    ) -> ExperimentInfo:
        body = {"name": name, "description": description, "tags": tags or {}}
        return ExperimentInfo.from_dict(self.call("POST", "experiments", json=body))

    def get_experiment(self, name_or_id: str) -> ExperimentInfo:
        return ExperimentInfo.from_dict(self.call("GET", f"experiments/{_path(name_or_id)}"))

    def list_experiments(self) -> list[ExperimentInfo]:
        return [ExperimentInfo.from_dict(e) for e in self.call("GET", "experiments")["experiments"]]

    def create_run(
        self,
        experiment: str,
        *,
        name: str | None = None,
        parent_run_id: str | None = None,
        tags: dict[str, str] | None = None,
        environment: dict[str, str | None] | None = None,
    ) -> RunInfo:
        body = {
            "experiment": experiment,
            "name": name,
            "parent_run_id": parent_run_id,
            "tags": {k: str(v) for k, v in (tags or {}).items()},
            "environment": environment,
        }
        return RunInfo.from_dict(self.call("POST", "runs", json=body))

    def get_run(self, run_id: str) -> RunInfo:
        return RunInfo.from_dict(self.call("GET", f"runs/{_segment(run_id)}"))

    def finish_run(self, run_id: str, status: str = "FINISHED", error: str | None = None) -> RunInfo:
        body = {"status": status, "error": error}
        return RunInfo.from_dict(self.call("POST", f"runs/{_segment(run_id)}/finish", json=body))

    def list_runs(
        self,
        *,
        experiment: str | None = None,
        filter: str | None = None,
        order_by: Sequence[str] | None = None,
        max_results: int = 1000,
        parent_run_id: str | None = None,
    ) -> list[RunInfo]:
        query: dict[str, Any] = {"max_results": max_results}
        for key, value in (("experiment", experiment), ("filter", filter), ("parent_run_id", parent_run_id)):
            if value is not None:
                query[key] = value
        if order_by:
            query["order_by"] = list(order_by)
        return [RunInfo.from_dict(r) for r in self.call("GET", "runs", params=query)["runs"]]

    def log_batch(
        self,
        run_id: str,
        metrics: Sequence[Sequence[Any]] = (),
        params: dict[str, Any] | None = None,
        tags: dict[str, Any] | None = None,
    ) -> int:
        body = {
            "metrics": [_encode_point(m) for m in metrics],
            "params": {k: str(v) for k, v in (params or {}).items()},
            "tags": {k: str(v) for k, v in (tags or {}).items()},
        }
        if not body["metrics"] and not body["params"] and not body["tags"]:
            return 0
        return self.call("POST", f"runs/{_segment(run_id)}/log-batch", json=body)["logged"]

    def metric_history(self, run_id: str, key: str) -> list[MetricPoint]:
        data = self.call("GET", f"runs/{_segment(run_id)}/metrics/{_path(key)}")
        return [MetricPoint.from_dict(p) for p in data["metrics"]]

    def record_artifact(self, run_id: str, path: str, digest: str, size: int, is_dir: bool) -> ArtifactInfo:
        body = {"path": path, "digest": digest, "size": size, "is_dir": is_dir}
        return ArtifactInfo.from_dict(self.call("POST", f"runs/{_segment(run_id)}/artifacts", json=body))

    def list_artifacts(self, run_id: str) -> list[ArtifactInfo]:
        data = self.call("GET", f"runs/{_segment(run_id)}/artifacts")
        return [ArtifactInfo.from_dict(a) for a in data["artifacts"]]

    def get_artifact(self, run_id: str, path: str) -> ArtifactInfo:
        path = check_relative_path(path)  # before it is in a URL, where '..' would be resolved away
        return ArtifactInfo.from_dict(self.call("GET", f"runs/{_segment(run_id)}/artifacts/{_path(path)}"))

    # -- registry ------------------------------------------------------------------------------

    def create_registered_model(
        self, name: str, description: str = "", tags: dict[str, str] | None = None
    ) -> RegisteredModelInfo:
        body = {"name": name, "description": description, "tags": tags or {}}
        return from_json(RegisteredModelInfo, self.call("POST", "models", json=body))

    def get_registered_model(self, name: str) -> RegisteredModelInfo:
        return from_json(RegisteredModelInfo, self.call("GET", f"models/{_segment(name)}"))

    def list_registered_models(self) -> list[RegisteredModelInfo]:
        return [from_json(RegisteredModelInfo, m) for m in self.call("GET", "models")["models"]]

    def create_model_version(self, name: str, **fields: Any) -> ModelVersionInfo:
        if fields.get("metrics"):
            fields["metrics"] = encode_floats(fields["metrics"])
        data = self.call("POST", f"models/{_segment(name)}/versions", json=fields)
        return from_json(ModelVersionInfo, data)

    def get_model_version(self, name: str, version: int) -> ModelVersionInfo:
        data = self.call("GET", f"models/{_segment(name)}/versions/{int(version)}")
        return from_json(ModelVersionInfo, data)

    def list_model_versions(self, name: str) -> list[ModelVersionInfo]:
        data = self.call("GET", f"models/{_segment(name)}/versions")
        return [from_json(ModelVersionInfo, v) for v in data["versions"]]

    def resolve(self, uri: str) -> ModelVersionInfo:
        return from_json(ModelVersionInfo, self.call("GET", "models/resolve", params={"uri": uri}))

    def set_alias(self, name: str, alias: str, version: int, reason: str = "") -> ModelVersionInfo:
        body = {"version": version, "reason": reason}
        data = self.call("PUT", f"models/{_segment(name)}/aliases/{_segment(alias)}", json=body)
        return from_json(ModelVersionInfo, data)

    def delete_alias(self, name: str, alias: str, reason: str = "") -> None:
        params = {"reason": reason} if reason else None
        self.call("DELETE", f"models/{_segment(name)}/aliases/{_segment(alias)}", params=params)

    def alias_history(self, name: str, alias: str | None = None) -> list[AliasMove]:
        params = {"alias": alias} if alias else None
        data = self.call("GET", f"models/{_segment(name)}/aliases/history", params=params)
        return [from_json(AliasMove, m) for m in data["history"]]


class RemoteBlobStore(TreeStore):
    """Content-addressed blobs on a Gyre server (``/api/v1/blobs``), verified on this side."""

    def __init__(self, backend: HttpBackend) -> None:
        self._b = backend
        self.location = backend.location

    def __repr__(self) -> str:
        return f"RemoteBlobStore({self.location!r})"

    def exists(self, digest: str) -> bool:
        try:
            resp = self._b._http.head(f"blobs/{_segment(digest)}")
        except httpx.TransportError as exc:
            raise self._b._unavailable(exc) from exc
        if resp.status_code == 404:
            return False
        if resp.status_code >= 400:
            raise self._b._error(resp)
        return True

    def put_file(self, path: str | os.PathLike[str]) -> Blob:
        """Upload a local file, streamed, unless the server already has its content."""
        path = Path(path)
        if not path.is_file():
            raise NotFound(f"No file at {path}: pass the path of an existing file.")
        digest, size = hash_file(path)
        if self.exists(digest):
            return Blob(digest, size)
        with open(path, "rb") as f:
            data = self._b.call(
                "PUT",
                "blobs",
                content=_read_exactly(f, size, path),
                headers={"Content-Length": str(size), DIGEST_HEADER: digest},
            )
        return Blob(data["digest"], data["size"])

    def put_bytes(self, data: bytes) -> Blob:
        digest = hashlib.sha256(data).hexdigest()
        if len(data) >= HEAD_BEFORE_PUT and self.exists(digest):
            return Blob(digest, len(data))
        answer = self._b.call("PUT", "blobs", content=data, headers={DIGEST_HEADER: digest})
        return Blob(answer["digest"], answer["size"])

    def read_bytes(self, digest: str, name: str | None = None) -> bytes:
        with self._open(digest, name) as resp:
            data = resp.read()
        _verify(hashlib.sha256(data).hexdigest(), digest, name)
        return data

    def get_file(self, digest: str, dest: str | os.PathLike[str], name: str | None = None) -> Path:
        """Download a blob to ``dest`` through a temp file beside it; on a mismatch nothing is left."""
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".gyre-", dir=dest.parent)
        try:
            sha = hashlib.sha256()
            with os.fdopen(fd, "wb") as out, self._open(digest, name) as resp:
                for chunk in resp.iter_bytes(CHUNK):
                    sha.update(chunk)
                    out.write(chunk)
            _verify(sha.hexdigest(), digest, name)
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return dest

    @contextmanager
    def _open(self, digest: str, name: str | None) -> Iterator[httpx.Response]:
        try:
            with self._b.stream("GET", f"blobs/{_segment(digest)}") as resp:
                yield resp
        except NotFound:
            raise NotFound(
                f"Artifact {name or digest} is missing from the server {self.location} (blob {digest})."
            ) from None


# -- helpers ----------------------------------------------------------------------------------


def _segment(value: str) -> str:
    return quote(str(value), safe="")


def _path(value: str) -> str:
    return quote(str(value), safe="/")


def _encode_point(m: Sequence[Any]) -> list[Any]:
    point = list(m)
    # A value float() cannot read is sent as is; the server answers with the service's error.
    with suppress(TypeError, ValueError, IndexError):
        point[1] = encode_float(float(point[1]))
    return point


def _read_exactly(f: IO[bytes], size: int, path: Path) -> Iterator[bytes]:
    remaining = size
    while remaining:
        chunk = f.read(min(CHUNK, remaining))
        if not chunk:
            raise InvalidArgument(f"{path} shrank while it was being uploaded; upload it again.")
        remaining -= len(chunk)
        yield chunk


def _verify(actual: str, digest: str, name: str | None) -> None:
    if actual != digest:
        raise CorruptArtifact(
            f"Artifact {name or digest} is corrupt: its bytes no longer match digest {digest}. "
            "Restore it from a backup or log it again."
        )
