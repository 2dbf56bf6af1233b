"""What tracking returns: plain dataclasses, shared by the SDK, the API and the CLI."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from gyre.jsonsafe import decode_float, encode_float, from_json, to_json

RUN_STATUSES = ("RUNNING", "FINISHED", "FAILED", "KILLED")


@dataclass
class ExperimentInfo:
    id: str
    name: str
    description: str
    tags: dict[str, str]
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return to_json(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExperimentInfo:
        return from_json(cls, data)


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
        return to_json(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArtifactInfo:
        return from_json(cls, data)


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
        return to_json(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunInfo:
        return from_json(cls, data)
