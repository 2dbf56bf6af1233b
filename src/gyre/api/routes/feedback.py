"""``POST /v1/feedback``: the true label of a logged prediction.

Body: ``{"prediction_id": "01J…", "label": 1}``, with ``"correction": true`` to replace a
label recorded earlier; or a JSON array of such objects, recorded all or nothing. Answers:

* 201 with the joined prediction (endpoint, model version, output) when recorded, 200 when
  corrected; for an array, 200 with counts;
* 404 for an id the prediction log does not have; 409 for a second label (send a correction)
  or for a prediction too recent to be in the log yet (retry in a few seconds); 400 for a
  label of the wrong type. None of them writes anything.

The service is :mod:`gyre.monitoring.feedback`; the SDK and ``gyre feedback ingest`` call it too.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse

from gyre.api.routes import Meta, reply
from gyre.errors import InvalidArgument

router = APIRouter(prefix="/v1", tags=["feedback"])

MAX_BATCH = 10_000


@router.post("/feedback", status_code=201)
async def post_feedback(request: Request, meta: Meta) -> JSONResponse:
    """Record the label of one prediction (an object) or of many (an array, all or nothing)."""
    from gyre.monitoring.feedback import ingest_feedback, record_feedback

    body = _parse(await request.body())
    lake = request.app.state.push.lake  # the lake the prediction log is pushed to
    if isinstance(body, list):
        if len(body) > MAX_BATCH:
            raise InvalidArgument(f"{len(body):,} labels in one request; send at most {MAX_BATCH:,}.")
        report = await run_in_threadpool(ingest_feedback, meta, lake, body, source="api")
        return reply(report.to_dict(), 200)
    unknown = sorted(set(body) - {"prediction_id", "label", "correction"})
    if unknown:
        raise InvalidArgument(
            f"Unknown field(s) {', '.join(unknown)}; feedback takes prediction_id, label and correction."
        )
    if "prediction_id" not in body or "label" not in body:
        raise InvalidArgument(
            'Feedback needs prediction_id and label, e.g. {"prediction_id": "01J…", "label": 1}.'
        )
    correction = body.get("correction", False)
    if not isinstance(correction, bool):
        raise InvalidArgument(f"correction must be true or false, got {correction!r}.")
    result = await run_in_threadpool(
        record_feedback, meta, lake, body["prediction_id"], body["label"], correction=correction, source="api"
    )
    return reply(result.to_dict(), 201 if result.status == "recorded" else 200)


def _parse(raw: bytes) -> Any:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"The body is not valid JSON: {exc}.") from None
    if not isinstance(body, dict | list):
        raise InvalidArgument(
            f"The body is a JSON {type(body).__name__}; send an object like "
            '{"prediction_id": "01J…", "label": 1}.'
        )
    return body
