"""``/api/v1/blobs``: content-addressed bytes, streamed both ways, never whole in memory.

``PUT`` stores the request body and answers its sha256 digest and size; a client that sends
``X-Gyre-Digest`` gets a 400 if the bytes that arrived hash differently. ``GET`` streams a
blob back in 1 MiB chunks and ``HEAD`` says whether it exists, so clients skip uploads the
server already has. The body size limit is enforced by :class:`gyre.api.app.BodyLimit`.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections.abc import Iterator
from typing import IO

from fastapi import APIRouter, Request
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect
from starlette.responses import Response, StreamingResponse

from gyre.api.routes import Store, reply
from gyre.errors import CorruptArtifact, InvalidArgument
from gyre.store import ArtifactStore, Blob
from gyre.store.artifacts import CHUNK, VerifiedReader

DIGEST_HEADER = "X-Gyre-Digest"
SPOOL_IN_MEMORY = 1 << 20  # bodies up to 1 MiB stay in memory; larger ones spill to a temp file

log = logging.getLogger(__name__)
router = APIRouter(prefix="/blobs", tags=["blobs"])


@router.put("")
async def put_blob(request: Request, store: Store) -> Response:
    """Store the raw request body as a blob; answers ``{"digest", "size"}``."""
    expected = request.headers.get(DIGEST_HEADER)
    sha, size = hashlib.sha256(), 0
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY, prefix="gyre-blob-") as tmp:
        try:
            # Writes of one received chunk go to memory or the page cache; not worth a thread hop.
            async for chunk in request.stream():
                sha.update(chunk)
                size += len(chunk)
                tmp.write(chunk)
        except ClientDisconnect:  # an abandoned upload stores nothing and is not a server error
            log.info("Blob upload abandoned by the client after %d bytes", size)
            return Response(status_code=400)
        digest = sha.hexdigest()
        if expected is not None and expected != digest:
            raise InvalidArgument(
                f"The uploaded bytes hash to {digest}, not {expected} as sent in {DIGEST_HEADER}: "
                "the file changed while uploading or was damaged in transit. Upload it again."
            )
        tmp.seek(0)
        blob = await run_in_threadpool(_store, store, tmp, digest, size)
    return reply({"digest": blob.digest, "size": blob.size})


def _store(store: ArtifactStore, data: IO[bytes], digest: str, size: int) -> Blob:
    if store.exists(digest):
        return Blob(digest, size)
    return store.put_stream(data)


@router.head("/{digest}")
def head_blob(digest: str, store: Store) -> Response:
    """200 if the blob is stored, 404 if not."""
    found = store.exists(digest)
    return Response(status_code=200 if found else 404, headers={DIGEST_HEADER: digest})


@router.get("/{digest}")
async def get_blob(digest: str, store: Store) -> StreamingResponse:
    """The blob's bytes. The client verifies them against the digest it asked for."""
    reader = await run_in_threadpool(store.open, digest)
    return StreamingResponse(
        _chunks(reader, digest),
        media_type="application/octet-stream",
        headers={DIGEST_HEADER: digest},
        background=BackgroundTask(reader.close),
    )


def _chunks(reader: VerifiedReader, digest: str) -> Iterator[bytes]:
    try:
        while chunk := reader.read(CHUNK):
            yield chunk
    except CorruptArtifact as exc:
        # The headers are out already, so no error status can be sent. The stream ends short
        # and the client's own digest check reports the corruption; the server log says it too.
        log.error("Blob %s is corrupt in the artifact store: %s", digest, exc.message)
    finally:
        reader.close()
