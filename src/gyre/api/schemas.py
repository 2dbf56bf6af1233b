"""Request bodies (pydantic, at the edge only) and the JSON form of what services return.

Metric values travel as JSON numbers, or as the strings ``"NaN"``, ``"Infinity"`` and
``"-Infinity"`` (JSON has no literal for them). ``log-batch`` bodies are not parsed through
a model per point (see :mod:`gyre.api.routes.runs`); :class:`LogBatch` only documents them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gyre import jsonsafe

NonFinite = Literal["NaN", "Infinity", "-Infinity"]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ExperimentCreate(Body):
    name: str
    description: str = ""
    tags: dict[str, Any] = Field(default_factory=dict)


class RunCreate(Body):
    experiment: str = "default"
    name: str | None = None
    parent_run_id: str | None = None
    tags: dict[str, Any] | None = None
    environment: dict[str, str | None] | None = None


class RunFinish(Body):
    status: str = "FINISHED"
    error: str | None = None


class LogBatch(Body):
    """Points as ``[key, value, step, timestamp_ms]``; step and timestamp may be null."""

    metrics: list[tuple[str, float | NonFinite, int | None, int | None]] = Field(default_factory=list)
    params: dict[str, str] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)


class ArtifactRecord(Body):
    path: str
    digest: str
    size: int = Field(ge=0)
    is_dir: bool = False


class ModelCreate(Body):
    name: str
    description: str = ""
    tags: dict[str, Any] = Field(default_factory=dict)


class ModelVersionCreate(Body):
    package_digest: str
    flavor: str
    signature: dict[str, Any] | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    dataset_versions: dict[str, Any] = Field(default_factory=dict)
    run_id: str | None = None
    artifact_path: str | None = None
    description: str = ""


class AliasSet(Body):
    version: int
    reason: str = ""


# -- responses -------------------------------------------------------------------------


def to_json(obj: Any) -> dict[str, Any]:
    """A service result as JSON-ready data; a model version also carries its URI."""
    out = jsonsafe.to_json(obj)
    if hasattr(obj, "uri"):
        out["uri"] = obj.uri
    return out
