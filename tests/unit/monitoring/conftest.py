"""Fixtures for monitoring: stores in a temporary folder, a registered model with a reference,
and a writer of prediction-log rows in the shape serving logs them."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from ulid import ULID

from gyre.data.lake import Lake
from gyre.meta import MetaStore
from gyre.models import registry
from gyre.monitoring.predictions import DATASET
from gyre.store import ArtifactStore

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


@dataclass
class Stores:
    meta: MetaStore
    lake: Lake
    blobs: ArtifactStore


@pytest.fixture
def stores(tmp_path: Path, meta_url: str) -> Iterator[Stores]:
    """The metadata store on SQLite, and again on PostgreSQL (``meta_url``); lake and
    artifacts in a temporary folder."""
    meta = MetaStore(meta_url, actor="tester")
    yield Stores(meta, Lake(f"file://{tmp_path / 'store'}"), ArtifactStore(f"file://{tmp_path / 'store'}"))
    meta.close()


def training_frame(rng: np.random.Generator, n: int, *, shift: float = 0.0) -> dict[str, np.ndarray]:
    return {
        "amount": rng.lognormal(3 + shift, 1, n),
        "hour": rng.integers(0, 24, n).astype(np.int64),
        "country": rng.choice(np.array(["DE", "FR", "US", "GB"]), n, p=[0.4, 0.3, 0.2, 0.1]),
    }


def score(cols: dict[str, Any]) -> np.ndarray:
    """A stand-in model: P(fraud) grows with the amount."""
    amount = np.asarray(cols["amount"], dtype=float)
    return 1 / (1 + np.exp(-(np.log(amount) - 4)))


def register(meta: MetaStore, name: str = "fraud") -> int:
    mv = registry.create_model_version(meta, name, package_digest="0" * 64, flavor="sklearn")
    return mv.version


LogRows = Callable[..., list[str]]


@pytest.fixture
def log_rows(stores: Stores) -> LogRows:
    """``log_rows(cols, endpoint=..., version=..., start=..., spacing=...)``: append predictions
    (one per row of ``cols``) to the log as serving writes it (:mod:`gyre.serving.log`):
    ``country`` as a request input, the other columns as online features of view ``user``;
    returns their ids. Without ``errors`` and ``shadow_of`` the rows have the log's older shape
    (no ``error`` nor ``shadow_of`` column); with either, both columns are written. A failed
    row (an ``errors`` value) has no output."""

    def write(
        cols: dict[str, Sequence[Any]],
        *,
        endpoint: str = "fraud",
        model: str = "fraud",
        version: int = 1,
        start: datetime = NOW - timedelta(minutes=30),
        spacing: timedelta = timedelta(milliseconds=10),
        outputs: Sequence[Any] | None = None,
        errors: Sequence[str | None] | None = None,
        shadow_of: Sequence[str | None] | None = None,
        latency: Sequence[float] | None = None,
    ) -> list[str]:
        n = len(next(iter(cols.values())))
        outs: list[Any] = list(outputs) if outputs is not None else list(score(cols))
        if errors is not None:
            outs = [None if e is not None else o for o, e in zip(outs, errors, strict=True)]
        times = [start + i * spacing for i in range(n)]
        ids = [str(ULID.from_datetime(t)) for t in times]
        names = list(cols)
        feats = [
            json.dumps({f"user__{k}": _plain(cols[k][i]) for k in names if k != "country"}) for i in range(n)
        ]
        inputs = [
            json.dumps({"country": _plain(cols["country"][i])}) if "country" in cols else "{}"
            for i in range(n)
        ]
        columns = {
            "prediction_id": ids,
            "time": pa.array(times, pa.timestamp("us", "UTC")),
            "endpoint": [endpoint] * n,
            "model": [model] * n,
            "model_version": pa.array([version] * n, pa.int64()),
            "entity": ['{"user_id": 1}'] * n,
            "features": feats,
            "inputs": inputs,
            "output": pa.array([None if o is None else json.dumps(_plain(o)) for o in outs], pa.string()),
            "prediction": pa.array(
                [float(o) if isinstance(o, float | np.floating) else None for o in outs], pa.float64()
            ),
            "latency_ms": pa.array(list(latency) if latency is not None else [2.0] * n, pa.float64()),
        }
        if errors is not None or shadow_of is not None:
            columns["error"] = pa.array(list(errors) if errors is not None else [None] * n, pa.string())
            copies = list(shadow_of) if shadow_of is not None else [None] * n
            columns["shadow_of"] = pa.array(copies, pa.string())
        table = pa.table(columns)
        stores.lake.append(DATASET, table)
        return ids

    return write


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v
