"""Reference profiles: what a model version's inputs and outputs looked like when it was trained.

:func:`record_reference` profiles the training data (per feature: a quantile sample,
category counts, null counts — :mod:`gyre.data.profiles`) and the model's predictions on it,
stores each profile as JSON in the artifact store (content-addressed) and links it from the
model version (``model_references``). Without training data it falls back to the model
version's pinned dataset versions, whose profiles the catalog already holds.

:func:`get_reference` returns both as one compiled :class:`~gyre.monitoring.drift.Reference`
(the features plus a ``prediction`` column), cached per digest: the reference side of a drift
test is computed once per model version.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
from sqlalchemy import select

from gyre.data import catalog
from gyre.data.profiles import SAMPLE_SIZE, Profile, profile
from gyre.errors import InvalidArgument, NotFound
from gyre.ids import utcnow
from gyre.meta import MetaStore
from gyre.meta.monitoring_schema import ModelReference
from gyre.models import registry
from gyre.monitoring.drift import PREDICTION, Reference
from gyre.store import TreeStore

TRAINING, PREDICTIONS = "training", "predictions"
MAX_PREDICTION_ROWS = 100_000  # predicting on more rows than this adds nothing to the profile


@dataclass(frozen=True)
class ReferenceInfo:
    """One stored reference profile of a model version."""

    model_name: str
    version: int
    kind: str
    digest: str
    rows: int
    columns: list[str]
    source: str
    created_at: datetime


def record_reference(
    meta: MetaStore,
    blobs: TreeStore,
    model_name: str,
    version: int,
    *,
    data: Any = None,
    predictions: Any = None,
    model: Any = None,
    source: str = "",
    sample_size: int = SAMPLE_SIZE,
) -> list[ReferenceInfo]:
    """Store the reference profiles of a registered model version.

    Args:
        meta, blobs: the metadata store and the artifact store.
        model_name, version: the model version (it must be registered).
        data: the training data (an Arrow table, a pandas DataFrame, a dict of columns, a list
            of row dicts, or a 2-D numpy array whose columns are the signature's inputs).
            Without it the profiles of the version's pinned ``dataset_versions`` are merged.
        predictions: the model's outputs on ``data`` (1-D); computed with ``model`` if omitted.
        model: anything with ``predict(data)``, used when ``predictions`` is not given.
        source: a note kept with the reference (where the data came from).
        sample_size: values kept per numeric feature (more gives more powerful drift tests).

    Returns:
        The references stored: ``training`` and, when there were predictions, ``predictions``.

    Raises:
        NotFound: the model version is not registered.
        InvalidArgument: there is no training data and the version pins no profiled dataset.
    """
    mv = registry.get_model_version(meta, model_name, version)
    profiles: dict[str, tuple[Profile, str]] = {}
    table: pa.Table | None = None
    if data is not None:
        table = to_arrow(data, _signature_inputs(mv.signature))
        profiles[TRAINING] = (profile(table, sample_size=sample_size), source or "training data")
    else:
        merged = _dataset_profile(meta, mv.dataset_versions)
        if merged is None:
            raise InvalidArgument(
                f"No training data to profile for {model_name} version {version}: pass data=... (the "
                "training set), or pin the dataset versions it was trained on (run.log_dataset_versions)."
            )
        profiles[TRAINING] = merged
    if predictions is None and model is not None and data is not None:
        predictions = _predict(model, data, table)
    if predictions is not None:
        values = _as_1d(predictions)
        if values is not None:
            profiles[PREDICTIONS] = (
                profile(pa.table({PREDICTION: values}), sample_size=sample_size),
                source or "predictions on the training data",
            )
    out = []
    with meta.write() as uow:
        for kind, (prof, note) in profiles.items():
            body = json.dumps(prof.to_dict(), separators=(",", ":"), allow_nan=False).encode()
            digest = blobs.put_bytes(body).digest
            row = uow.session.get(ModelReference, (model_name, version, kind))
            if row is None:
                row = ModelReference(model_name=model_name, version=version, kind=kind)
                uow.session.add(row)
            row.digest, row.rows, row.columns = digest, prof.rows, list(prof.columns)
            row.source, row.created_at = note, utcnow()
            out.append(_info(row))
        uow.record(
            "model.reference_recorded",
            f"model:{model_name}/{version}",
            {"name": model_name, "version": version, "kinds": list(profiles)},
        )
    return out


def record_reference_for(client: Any, mv: Any, *, data: Any = None) -> list[ReferenceInfo]:
    """The registration hook: store the reference of model version ``mv`` just registered
    through ``client`` (what ``run.log_model(..., reference_data=X)`` calls).

    With ``data`` (the training set) the profiles are of it and of the registered model's
    predictions on it. Without, the profiles of the version's pinned dataset versions are used
    if the catalog has them; if there is nothing to profile, nothing is stored (drift then
    says the version has no reference and how to record one).

    Raises:
        InvalidArgument: ``data`` was given to a client of a remote server (profiles are
            recorded with the local stores only, for now).
    """
    backend = client.backend
    meta = getattr(backend, "meta", None)
    if meta is None:
        if data is not None:
            raise InvalidArgument(
                "reference_data needs the project's stores, and this client talks to a server; record "
                "the reference where the stores are: gyre.monitoring.record_reference(meta, store, ...)."
            )
        return []
    if data is None:
        if _dataset_profile(meta, mv.dataset_versions) is None:
            return []
        return record_reference(meta, backend.blobs, mv.name, mv.version, source="")
    model = client.load_model(mv.uri)
    return record_reference(meta, backend.blobs, mv.name, mv.version, data=data, model=model)


def list_references(meta: MetaStore, model_name: str, version: int) -> list[ReferenceInfo]:
    with meta.read() as s:
        rows = s.scalars(
            select(ModelReference)
            .where(ModelReference.model_name == model_name, ModelReference.version == version)
            .order_by(ModelReference.kind)
        )
        return [_info(r) for r in rows]


_CACHE: OrderedDict[tuple[str, ...], Reference] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 32


def get_reference(meta: MetaStore, blobs: TreeStore, model_name: str, version: int) -> Reference:
    """The compiled reference of a model version: its training features and ``prediction``.

    Raises:
        NotFound: no reference was recorded for the version.
    """
    refs = {r.kind: r for r in list_references(meta, model_name, version)}
    if TRAINING not in refs and PREDICTIONS not in refs:
        raise NotFound(
            f"Model {model_name} version {version} has no reference profile; record one with "
            "run.log_model(..., reference_data=X_train) or gyre.monitoring.record_reference()."
        )
    key = tuple(refs[k].digest for k in sorted(refs))
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
        if cached is not None:
            _CACHE.move_to_end(key)
            return cached
    merged = Profile()
    for kind in (TRAINING, PREDICTIONS):
        if kind in refs:
            prof = Profile.from_dict(json.loads(blobs.read_bytes(refs[kind].digest)))
            merged.rows = max(merged.rows, prof.rows)
            for name, col in prof.columns.items():
                if kind == TRAINING and name == PREDICTION:
                    continue  # a training column named like the output: the output wins
                merged.columns[name] = col
    compiled = Reference(merged)
    with _CACHE_LOCK:
        _CACHE[key] = compiled
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return compiled


# -- converting ------------------------------------------------------------------------------


def to_arrow(data: Any, names: Sequence[str] | None = None) -> pa.Table:
    """Tabular data of the kinds models take, as an Arrow table."""
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    pd = _pandas()
    if pd is not None and isinstance(data, pd.DataFrame):
        return pa.Table.from_pandas(data, preserve_index=False)
    if isinstance(data, np.ndarray):
        if data.ndim != 2:
            raise InvalidArgument(f"A numpy array of training data must be 2-D, got {data.ndim}-D.")
        cols = (
            list(names) if names and len(names) == data.shape[1] else [f"x{i}" for i in range(data.shape[1])]
        )
        return pa.table({c: data[:, i] for i, c in enumerate(cols)})
    if isinstance(data, Mapping):
        return pa.table(
            {str(k): np.asarray(v) if not isinstance(v, pa.Array) else v for k, v in data.items()}
        )
    if isinstance(data, Sequence) and data and all(isinstance(r, Mapping) for r in data):
        return pa.Table.from_pylist(list(data))
    raise InvalidArgument(
        f"Cannot profile {type(data).__name__}: pass an Arrow table, a pandas DataFrame, a dict of "
        "columns, a list of row dicts or a 2-D numpy array."
    )


def _pandas() -> Any:
    import sys

    return sys.modules.get("pandas")  # a DataFrame can only exist if pandas is imported


def _signature_inputs(signature: dict[str, Any] | None) -> list[str] | None:
    if not signature:
        return None
    return [c["name"] for c in signature.get("inputs") or []] or None


def _predict(model: Any, data: Any, table: pa.Table | None) -> Any:
    if not hasattr(model, "predict"):
        raise InvalidArgument(f"model must have a predict() method, got {type(model).__name__}.")
    n = table.num_rows if table is not None else None
    if n is not None and n > MAX_PREDICTION_ROWS:
        idx = np.sort(np.random.default_rng(0).choice(n, MAX_PREDICTION_ROWS, replace=False))
        pd = _pandas()
        if isinstance(data, np.ndarray):
            data = data[idx]
        elif pd is not None and isinstance(data, pd.DataFrame):
            data = data.iloc[idx]
        elif table is not None and isinstance(data, pa.Table | pa.RecordBatch):
            data = table.take(pa.array(idx))
    return model.predict(data)


def _as_1d(values: Any) -> np.ndarray | pa.Array | None:
    """Predictions as one value per row (a binary classifier's two columns as P(class 1));
    ``None`` for multi-output predictions, which have no single distribution to compare."""
    if isinstance(values, pa.Array | pa.ChunkedArray):
        return values
    arr = np.asarray(values)
    if arr.ndim == 2 and arr.shape[1] == 2:
        arr = arr[:, 1]
    elif arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        return None
    if arr.dtype == object:
        return pa.array([None if v is None else str(v) for v in arr.tolist()], pa.string())
    return arr


def _dataset_profile(meta: MetaStore, pinned: Mapping[str, Any]) -> tuple[Profile, str] | None:
    """The merged catalog profiles of the pinned dataset versions (every version up to the
    pinned one: the table as it was read), or None if none is profiled."""
    merged: Profile | None = None
    notes = []
    for name, upto in sorted(pinned.items()):
        try:
            versions = catalog.list_versions(meta, name)
        except NotFound:
            continue
        for v in versions:
            if v.profile is None or (upto is not None and v.version > int(upto)):
                continue
            prof = Profile.from_dict(v.profile)
            merged = prof if merged is None else merged.merge(prof)
        notes.append(f"{name}@{upto}")
    if merged is None:
        return None
    return merged, "dataset profiles " + ", ".join(notes)


def _info(r: ModelReference) -> ReferenceInfo:
    return ReferenceInfo(
        r.model_name, r.version, r.kind, r.digest, r.rows, list(r.columns or []), r.source, r.created_at
    )
