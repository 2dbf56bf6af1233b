"""Route modules, one per resource, and what they share: the per-request metadata store
(recording who acted) and the JSON response helper."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse

from gyre.errors import InvalidArgument
from gyre.meta import MetaStore
from gyre.store import ArtifactStore

ACTOR_HEADER = "x-gyre-actor"
_ACTOR = re.compile(r"^[\w.@+\-: ]{1,128}$")


async def request_meta(request: Request) -> MetaStore:
    """The app's metadata store, recording ``api:<X-Gyre-Actor or anonymous>`` in the audit log."""
    state = request.app.state
    if not state.ready:
        await run_in_threadpool(state.check_ready)
    actor = request.headers.get(ACTOR_HEADER) or "anonymous"
    if not _ACTOR.match(actor):
        raise InvalidArgument(
            "The X-Gyre-Actor header must be 1-128 letters, digits, spaces and . @ + - : _ characters."
        )
    return state.meta.with_actor(f"api:{actor}")


async def request_store(request: Request) -> ArtifactStore:
    return request.app.state.store


Meta = Annotated[MetaStore, Depends(request_meta)]
Store = Annotated[ArtifactStore, Depends(request_store)]


def reply(content: Any, status_code: int = 200) -> JSONResponse:
    """Answer JSON directly: the content is already plain data, so skip FastAPI's re-encoding."""
    return JSONResponse(content, status_code=status_code)
