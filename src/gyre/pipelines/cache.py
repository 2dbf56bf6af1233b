"""Step caching: a key from (code hash, input digests, params), looked up among finished step runs.

The key is recorded on every step run as the tag ``gyre.cache_key`` and the stored output's
digest as ``gyre.output``, so the cache index is the tracking store itself: a hit names the
run it reuses (``gyre.cache.source``), and deleting runs or artifacts can only cause misses.
A hit is used only if its output blob is still in the artifact store.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import cloudpickle

from gyre.pipelines.graph import Node, Ref

if TYPE_CHECKING:
    from gyre.client.client import Client
    from gyre.tracking.entities import RunInfo

KEY_TAG = "gyre.cache_key"
OUTPUT_TAG = "gyre.output"


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


def lookup(client: Client, store: Any, key: str) -> tuple[RunInfo, str] | None:
    """The finished step run holding ``key`` whose output is still stored, and that output's digest."""
    runs = client.runs.list(filter=f"tags.`{KEY_TAG}` = '{key}' and status = 'FINISHED'", max_results=5)
    for run in runs:
        digest = run.tags.get(OUTPUT_TAG)
        if digest and store.exists(digest):
            return run, digest
    return None


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
