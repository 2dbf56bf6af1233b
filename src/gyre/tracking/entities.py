"""What tracking returns: plain dataclasses, shared by the SDK, the API and the CLI."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any

RUN_STATUSES = ("RUNNING", "FINISHED", "FAILED", "KILLED")


@dataclass
class ExperimentInfo:
    id: str
    name: str
    description: str
    tags: dict[str, str]
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExperimentInfo:
        return _from_dict(cls, data)


@dataclass
class MetricPoint:
    key: str
    value: float
    step: int
    timestamp_ms: int

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "value": encode_float(self.value)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MetricPoint:
        return cls(data["key"], decode_float(data["value"]), data["step"], data["timestamp_ms"])


@dataclass
class ArtifactInfo:
    path: str
    digest: str
    size: int
    is_dir: bool
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArtifactInfo:
        return _from_dict(cls, data)


@dataclass
class RunInfo:
    """A run with its params, tags and the latest value of each metric."""

    id: str
    experiment_id: str
    experiment: str
    name: str
    status: str
    user: str
    start_time: datetime
    end_time: datetime | None = None
    parent_run_id: str | None = None
    git_commit: str | None = None
    git_diff_hash: str | None = None
    python_version: str | None = None
    packages_hash: str | None = None
    host: str | None = None
    source: str | None = None
    error: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def duration_s(self) -> float | None:
        if self.end_time is None:
            return None
        return (self.end_time - self.start_time).total_seconds()

    def to_dict(self) -> dict[str, Any]:
        out = _to_dict(self)
        out["metrics"] = {k: encode_float(v) for k, v in self.metrics.items()}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunInfo:
        run = _from_dict(cls, data)
        run.metrics = {k: decode_float(v) for k, v in data.get("metrics", {}).items()}
        return run


def encode_float(value: float) -> float | str:
    """JSON has no NaN or infinity: send them as the strings "NaN", "Infinity", "-Infinity"."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def decode_float(value: float | str | None) -> float:
    if value is None:
        return math.nan
    return float(value)  # float() reads "NaN", "Infinity" and "-Infinity"


def _to_dict(obj: Any) -> dict[str, Any]:
    out = {}
    for f in fields(obj):
        v = getattr(obj, f.name)
        out[f.name] = v.isoformat() if isinstance(v, datetime) else v
    return out


def _from_dict(cls: Any, data: dict[str, Any]) -> Any:
    kwargs = {}
    for f in fields(cls):
        if f.name not in data:
            continue
        v = data[f.name]
        if isinstance(v, str) and "datetime" in str(f.type):
            v = datetime.fromisoformat(v)
        kwargs[f.name] = v
    return cls(**kwargs)
