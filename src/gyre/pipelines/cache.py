"""Step caching: a key from (code hash, input digests, params), looked up among finished step runs.

The key is recorded on every step run as the tag ``gyre.cache_key`` and the stored output's
digest as ``gyre.output``, so the cache index is the tracking store itself: a hit names the
run it reuses (``gyre.cache.source``), and deleting runs or artifacts can only cause misses.
A hit is used only if its output blob is still in the artifact store, and only if the
dataset versions it read (its ``gyre.dataset.*`` tags) are the ones a fresh run would read
now: a step that loads "the latest data" is not served yesterday's data after an ingest.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import cloudpickle

from gyre.pipelines.graph import Node, Ref

if TYPE_CHECKING:
    from gyre.client.client import Client
    from gyre.tracking.entities import RunInfo

KEY_TAG = "gyre.cache_key"
OUTPUT_TAG = "gyre.output"
DATASET_TAG = "gyre.dataset."


def cache_key(node: Node, digests: Mapping[str, str]) -> str:
    """The digest of the step's code, its inputs' output digests and its other arguments."""
    data = {
        "code": node.step.code_hash,
        "args": [_keyed(a, digests) for a in node.args],
        "kwargs": {k: _keyed(v, digests) for k, v in sorted(node.kwargs.items())},
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def value_digest(value: Any) -> str:
    """A digest of a constant argument: of its canonical JSON when it has one, else its pickle."""
    try:
        text = json.dumps(value, sort_keys=True, allow_nan=True)
        return "json:" + hashlib.sha256(text.encode()).hexdigest()
    except (TypeError, ValueError):
        return "pickle:" + hashlib.sha256(cloudpickle.dumps(value)).hexdigest()


def lookup(
    client: Client, store: Any, key: str, version_to_read: Callable[[str], int | None] | None = None
) -> tuple[RunInfo, str] | None:
    """The finished step run holding ``key`` whose output is still stored and still current.

    Args:
        version_to_read: dataset name -> the version a fresh run would read now (None: the
            dataset is gone); a run that read another version is not a hit.

    Returns:
        The run and its output's digest, or None.
    """
    runs = client.runs.list(filter=f"tags.`{KEY_TAG}` = '{key}' and status = 'FINISHED'", max_results=5)
    for run in runs:
        digest = run.tags.get(OUTPUT_TAG)
        if not digest or not _current(run, version_to_read) or not store.exists(digest):
            continue
        return run, digest
    return None


def _current(run: RunInfo, version_to_read: Callable[[str], int | None] | None) -> bool:
    if version_to_read is None:
        return True
    for tag, value in run.tags.items():
        if tag.startswith(DATASET_TAG) and str(version_to_read(tag[len(DATASET_TAG) :])) != value:
            return False
    return True


def _keyed(value: Any, digests: Mapping[str, str]) -> Any:
    if isinstance(value, Ref):
        return {"$ref": digests[value.node], "path": [repr(p) for p in value.path]}
    if isinstance(value, list | tuple):
        return [_keyed(v, digests) for v in value]
    if isinstance(value, dict):
        return {
            "$dict": [
                [repr(k), _keyed(v, digests)] for k, v in sorted(value.items(), key=lambda kv: repr(kv[0]))
            ]
        }
    return {"$value": value_digest(value)}
