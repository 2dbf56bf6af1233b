"""An endpoint compiled for serving: everything decided once, when the server loads it.

Loading resolves the model reference to a version through the registry, fetches and loads
the package, reads its signature, compiles the online feature lookup, and fixes the plan:
which model columns come from the request and which from features, in what order, and how
each request field is checked. A batch then only does plain data work: concatenate the
requests' arrays, look up features for the entity keys, fill one float64 matrix in the
model's column order, call the model, and append one log record per row to the push buffer.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from gyre.errors import GyreError, InvalidArgument
from gyre.features.definitions import parse_ref
from gyre.meta import MetaStore
from gyre.meta.registry import list_registered
from gyre.models import registry
from gyre.models.loaded import LoadedModel
from gyre.serving.batching import Batcher, Job
from gyre.serving.errors import PredictionFailed, UnknownEntity
from gyre.serving.inputs import ANY, KEY, NUMERIC_KINDS, InputField, InputPlan, Prepared, kind_of_dtype
from gyre.serving.log import DATASET, as_number, new_ids
from gyre.serving.metrics import EndpointMetrics, ServingMetrics
from gyre.store import ArtifactStore

log = logging.getLogger(__name__)

# A batch runs inline in the event loop only if the model answers a row faster than this and
# the endpoint's feature lookup, if any, is in-process (a store round trip must not stall the
# loop; a thread hand-off for a SQLite read measured 2x the whole single-row prediction).
INLINE_MAX_MS = 1.0
_EMPTY_WINDOW = {"count": 0, "count_distinct": 0}


@dataclass(frozen=True)
class _ViewCheck:
    """What tells an unknown entity for one view: its join keys and its looked-up values."""

    view: str
    join_keys: tuple[str, ...]
    values: tuple[tuple[str, Any], ...]  # (full name, the value of an entity with nothing stored)


class CompiledEndpoint:
    """A loaded endpoint. Build it with :meth:`load`; requests call :attr:`plan` and :attr:`batcher`.

    Attributes:
        name: the endpoint's name.
        model_name, model_version: the version its model reference resolved to at load.
        plan: checks requests (the request fields, their kinds, the extra-field policy).
        batcher: batches the checked requests into model calls.
    """

    def __init__(
        self,
        name: str,
        spec: dict[str, Any],
        version: registry.ModelVersionInfo,
        model: LoadedModel,
        columns: list[tuple[str, str]],
        features: Any,
        feature_views: dict[str, Any],
        on_demand: dict[str, dict[str, Any]],
        push: Any,
        metrics: EndpointMetrics,
    ) -> None:
        self.name = name
        self.spec = spec
        self.model_name = version.name
        self.model_version = version.version
        self.flavor = version.flavor
        self.model = model
        self.push = push
        self.metrics = metrics
        self.columns = columns  # the model's (name, dtype), in the order it reads them
        self.outputs = list(model.signature.outputs) if model.signature else []
        self.defaults: dict[str, Any] = dict(spec.get("defaults") or {})
        self.unknown_is_error = spec.get("unknown_entity") == "error"

        declared = list(spec.get("features") or [])
        lookup_refs, request_inputs = _expand(declared, on_demand)
        # Model column -> the full (view__feature) name of the declared feature it reads.
        self._from_feature = {parse_ref(r)[1]: r.replace(":", "__") for r in declared}
        join_keys: list[str] = []
        self._checks: list[_ViewCheck] = []
        by_view: dict[str, list[str]] = {}
        for ref in lookup_refs:
            if ref not in on_demand:
                by_view.setdefault(parse_ref(ref)[0], []).append(ref)
        for view_name, refs in by_view.items():
            view = feature_views[view_name]
            join_keys += [k for k in view.join_keys if k not in join_keys]
            windows = {w.name: w.function for w in view.windows}
            empty = tuple(
                (r.replace(":", "__"), _EMPTY_WINDOW.get(windows.get(parse_ref(r)[1], ""))) for r in refs
            )
            self._checks.append(_ViewCheck(view_name, tuple(view.join_keys), empty))

        # The request's fields: model columns not fed by features, then entity keys, then the
        # request values on-demand features read.
        fields: list[InputField] = []
        for column, dtype in columns:
            if column not in self._from_feature:
                kind = kind_of_dtype(dtype)
                fields.append(InputField(column, kind, kind in NUMERIC_KINDS))
        listed = {f.name for f in fields}
        fields += [InputField(k, KEY, False) for k in join_keys if k not in listed]
        listed |= set(join_keys)
        fields += [InputField(r, ANY, False) for r in request_inputs if r not in listed]
        self.plan = InputPlan(fields, spec.get("extra_fields", "reject"))
        self.numeric = all(kind_of_dtype(d) in NUMERIC_KINDS for _, d in columns)

        # Where a batch finds each value: ("num", j) or ("obj", j) of the prepared request.
        where = {f.name: ("num", j) for j, f in enumerate(self.plan.num_fields)}
        where |= {f.name: ("obj", j) for j, f in enumerate(self.plan.obj_fields)}
        self._entity_fields = [(k, where[k]) for k in join_keys]
        self._lookup_fields = [(k, where[k]) for k in dict.fromkeys([*join_keys, *request_inputs])]
        self._lookup = features.lookup(lookup_refs) if lookup_refs else None
        # The model matrix: request columns (positions in X, columns of num) and feature columns.
        self._request_pos = [i for i, (c, _) in enumerate(columns) if c not in self._from_feature]
        self._request_src = [where[c][1] for c, _ in columns if c not in self._from_feature]
        self._feature_pos = [
            (i, c, self._from_feature[c]) for i, (c, _) in enumerate(columns) if c in self._from_feature
        ]
        self._identity = (
            self.numeric and not self._feature_pos and self._request_src == list(range(len(columns)))
        )
        # Feature columns without a declared default are filled in one conversion (None becomes
        # NaN, as it would column by column): ~1 µs a row against ~15 µs for ten columns.
        self._feature_cols = [pos for pos, _, _ in self._feature_pos]
        self._feature_rows = (
            itemgetter(*(full for _, _, full in self._feature_pos))
            if self._feature_pos and not any(c in self.defaults for _, c, _ in self._feature_pos)
            else None
        )

        self.call_ms = self._warm_up()
        inline = self.call_ms < INLINE_MAX_MS and (self._lookup is None or self._lookup.in_process)
        self.executor = None if inline else ThreadPoolExecutor(1, thread_name_prefix=f"gyre-endpoint-{name}")
        self.batcher = Batcher(
            self.run_batch,
            max_batch_size=int(spec.get("max_batch_size", 64)),
            max_wait_s=float(spec.get("max_wait_ms", 2)) / 1000,
            executor=self.executor,
        )

    # -- loading -----------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        name: str,
        spec: dict[str, Any],
        *,
        meta: MetaStore,
        store: ArtifactStore,
        features: Any,
        cache_dir: Path,
        push: Any,
        metrics: ServingMetrics,
        version: int | None = None,
    ) -> CompiledEndpoint:
        """Resolve, fetch and load the endpoint's model and compile its plan.

        Args:
            version: load this version of the endpoint's model (a deployment's baseline or
                candidate) instead of the one its model reference resolves to.

        Raises:
            GyreError: the model, a feature, or the signature cannot be used; the message says why.
        """
        from gyre.models.package import load_model_package

        ref = f"models:/{spec['model']}"
        if version is not None:
            ref = f"models:/{registry.parse_model_uri(ref).name}/{version}"
        info = registry.resolve(meta, ref)
        path = fetch_package(store, info.package_digest, cache_dir, info.uri)
        model = load_model_package(path)
        if model.signature is None or not model.signature.inputs:
            raise InvalidArgument(
                f"Model {info.uri} has no input signature, so requests cannot be checked or its "
                "columns ordered; log it again with input_example= (or signature=)."
            )
        columns = [(c.name, c.dtype) for c in model.signature.inputs]
        declared = list(spec.get("features") or [])
        views: dict[str, Any] = {}
        on_demand: dict[str, dict[str, Any]] = {}
        if declared:
            views = features.views()
            on_demand = {r.name: r.spec for r in list_registered(meta, "on_demand_feature")}
        return cls(
            name,
            spec,
            info,
            model,
            columns,
            features,
            views,
            on_demand,
            push,
            metrics.for_endpoint(name, info.name, info.version),
        )

    def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=True)

    @property
    def idle(self) -> bool:
        """No request is queued, arriving or being predicted (safe to close)."""
        return self.batcher.idle

    def entity_key(self, prepared: Prepared) -> tuple[Any, ...] | None:
        """The entity keys of the request's first row (None if the endpoint reads none)."""
        if not self._entity_fields or prepared.n == 0:
            return None
        return tuple(
            prepared.num[0, j].item() if src == "num" else prepared.obj[j][0]
            for _, (src, j) in self._entity_fields
        )

    def describe(self) -> dict[str, Any]:
        """What ``GET /v1/endpoints/{name}`` shows."""
        return {
            "name": self.name,
            "model": self.model_name,
            "model_version": self.model_version,
            "model_ref": self.spec.get("model"),
            "flavor": self.flavor,
            "features": list(self.spec.get("features") or []),
            "inputs": [{"name": f.name, "kind": f.kind} for f in self.plan.fields],
            "model_columns": [{"name": c, "dtype": d} for c, d in self.columns],
            "outputs": [c.to_dict() for c in self.outputs],
            "max_batch_size": self.batcher.max_batch_size,
            "max_wait_ms": self.batcher.max_wait_s * 1000,
            "extra_fields": self.spec.get("extra_fields", "reject"),
            "unknown_entity": self.spec.get("unknown_entity", "defaults"),
            "runs_inline": self.executor is None,
        }

    # -- a batch -----------------------------------------------------------------------------

    def run_batch(self, jobs: list[Job]) -> None:
        """Predict for ``jobs`` and log every prediction; sets each job's outputs or error.

        A failing batch of several requests is retried one request at a time, so one bad
        request cannot fail the others.
        """
        try:
            self._run(jobs)
        except Exception as exc:
            if len(jobs) == 1:
                jobs[0].error = exc
            else:
                for job in jobs:
                    try:
                        self._run([job])
                    except Exception as exc1:
                        job.error = exc1
            self._log_failures(jobs)

    def _log_failures(self, jobs: list[Job]) -> None:
        """Log the rows of jobs that failed in the server (5xx), so the log knows error rates.

        A failure to log them is only reported: the requests are answered with their error anyway.
        """
        failed = [j for j in jobs if j.error is not None and _status(j.error) >= 500]
        if not failed or self.push is None:
            return
        try:
            num, obj = _concat([j.prepared for j in failed])
            ids = new_ids(len(num))
            errors = [_message(j.error) for j in failed for _ in range(j.n)]
            self._log(failed, ids, [None] * len(num), num, obj, None, None, errors)
        except Exception:
            log.exception("Endpoint '%s': logging %d failed request(s) failed", self.name, len(failed))

    def _run(self, jobs: list[Job]) -> None:
        preps = [j.prepared for j in jobs]
        num, obj = _concat(preps)
        n = len(num)
        feats: list[dict[str, Any]] | None = None
        entities: list[dict[str, Any]] | None = None
        if self._lookup is not None:
            entities = _records(self._lookup_fields, num, obj, n)
            try:
                feats = self._lookup.get(entities, full_names=True)
            except GyreError:
                raise
            except Exception as exc:
                raise PredictionFailed(
                    f"Looking up the features of endpoint '{self.name}' failed: {type(exc).__name__}: {exc}"
                ) from exc
            if self.unknown_is_error:
                keep = self._refuse_unknown(jobs, entities, feats)
                if keep is not None:
                    if not keep:
                        return
                    self._run(keep)
                    return
        x = self._matrix(num, obj, feats, n)
        try:
            out = self.model.predict_numpy(x) if self.numeric else self.model.predict(x)
        except Exception as exc:
            raise PredictionFailed(
                f"Model {self.model_name} version {self.model_version} failed on {n} row(s): "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        self.metrics.batch_size.observe(n)
        outputs = np.asarray(out).tolist()
        if len(outputs) != n:
            raise PredictionFailed(
                f"Model {self.model_name} version {self.model_version} returned {len(outputs)} "
                f"predictions for {n} rows."
            )
        ids = new_ids(n)
        self._log(jobs, ids, outputs, num, obj, entities, feats)
        start = 0
        for job in jobs:
            end = start + job.n
            job.outputs, job.ids = outputs[start:end], ids[start:end]
            start = end

    def _matrix(
        self, num: np.ndarray, obj: list[list[Any]], feats: list[dict[str, Any]] | None, n: int
    ) -> Any:
        """The model's input: a float64 matrix in its column order (or, for a model with text
        columns, a dict of columns for ``LoadedModel.predict``)."""
        if self._identity:
            return num
        if not self.numeric:
            cols: dict[str, Any] = {}
            kinds = {f.name: ("num", j) for j, f in enumerate(self.plan.num_fields)}
            kinds |= {f.name: ("obj", j) for j, f in enumerate(self.plan.obj_fields)}
            for column, _ in self.columns:
                if column in self._from_feature:
                    full = self._from_feature[column]
                    default = self.defaults.get(column)
                    cols[column] = [default if (v := r[full]) is None else v for r in feats or ()]
                else:
                    src, j = kinds[column]
                    cols[column] = num[:, j] if src == "num" else obj[j]
            return cols
        x = np.empty((n, len(self.columns)), dtype=np.float64)
        if self._request_pos:
            x[:, self._request_pos] = num[:, self._request_src]
        if self._feature_rows is not None and feats is not None:
            rows = [self._feature_rows(r) for r in feats]
            try:
                x[:, [pos for pos, _, _ in self._feature_pos]] = np.array(rows, dtype=np.float64).reshape(
                    n, -1
                )
                return x
            except (TypeError, ValueError):
                pass  # a value that is not a number: the column-by-column path names it
        for pos, column, full in self._feature_pos:
            default = self.defaults.get(column)
            default = np.nan if default is None else default
            values = [default if (v := r[full]) is None else v for r in feats or ()]
            try:
                x[:, pos] = values
            except (TypeError, ValueError):
                bad = next(v for v in values if not isinstance(v, int | float))
                raise PredictionFailed(
                    f"Feature '{full.replace('__', ':', 1)}' holds {bad!r}, but model "
                    f"{self.model_name} reads '{column}' as a number."
                ) from None
        return x

    def _refuse_unknown(
        self, jobs: list[Job], entities: list[dict[str, Any]], feats: list[dict[str, Any]]
    ) -> list[Job] | None:
        """Fail the jobs with an unknown entity; None if there are none, else the others."""
        keep: list[Job] = []
        start = 0
        for job in jobs:
            for i in range(start, start + job.n):
                check = next((c for c in self._checks if _unknown(c, feats[i])), None)
                if check is not None:
                    entity = {k: entities[i][k] for k in check.join_keys}
                    shown = ", ".join(f"{k}={v!r}" for k, v in entity.items())
                    job.error = UnknownEntity(
                        f"Unknown entity {shown}: the online store has no features for it in view "
                        f"'{check.view}', and endpoint '{self.name}' refuses unknown entities "
                        "(unknown_entity='error'; declare 'defaults' to predict with defaults).",
                        entity,
                    )
                    break
            else:
                keep.append(job)
            start += job.n
        return None if len(keep) == len(jobs) else keep

    def _log(
        self,
        jobs: list[Job],
        ids: list[str],
        outputs: list[Any],
        num: np.ndarray,
        obj: list[list[Any]],
        entities: list[dict[str, Any]] | None,
        feats: list[dict[str, Any]] | None,
        errors: list[str] | None = None,
    ) -> None:
        if self.push is None:
            return
        now = time.perf_counter()
        at = datetime.now(UTC).isoformat()
        num_names = [f.name for f in self.plan.num_fields]
        obj_names = [f.name for f in self.plan.obj_fields]
        num_rows = num.tolist()
        dumps = orjson.dumps
        entity_keys = [k for k, _ in self._entity_fields]
        records = []
        i = 0
        for job in jobs:
            latency = (now - job.started) * 1000
            shadow_of = job.shadow_of
            for k in range(job.n):
                inputs = dict(zip(num_names, num_rows[i], strict=True))
                for j, name in enumerate(obj_names):
                    inputs[name] = obj[j][i]
                output = outputs[i]
                records.append(
                    {
                        "prediction_id": ids[i],
                        "time": at,
                        "endpoint": self.name,
                        "model": self.model_name,
                        "model_version": self.model_version,
                        "entity": dumps({k: entities[i][k] for k in entity_keys}).decode()
                        if entities is not None
                        else None,
                        "features": dumps(feats[i]).decode() if feats is not None else None,
                        "inputs": dumps(inputs).decode(),
                        "output": dumps(output).decode() if errors is None else None,
                        "prediction": as_number(output),
                        "latency_ms": latency,
                        "error": errors[i] if errors is not None else None,
                        "shadow_of": shadow_of[k] if shadow_of is not None else None,
                    }
                )
                i += 1
        try:
            self.push.append(DATASET, records, checked=True)
        except Exception as exc:
            raise PredictionFailed(
                f"Logging the predictions of endpoint '{self.name}' failed, so none was answered: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    def _warm_up(self) -> float:
        """Milliseconds one single-row call takes (the model's first calls are slow: run three)."""
        if not self.numeric:
            return float("inf")
        x = np.zeros((1, len(self.columns)))
        best = float("inf")
        try:
            for _ in range(3):
                t = time.perf_counter()
                self.model.predict_numpy(x)
                best = min(best, (time.perf_counter() - t) * 1000)
        except Exception as exc:  # a model may refuse zeros; it is judged on real rows
            log.info("Endpoint '%s': warm-up on a row of zeros failed: %s", self.name, exc)
        return best


def _expand(declared: Sequence[str], on_demand: dict[str, dict[str, Any]]) -> tuple[list[str], list[str]]:
    """The references to look up (declared ones and what on-demand ones read) and the request
    values on-demand features read."""
    refs: list[str] = []
    request: list[str] = []

    def add(ref: str) -> None:
        if ref in refs:
            return
        if ref in on_demand:
            for i in on_demand[ref].get("inputs", []):
                if ":" in i:
                    add(i)
                elif i not in request:
                    request.append(i)
        refs.append(ref)

    for ref in declared:
        add(ref)
    return refs, request


def _concat(preps: list[Prepared]) -> tuple[np.ndarray, list[list[Any]]]:
    if len(preps) == 1:
        return preps[0].num, preps[0].obj
    num = np.concatenate([p.num for p in preps])
    width = len(preps[0].obj)
    obj = [[v for p in preps for v in p.obj[j]] for j in range(width)]
    return num, obj


def _records(
    fields: list[tuple[str, tuple[str, int]]], num: np.ndarray, obj: list[list[Any]], n: int
) -> list[dict[str, Any]]:
    """Per row, ``{field: value}`` for ``fields`` (where each lives in the prepared arrays)."""
    if not fields:
        return [{} for _ in range(n)]
    names = [name for name, _ in fields]
    columns = [num[:, j].tolist() if src == "num" else obj[j] for _, (src, j) in fields]
    return [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]


def _status(exc: BaseException) -> int:
    return exc.status_code if isinstance(exc, GyreError) else 500


def _message(exc: BaseException | None) -> str:
    if isinstance(exc, GyreError):
        return exc.message
    return f"{type(exc).__name__}: {exc}"


def _unknown(check: _ViewCheck, row: dict[str, Any]) -> bool:
    return all(row[name] is None or row[name] == empty for name, empty in check.values)


def fetch_package(store: ArtifactStore, digest: str, cache_dir: Path, name: str) -> Path:
    """The model package ``digest``, downloaded once into ``cache_dir/digest`` (verified).

    The same cache :meth:`gyre.Client.model_path` fills, so a model the SDK loaded is not
    downloaded again.
    """
    cache = cache_dir / digest
    if not (cache / ".complete").exists():
        tmp = cache.with_name(f"{digest}.{os.getpid()}.partial")
        store.get_tree(digest, tmp, name)
        (tmp / ".complete").touch()
        try:
            tmp.rename(cache)
        except OSError:  # another process finished the same download first
            shutil.rmtree(tmp, ignore_errors=True)
    return cache
