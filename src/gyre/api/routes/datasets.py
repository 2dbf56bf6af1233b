"""``POST /v1/datasets/{name}/records``: push records (a JSON array, or NDJSON) into a dataset.

The answer is sent once the records are durable in the push buffer; they reach the lake as
a new dataset version within the buffer's flush interval (see :mod:`gyre.data.push`).
"""

from __future__ import annotations

import json

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse

from gyre.api.routes import reply
from gyre.errors import InvalidArgument

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])


@router.post("/{name}/records", status_code=202)
async def push_records(name: str, request: Request) -> JSONResponse:
    """Append records to dataset ``name``; 202 once they are durable, with how many were taken."""
    body = await request.body()
    content_type = request.headers.get("content-type", "").split(";")[0].strip()
    records = _parse(body, ndjson=content_type in {"application/x-ndjson", "application/jsonl"})
    count = await run_in_threadpool(request.app.state.push.append, name, records)
    return reply({"dataset": name, "accepted": count}, 202)


def _parse(body: bytes, *, ndjson: bool) -> list[object]:
    try:
        if ndjson:
            return [json.loads(line) for line in body.splitlines() if line.strip()]
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"The body is not valid JSON{' lines' if ndjson else ''}: {exc}.") from None
    if not isinstance(data, list):
        raise InvalidArgument(
            f'The body is a JSON {type(data).__name__}; send an array of records, e.g. [{{"id": 1}}], '
            "or NDJSON with Content-Type: application/x-ndjson."
        )
    return data
