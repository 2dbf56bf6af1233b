"""JSON without surprises: non-finite floats as strings, datetimes as ISO 8601, dataclasses as dicts.

JSON has no NaN or infinity, yet a metric may be either; they travel (and are stored in JSON
columns) as the strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"``.
"""

from __future__ import annotations

import math
from dataclasses import fields
from datetime import datetime
from typing import Any

NON_FINITE = {"NaN", "Infinity", "-Infinity"}


def encode_float(value: float) -> float | str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def decode_float(value: float | str | None) -> float:
    if value is None:
        return math.nan
    return float(value)  # float() reads "NaN", "Infinity" and "-Infinity"


def encode_floats(values: dict[str, Any]) -> dict[str, Any]:
    """A dict whose non-finite float values are replaced by their string names."""
    return {
        k: encode_float(v) if isinstance(v, float) and not math.isfinite(v) else v for k, v in values.items()
    }


def decode_floats(values: dict[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`encode_floats`."""
    return {k: float(v) if isinstance(v, str) and v in NON_FINITE else v for k, v in values.items()}


def to_json(obj: Any) -> dict[str, Any]:
    """A dataclass as JSON-ready data; a ``metrics`` dict has its non-finite values encoded."""
    out: dict[str, Any] = {}
    for f in fields(obj):
        v = getattr(obj, f.name)
        out[f.name] = v.isoformat() if isinstance(v, datetime) else v
    if isinstance(out.get("metrics"), dict):
        out["metrics"] = encode_floats(out["metrics"])
    return out


def from_json(cls: Any, data: dict[str, Any]) -> Any:
    """Build dataclass ``cls`` from :func:`to_json` output (unknown keys are ignored)."""
    kwargs = {}
    for f in fields(cls):
        if f.name not in data:
            continue
        v = data[f.name]
        if isinstance(v, str) and "datetime" in str(f.type):
            v = datetime.fromisoformat(v)
        elif f.name == "metrics" and isinstance(v, dict):
            v = decode_floats(v)
        kwargs[f.name] = v
    return cls(**kwargs)
