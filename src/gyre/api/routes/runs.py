"""``/api/v1/runs``: create, list (filter grammar of :mod:`gyre.tracking.search`), get, finish,
log metric/param/tag batches, metric history, and the run's artifact records.

Artifact bytes go through ``/api/v1/blobs`` first; recording an artifact checks the blob is
stored, so a run never points at content the server does not have.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse

from gyre.api.routes import Meta, Store, reply
from gyre.api.schemas import ArtifactRecord, LogBatch, RunCreate, RunFinish
from gyre.errors import InvalidArgument, NotFound
from gyre.tracking import service as tracking

router = APIRouter(prefix="/runs", tags=["runs"])


@router.post("", status_code=201)
def create_run(body: RunCreate, meta: Meta) -> JSONResponse:
    """Start a run in an experiment (created if new)."""
    run = tracking.create_run(
        meta,
        body.experiment,
        name=body.name,
        parent_run_id=body.parent_run_id,
        tags=body.tags,
        environment=body.environment,
    )
    return reply(run.to_dict(), 201)


@router.get("")
def list_runs(
    meta: Meta,
    experiment: str | None = None,
    filter: str | None = None,
    order_by: Annotated[list[str] | None, Query()] = None,
    max_results: int = 1000,
    parent_run_id: str | None = None,
) -> JSONResponse:
    """Runs matching ``filter`` (e.g. ``metrics.auc > 0.9 and params.model = 'lgbm'``)."""
    runs = tracking.list_runs(
        meta,
        experiment=experiment,
        filter=filter,
        order_by=order_by,
        max_results=max_results,
        parent_run_id=parent_run_id,
    )
    return reply({"runs": [r.to_dict() for r in runs]})


@router.get("/{run_id}")
def get_run(run_id: str, meta: Meta) -> JSONResponse:
    return reply(tracking.get_run(meta, run_id).to_dict())


@router.post("/{run_id}/finish")
def finish_run(run_id: str, body: RunFinish, meta: Meta) -> JSONResponse:
    """End a running run as FINISHED, FAILED or KILLED."""
    return reply(tracking.finish_run(meta, run_id, body.status, body.error).to_dict())


# The hot path of tracking: no pydantic model per point. The body is decoded once and the
# points go to the service as the lists they arrived as; the service checks each one.
_LOG_BATCH_DOC = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": LogBatch.model_json_schema()}},
    }
}


@router.post("/{run_id}/log-batch", openapi_extra=_LOG_BATCH_DOC)
async def log_batch(run_id: str, request: Request, meta: Meta) -> JSONResponse:
    """Write metric points ``[key, value, step, timestamp_ms]``, params and tags in one transaction."""
    metrics, params, tags = _parse_log_batch(await request.body())
    logged = await run_in_threadpool(tracking.log_batch, meta, run_id, metrics, params, tags)
    return reply({"logged": logged})


def _parse_log_batch(raw: bytes) -> tuple[list[Any], dict[str, Any], dict[str, Any]]:
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise InvalidArgument(f"The log-batch body is not valid JSON: {exc}.") from None
    if not isinstance(body, dict) or not set(body) <= {"metrics", "params", "tags"}:
        raise InvalidArgument(
            'Send {"metrics": [[key, value, step, timestamp_ms], ...], "params": {}, "tags": {}}.'
        )
    metrics, params, tags = body.get("metrics") or [], body.get("params") or {}, body.get("tags") or {}
    if not isinstance(metrics, list) or not all(type(m) is list for m in metrics):
        raise InvalidArgument('"metrics" must be a list of [key, value, step, timestamp_ms] lists.')
    if not isinstance(params, dict) or not isinstance(tags, dict):
        raise InvalidArgument('"params" and "tags" must be JSON objects.')
    return metrics, params, tags


@router.get("/{run_id}/metrics/{key:path}")
def metric_history(run_id: str, key: str, meta: Meta) -> JSONResponse:
    """Every point of one metric, by step."""
    return reply({"metrics": [p.to_dict() for p in tracking.metric_history(meta, run_id, key)]})


@router.post("/{run_id}/artifacts", status_code=201)
def record_artifact(run_id: str, body: ArtifactRecord, meta: Meta, store: Store) -> JSONResponse:
    """Record an uploaded blob (file) or tree manifest (directory) as the run's artifact."""
    if not store.exists(body.digest):
        raise NotFound(
            f"Blob {body.digest} is not on the server; upload it with PUT /api/v1/blobs "
            "before recording it as an artifact."
        )
    art = tracking.record_artifact(meta, run_id, body.path, body.digest, body.size, body.is_dir)
    return reply(art.to_dict(), 201)


@router.get("/{run_id}/artifacts")
def list_artifacts(run_id: str, meta: Meta) -> JSONResponse:
    return reply({"artifacts": [a.to_dict() for a in tracking.list_artifacts(meta, run_id)]})


@router.get("/{run_id}/artifacts/{path:path}")
def get_artifact(run_id: str, path: str, meta: Meta) -> JSONResponse:
    """One artifact's record; its bytes are at ``GET /api/v1/blobs/{digest}``."""
    return reply(tracking.get_artifact(meta, run_id, path).to_dict())
