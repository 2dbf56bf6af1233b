"""Reading the prediction log: the one module that knows its column names.

Serving appends every prediction to the lake dataset ``predictions`` (through the push
buffer), one row per prediction. Monitoring reads windows of it through the functions here,
which return a fixed shape whatever the log's physical columns are called:

``prediction_id, ts, endpoint, model, model_version, <feature columns...>, prediction``

Feature columns come from the JSON objects the log holds (the request's inputs, overlaid by
the online feature values the model was given, under the short names the model reads them
by: ``view__feature`` becomes ``feature``), decoded with Arrow's JSON reader; ``prediction``
is the output as a number (a binary classifier's P(class 1)) or a string (a class label).
The log's layout is :mod:`gyre.serving.log`'s; if serving renames a column, :data:`LOG` is the
one place to follow it.

Two kinds of rows are not served predictions, and the log tells them apart by two nullable
columns (absent from logs written before serving added them: every row is then a served
success):

* a failed request has ``error`` set and no output. It counts in the error rate
  (:func:`service_stats`: failed / all served requests) and nowhere else;
* a shadow deployment's prediction has ``shadow_of`` set to the served prediction it copies. It
  was never answered, so it is left out of everything about served traffic; :func:`version_stats`
  and :func:`shadow_window` read it, and its labels are those of the prediction it copies.

Drift, quality counts, latency and the feedback join read served successful predictions only.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from gyre.data.lake import Lake
from gyre.errors import InvalidArgument, NotFound

DATASET = "predictions"


@dataclass(frozen=True)
class LogColumns:
    """The prediction log's physical column names."""

    prediction_id: str = "prediction_id"
    ts: str = "time"
    endpoint: str = "endpoint"
    model: str = "model"
    model_version: str = "model_version"
    keys: str = "entity"  # JSON object: the entity keys of the request
    features: str = "features"  # JSON object: online feature values used, {"view__feature": v}
    inputs: str = "inputs"  # JSON object: the request values the endpoint read
    output: str = "output"  # JSON value: what the model answered
    number: str = "prediction"  # the output when it is one number, else null
    latency_ms: str = "latency_ms"
    # Both optional (older logs lack them): without ``error`` every row succeeded, without
    # ``shadow_of`` every row was served.
    error: str = "error"  # null on success, else why the prediction failed (output then null)
    shadow_of: str = "shadow_of"  # a shadow prediction: the prediction_id of the served one it copies


LOG = LogColumns()
BASE = ("prediction_id", "ts", "endpoint", "model", "model_version")
SERVED, SHADOW = "served", "shadow"


def exists(lake: Lake) -> bool:
    return lake.exists(DATASET)


def _filter(
    endpoint: str | None, start: datetime | None, end: datetime | None, model_version: int | None
) -> pc.Expression | None:
    parts = []
    if endpoint is not None:
        parts.append(pc.field(LOG.endpoint) == endpoint)
    if start is not None:
        parts.append(pc.field(LOG.ts) >= pa.scalar(_utc(start), pa.timestamp("us", "UTC")))
    if end is not None:
        parts.append(pc.field(LOG.ts) < pa.scalar(_utc(end), pa.timestamp("us", "UTC")))
    if model_version is not None:
        parts.append(pc.field(LOG.model_version) == model_version)
    return _all(parts)


def _read(
    lake: Lake,
    columns: Sequence[str],
    flt: pc.Expression | None,
    *,
    traffic: str | None = SERVED,
    ok: bool = False,
) -> pa.Table:
    """The log's rows matching ``flt``, with those of ``columns`` the log has.

    Args:
        traffic: ``"served"`` (``shadow_of`` null), ``"shadow"`` (``shadow_of`` set) or None (both).
        ok: successful predictions only (``error`` null).
    """
    if not lake.exists(DATASET):
        return pa.table({c: pa.array([], pa.null()) for c in columns})
    ds = lake.scan(DATASET)
    names = ds.schema.names
    present = [c for c in columns if c in names]
    parts = [] if flt is None else [flt]
    if traffic is not None and LOG.shadow_of in names:
        shadow = pc.field(LOG.shadow_of).is_valid()
        parts.append(shadow if traffic == SHADOW else ~shadow)
    elif traffic == SHADOW:  # a log from before shadow deployments: no shadow rows
        return ds.schema.empty_table().select(present)
    if ok and LOG.error in names:
        parts.append(pc.field(LOG.error).is_null())
    return ds.to_table(columns=present, filter=_all(parts))


def _all(parts: list[pc.Expression]) -> pc.Expression | None:
    if not parts:
        return None
    expr = parts[0]
    for p in parts[1:]:
        expr = expr & p
    return expr


def read_window(
    lake: Lake,
    endpoint: str | None,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    model_version: int | None = None,
    features: Iterable[str] | None = None,
) -> pa.Table:
    """The logged predictions of ``endpoint`` with ``start <= ts < end``, one row each.

    Args:
        features: the feature columns wanted (default: every field the JSON objects hold).
            Wanted features missing from the log come back as null columns.

    Returns:
        ``prediction_id, ts, endpoint, model, model_version``, the features, and
        ``prediction``: served successful predictions only (no failed request, no shadow).
    """
    cols = [
        LOG.prediction_id, LOG.ts, LOG.endpoint, LOG.model, LOG.model_version,
        LOG.features, LOG.inputs, LOG.output, LOG.number,
    ]  # fmt: skip
    raw = _read(lake, cols, _filter(endpoint, start, end, model_version), ok=True)
    return _shape(raw, list(features) if features is not None else None)


def _shape(raw: pa.Table, wanted: list[str] | None) -> pa.Table:
    n = raw.num_rows
    out: dict[str, pa.Array | pa.ChunkedArray] = {}
    types = {
        "prediction_id": pa.string(),
        "ts": pa.timestamp("us", "UTC"),
        "endpoint": pa.string(),
        "model": pa.string(),
        "model_version": pa.int64(),
    }
    for name in BASE:
        physical = getattr(LOG, name)
        if physical in raw.column_names and raw[physical].type != pa.null():
            out[name] = pc.cast(raw[physical], types[name])
        else:
            out[name] = pa.nulls(n, types[name])
    merged: dict[str, pa.ChunkedArray | pa.Array] = {}
    if LOG.inputs in raw.column_names:
        inputs = _decode_objects(raw[LOG.inputs])
        merged.update(zip(inputs.column_names, inputs.columns, strict=True))
    if LOG.features in raw.column_names:  # they overlay inputs: they are what the model was given
        feats = _decode_objects(raw[LOG.features])
        for name, column in zip(feats.column_names, feats.columns, strict=True):
            merged[name.split("__", 1)[-1]] = column  # the name the model reads it by
    names = wanted if wanted is not None else list(merged)
    for name in names:
        key = name if name not in out and name != "prediction" else f"feature.{name}"
        out[key] = merged[name] if name in merged else pa.nulls(n)
    out["prediction"] = _prediction(raw)
    return pa.table(out)


def _prediction(raw: pa.Table) -> pa.Array | pa.ChunkedArray:
    n = raw.num_rows
    number = raw[LOG.number] if LOG.number in raw.column_names else None
    if number is not None and pa.types.is_floating(number.type) and number.null_count == 0:
        return number  # every output a number: serving decoded it already
    if LOG.output in raw.column_names:
        return _decode_output(raw[LOG.output])
    return pc.cast(number, pa.float64()) if number is not None else pa.nulls(n, pa.float64())


def _decode_objects(column: pa.ChunkedArray) -> pa.Table:
    """A column of JSON object strings as a table of their fields (nulls for missing fields)."""
    n = len(column)
    if not n or column.null_count == n:  # e.g. an endpoint that looks up no features
        return pa.table({})
    if pa.types.is_struct(column.type):
        return pa.Table.from_struct_array(column)
    strings = pc.fill_null(pc.cast(column, pa.string()), "{}")
    data = "\n".join(s if s else "{}" for s in strings.to_pylist()).encode()
    try:
        # Arrow's reader infers types over the whole buffer in one block, vectorised.
        table = pajson.read_json(
            io.BytesIO(data), read_options=pajson.ReadOptions(block_size=max(len(data), 1 << 20))
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        # Mixed types in one field (a number here, a string there): decode row by row.
        rows = [json.loads(s) if s else {} for s in strings.to_pylist()]
        table = pa.Table.from_pylist([{k: _scalar(v) for k, v in r.items()} for r in rows])
    if table.num_rows != n:  # an empty object yields no row in some Arrow versions
        rows = [json.loads(s) if s else {} for s in strings.to_pylist()]
        table = pa.Table.from_pylist([{k: _scalar(v) for k, v in r.items()} for r in rows])
    return table


def _scalar(v: Any) -> Any:
    return json.dumps(v) if isinstance(v, list | dict) else v


def _decode_output(column: pa.ChunkedArray) -> pa.Array:
    """The model's output as one value per row: a number, or a string for class labels.

    A JSON list of two probabilities becomes P(class 1); longer lists stay JSON text.
    """
    t = column.type
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t):
        return pc.cast(column, pa.float64())
    values = [_output_value(s) for s in pc.cast(column, pa.string()).to_pylist()]
    if all(v is None or isinstance(v, int | float) for v in values):
        return pa.array(values, pa.float64())
    return pa.array([None if v is None else str(v) for v in values], pa.string())


def _output_value(text: str | None) -> Any:
    if text is None:
        return None
    try:
        v = json.loads(text)
    except ValueError:
        return text
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, list) and len(v) == 2 and all(isinstance(x, int | float) for x in v):
        return float(v[1])
    if isinstance(v, list | dict):
        return json.dumps(v)
    return v


def find(
    lake: Lake, prediction_ids: Sequence[str], *, around: tuple[datetime, datetime] | None = None
) -> pa.Table:
    """The served predictions with these ids (``prediction_id, ts, endpoint, model,
    model_version, prediction, error``), failed ones included (``error`` set, ``prediction``
    null); ids not in the log, and shadow predictions, are simply absent.

    Args:
        around: a time range the predictions were made in (from the ids' ULID timestamps),
            so the read skips the log's files outside it.
    """
    cols = [
        LOG.prediction_id, LOG.ts, LOG.endpoint, LOG.model, LOG.model_version,
        LOG.output, LOG.number, LOG.error,
    ]  # fmt: skip
    flt = pc.field(LOG.prediction_id).isin(pa.array(list(prediction_ids), pa.string()))
    if around is not None:
        flt = flt & (pc.field(LOG.ts) >= pa.scalar(_utc(around[0]), pa.timestamp("us", "UTC")))
        flt = flt & (pc.field(LOG.ts) <= pa.scalar(_utc(around[1]), pa.timestamp("us", "UTC")))
    raw = _read(lake, cols, flt)
    return _shape(raw, []).append_column("error", _errors(raw))


def shadow_window(
    lake: Lake,
    endpoint: str,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    model_version: int | None = None,
) -> pa.Table:
    """The successful shadow predictions of ``endpoint`` with ``start <= ts < end``:
    ``prediction_id, ts, endpoint, model, model_version, prediction, shadow_of`` (the served
    prediction each copies; its label is theirs). Empty for logs without shadow traffic."""
    cols = [
        LOG.prediction_id, LOG.ts, LOG.endpoint, LOG.model, LOG.model_version,
        LOG.output, LOG.number, LOG.shadow_of,
    ]  # fmt: skip
    raw = _read(lake, cols, _filter(endpoint, start, end, model_version), traffic=SHADOW, ok=True)
    copies = raw[LOG.shadow_of] if LOG.shadow_of in raw.column_names else pa.nulls(raw.num_rows)
    return _shape(raw, []).append_column("shadow_of", pc.cast(copies, pa.string()))


def _errors(raw: pa.Table) -> pa.Array | pa.ChunkedArray:
    if LOG.error in raw.column_names and raw[LOG.error].type != pa.null():
        return pc.cast(raw[LOG.error], pa.string())
    return pa.nulls(raw.num_rows, pa.string())


def counts(
    lake: Lake, endpoint: str, start: datetime | None, end: datetime | None
) -> dict[tuple[str, int], int]:
    """How many served successful predictions each (model, version) of ``endpoint`` made in
    the window."""
    raw = _read(lake, [LOG.model, LOG.model_version], _filter(endpoint, start, end, None), ok=True)
    if not raw.num_rows or LOG.model_version not in raw.column_names:
        return {}
    grouped = raw.group_by([LOG.model, LOG.model_version]).aggregate([([], "count_all")])
    return {
        (m, int(v)): int(c)
        for m, v, c in zip(
            grouped[LOG.model].to_pylist(),
            grouped[LOG.model_version].to_pylist(),
            grouped["count_all"].to_pylist(),
            strict=True,
        )
        if v is not None
    }


@dataclass(frozen=True)
class ServiceStats:
    """Requests, failures and latency of an endpoint's served traffic over a window."""

    requests: int
    errors: int
    p50_ms: float | None
    p99_ms: float | None

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None


def service_stats(lake: Lake, endpoint: str, start: datetime | None, end: datetime | None) -> ServiceStats:
    """Served requests of ``endpoint`` in the window, how many failed, and the latency
    quantiles of the successful ones (shadow predictions are not requests anyone sent)."""
    raw = _read(lake, [LOG.latency_ms, LOG.error], _filter(endpoint, start, end, None))
    failed = pc.is_valid(_errors(raw))
    p50, p99 = _latency(raw, pc.invert(failed))
    return ServiceStats(raw.num_rows, int(pc.sum(failed).as_py() or 0), p50, p99)


def _latency(raw: pa.Table, keep: pa.Array | pa.ChunkedArray) -> tuple[float | None, float | None]:
    """p50 and p99 latency of the rows of ``raw`` where ``keep`` holds."""
    if LOG.latency_ms not in raw.column_names or raw[LOG.latency_ms].type == pa.null():
        return None, None
    lat = pc.cast(raw[LOG.latency_ms].filter(keep).drop_null(), pa.float64()).to_numpy(zero_copy_only=False)
    if not len(lat):
        return None, None
    p50, p99 = np.quantile(lat, [0.5, 0.99])
    return float(p50), float(p99)


@dataclass(frozen=True)
class VersionStats:
    """One model version's requests over a window, served or shadow.

    ``predictions`` holds the successful predictions' values, in log order: float64 for
    numbers (a binary classifier's P(class 1)), an object array of strings for class labels.
    Latency quantiles cover the successful predictions.
    """

    model: str
    model_version: int
    requests: int
    errors: int
    p50_ms: float | None
    p99_ms: float | None
    predictions: np.ndarray = field(repr=False)

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None


def version_stats(
    lake: Lake,
    endpoint: str,
    start: datetime | None,
    end: datetime | None,
    *,
    shadow: bool = False,
    model: str | None = None,
) -> dict[int, VersionStats]:
    """Per model version of ``endpoint`` in ``[start, end)``: requests, failures, latency and
    prediction values of its served traffic, or with ``shadow`` of its shadow traffic.

    Args:
        model: only this model's versions. Needed when two models behind the endpoint logged
            the same version number in the window.

    Raises:
        InvalidArgument: two models share a version number in the window and ``model`` is None.
    """
    flt = _filter(endpoint, start, end, None)
    if model is not None:
        flt = _all([f for f in (flt, pc.field(LOG.model) == model) if f is not None])
    cols = [LOG.model, LOG.model_version, LOG.latency_ms, LOG.error, LOG.output, LOG.number]
    raw = _read(lake, cols, flt, traffic=SHADOW if shadow else SERVED)
    if not raw.num_rows or LOG.model_version not in raw.column_names:
        return {}
    pairs = raw.select([LOG.model, LOG.model_version]).group_by([LOG.model, LOG.model_version]).aggregate([])
    names: dict[int, str] = {}
    found = zip(pairs[LOG.model].to_pylist(), pairs[LOG.model_version].to_pylist(), strict=True)
    for m, v in sorted(((str(m), int(v)) for m, v in found if v is not None)):
        if names.setdefault(v, m) != m:
            raise InvalidArgument(
                f"Models '{names[v]}' and '{m}' both logged version {v} on endpoint "
                f"'{endpoint}' in this window; pass model= to choose one."
            )
    failed = pc.is_valid(_errors(raw))
    out: dict[int, VersionStats] = {}
    for version, name in sorted(names.items()):
        mine = pc.equal(raw[LOG.model_version], version)
        rows_ok = pc.and_(mine, pc.invert(failed))
        p50, p99 = _latency(raw, rows_ok)
        values = _prediction(raw.filter(rows_ok))
        out[version] = VersionStats(
            model=name,
            model_version=version,
            requests=int(pc.sum(mine).as_py() or 0),
            errors=int(pc.sum(pc.and_(mine, failed)).as_py() or 0),
            p50_ms=p50,
            p99_ms=p99,
            predictions=np.asarray(values.to_numpy(zero_copy_only=False)),
        )
    return out


def endpoints(lake: Lake, since: datetime | None = None) -> list[str]:
    """The endpoints with served requests logged since ``since`` (all, if None), failed ones
    included: an endpoint that only fails is still watched."""
    raw = _read(lake, [LOG.endpoint], _filter(None, since, None, None))
    if not raw.num_rows or LOG.endpoint not in raw.column_names:
        return []
    return sorted(v for v in pc.unique(raw[LOG.endpoint]).to_pylist() if v is not None)


def require(lake: Lake) -> None:
    if not lake.exists(DATASET):
        raise NotFound(
            f"No prediction log yet: the lake has no '{DATASET}' dataset. Serve predictions "
            "(gyre serve) and they are logged there."
        )


def _utc(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def window_bounds(window: timedelta, end: datetime | None = None) -> tuple[datetime, datetime]:
    """``(end - window, end)``, ``end`` defaulting to now (UTC)."""
    end = _utc(end) if end is not None else datetime.now(UTC)
    return end - window, end
