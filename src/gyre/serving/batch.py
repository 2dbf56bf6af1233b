"""Batch scoring: a registered model over one version of a dataset, into another dataset.

``gyre score models:/fraud@champion payments@4 --out payments_scored`` (or :func:`score`)
streams the input version in record batches, builds the model's float64 matrix in its
signature's column order, predicts, and appends the kept columns (the input's keys by
default) and ``prediction`` to the output dataset.

All or nothing: the output is written by **one** Delta commit, fed by the stream of scored
batches, so a failure at any row (a model error, a lost Ray worker, Ctrl-C) leaves the output
dataset as it was. A failed run can leave unreferenced Parquet files behind, which ``gyre
datasets vacuum`` removes. Columns are checked against the signature before the first row is
read, and a model package that is missing or corrupt fails before anything is written.

Lineage: the commit's metadata and the catalog's version record (``offsets``, the input
position the version covers, as a stream ingest records its sequence numbers) hold the model
name and version and the input dataset name and version.

Compute: in this process (``local``), or on Ray (``ray:local``, ``ray://host:port``,
``ray:auto``): Ray Data reads the version's Parquet files and scores them with one model
copy per actor; the driver streams the results back and makes the one commit.

Memory does not grow with the rows: one Parquet row group being read, a batch or two being
predicted, and the lake writer's buffer of the output file it is writing (deltalake's target
file size, ~100 MB of encoded output).
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gyre.data import catalog
from gyre.data.lake import DataFile, Lake, check_dataset_name
from gyre.errors import GyreError, InvalidArgument, NotFound
from gyre.models import registry
from gyre.serving.errors import PredictionFailed
from gyre.serving.inputs import NUMERIC_KINDS, kind_of_dtype

if TYPE_CHECKING:
    from gyre.config import Settings
    from gyre.meta import MetaStore
    from gyre.models.loaded import LoadedModel
    from gyre.store import ArtifactStore

DEFAULT_BATCH_ROWS = 65_536
PREDICTION = "prediction"
_DATASET_REF = re.compile(r"^([^@]+)(?:@(\d+))?$")

ProgressCallback = Callable[[int, int], None]
"""Called after each scored batch with its row count and the input's total rows."""


@dataclass
class ScoreResult:
    """What a scoring run wrote: the output version, and the model and input it came from."""

    model: str
    model_version: int
    dataset: str
    dataset_version: int
    out: str
    out_version: int
    rows: int
    columns: list[str]
    compute: str
    seconds: float

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rows_per_second": self.rows_per_second}


def parse_dataset_ref(text: str) -> tuple[str, int | None]:
    """``payments`` -> (``payments``, None: the latest); ``payments@3`` -> (``payments``, 3)."""
    match = _DATASET_REF.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise InvalidArgument(
            f"{text!r} is not a dataset reference; write NAME for its latest version or NAME@VERSION, "
            "e.g. payments@3."
        )
    name, version = match.group(1), match.group(2)
    return check_dataset_name(name), int(version) if version is not None else None


@dataclass(frozen=True)
class _Plan:
    """Everything decided before the first row is read."""

    model: registry.ModelVersionInfo
    dataset: str
    version: int
    files: tuple[DataFile, ...]  # the version's Parquet files
    inputs: list[str]  # the model's columns, in the order it reads them
    numeric: bool  # every input is a number: one float64 matrix, predict_numpy
    keep: list[str]
    event_time: str | None  # the input's event-time column, when it is kept

    @property
    def total_rows(self) -> int:
        return sum(f.rows for f in self.files)

    @property
    def read_columns(self) -> list[str]:
        return list(dict.fromkeys([*self.keep, *self.inputs]))

    def describe(self) -> str:
        return f"{self.model.uri} on {self.dataset}@{self.version}"


def score(
    model: str,
    dataset: str,
    *,
    out: str,
    columns: Sequence[str] | None = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    on: str | None = None,
    on_rows: ProgressCallback | None = None,
    settings: Settings | None = None,
) -> ScoreResult:
    """Score ``dataset`` (``NAME`` or ``NAME@VERSION``) with ``model`` into dataset ``out``.

    Uses the project's own stores (``gyre.toml``), as ``gyre score`` does.

    Args:
        model: ``models:/NAME/VERSION``, ``models:/NAME@ALIAS`` (``NAME@ALIAS`` works too).
        dataset: the input and its version; the latest when no version is given.
        out: the dataset the predictions are appended to (created by the first run).
        columns: the input columns each output row carries; default: the input's keys.
        batch_rows: rows per batch read, predicted and written (memory is bounded by it).
        on: ``local`` or ``ray``; default: ``[backends] compute``. ``ray`` uses that setting's
            address when it is a Ray URL, else starts Ray in this process (``ray:local``).
        on_rows: progress callback, see :data:`ProgressCallback`.
        settings: the project's settings; default: found from the working directory.

    Raises:
        InvalidArgument: a bad reference, columns the model needs are missing or of a
            non-numeric type, no rows, or an output dataset of another shape.
        NotFound: the model, the dataset or the version does not exist.
        CorruptArtifact: the model package is damaged.
        PredictionFailed: the model (or Ray) failed; nothing was written.
    """
    from gyre.config import load_settings
    from gyre.meta import MetaStore
    from gyre.store import ArtifactStore

    settings = settings or load_settings()
    name, version = parse_dataset_ref(dataset)
    compute = compute_url(on, settings.get("backends", "compute"))
    meta = MetaStore(settings.metadata_url, actor=settings.actor)
    try:
        return score_dataset(
            meta,
            Lake(settings.store_url),
            ArtifactStore(settings.store_url),
            model,
            name,
            version=version,
            out=out,
            columns=columns,
            batch_rows=batch_rows,
            compute=compute,
            cache_dir=settings.root / ".gyre" / "cache" / "models",
            on_rows=on_rows,
        )
    finally:
        meta.close()


def compute_url(on: str | None, configured: str) -> str:
    """Where to score: ``on`` (``local`` / ``ray``) against ``[backends] compute``."""
    if on is None:
        return configured if configured.startswith("ray") else "local"
    if on == "local":
        return "local"
    if on == "ray":
        return configured if configured.startswith("ray:") else "ray:local"
    raise InvalidArgument(f"Unknown compute {on!r}: use 'local' or 'ray'.")


def score_dataset(
    meta: MetaStore,
    lake: Lake,
    store: ArtifactStore,
    model: str,
    dataset: str,
    *,
    out: str,
    version: int | None = None,
    columns: Sequence[str] | None = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    compute: str = "local",
    cache_dir: Path,
    actor: str | None = None,
    on_rows: ProgressCallback | None = None,
) -> ScoreResult:
    """Score version ``version`` (default: the latest) of ``dataset`` into ``out``; see :func:`score`.

    ``compute`` is ``local`` or a Ray URL (``ray:local``, ``ray:auto``, ``ray://host:port``);
    ``cache_dir`` is where model packages are downloaded to (shared with the server and SDK).
    """
    started = time.perf_counter()
    if not isinstance(batch_rows, int) or batch_rows < 1:
        raise InvalidArgument(f"batch_rows must be a positive integer, got {batch_rows!r}.")
    if compute != "local" and not compute.startswith("ray"):
        raise InvalidArgument(f"Unknown compute {compute!r}: use 'local' or a Ray URL such as ray:local.")
    check_dataset_name(out)
    if out == dataset:
        raise InvalidArgument(
            f"Scoring {dataset!r} into itself would mix predictions into its rows; name another "
            f"output dataset, e.g. --out {dataset}_scored."
        )
    uri = model if model.startswith("models:/") else f"models:/{model}"
    resolved = registry.resolve(meta, uri)
    loaded = _load_model(store, resolved, uri, cache_dir)
    plan = _plan(meta, lake, uri, resolved, loaded, dataset, version, columns)

    rows = 0
    low: Any = None
    high: Any = None

    def scored() -> Generator[pa.RecordBatch, None, None]:
        nonlocal rows, low, high
        if compute == "local":
            batches = _score_local(lake, plan, loaded, batch_rows)
        else:
            batches = _score_on_ray(lake, store, plan, compute, batch_rows, cache_dir)
        for batch in batches:
            rows += batch.num_rows
            if plan.event_time is not None:
                low, high = _widen(low, high, batch.column(plan.event_time))
            if on_rows is not None:
                on_rows(batch.num_rows, plan.total_rows)
            yield batch

    lineage = {
        "model": resolved.name,
        "model_version": resolved.version,
        "dataset": plan.dataset,
        "dataset_version": plan.version,
    }
    source = f"gyre score {plan.describe()}"
    stream = scored()
    try:
        first = next(stream, None)
        if first is None:
            raise InvalidArgument(f"{plan.dataset}@{plan.version} has no rows; nothing to score.")
        out_version = lake.append(
            out,
            pa.RecordBatchReader.from_batches(first.schema, _conform(first, stream)),
            custom_metadata={
                "gyre.source": source,
                "gyre.actor": actor or meta.actor,
                **{f"gyre.score.{k}": str(v) for k, v in lineage.items()},
            },
        )
    finally:
        stream.close()  # stops the reading thread or the Ray session of a run that failed
    _record(meta, lake, out, out_version, first.schema, plan, source, lineage, rows, (low, high), actor)
    return ScoreResult(
        model=resolved.name,
        model_version=resolved.version,
        dataset=plan.dataset,
        dataset_version=plan.version,
        out=out,
        out_version=out_version,
        rows=rows,
        columns=[*plan.keep, PREDICTION],
        compute=compute,
        seconds=time.perf_counter() - started,
    )


# -- planning ------------------------------------------------------------------------------


def _load_model(
    store: ArtifactStore, version: registry.ModelVersionInfo, uri: str, cache_dir: Path
) -> LoadedModel:
    from gyre.models.package import load_model_package
    from gyre.serving.endpoint import fetch_package

    try:
        return load_model_package(fetch_package(store, version.package_digest, cache_dir, version.uri))
    except GyreError as exc:
        # The same class (NotFound, CorruptArtifact, ...), naming the model the user asked for.
        raise type(exc)(
            f"Cannot load {uri} (version {version.version}) for scoring: {exc.message} Nothing was written."
        ) from exc


def _plan(
    meta: MetaStore,
    lake: Lake,
    uri: str,
    resolved: registry.ModelVersionInfo,
    loaded: LoadedModel,
    dataset: str,
    version: int | None,
    columns: Sequence[str] | None,
) -> _Plan:
    signature = loaded.signature
    if signature is None or not signature.inputs:
        raise InvalidArgument(
            f"{uri} (version {resolved.version}) has no input signature, so its columns cannot be "
            "found in the dataset; log it again with input_example= (or signature=)."
        )
    check_dataset_name(dataset)
    version = lake.version(dataset) if version is None else version
    files = lake.data_files(dataset, upto=version)
    schema = lake.schema(dataset, version)
    info = _dataset_info(meta, dataset)
    where = f"{dataset}@{version}"

    names = [c.name for c in signature.inputs]
    missing = [n for n in names if n not in schema.names]
    if missing:
        raise InvalidArgument(
            f"{where} has no column(s) {', '.join(map(repr, missing))} that {uri} (version "
            f"{resolved.version}) reads; its columns are: {', '.join(schema.names)}. Nothing was written."
        )
    numeric = all(kind_of_dtype(c.dtype) in NUMERIC_KINDS for c in signature.inputs)
    wrong = [
        f"{c.name!r} is {schema.field(c.name).type} (the model reads {c.dtype})"
        for c in signature.inputs
        if kind_of_dtype(c.dtype) in NUMERIC_KINDS and not _is_numeric(schema.field(c.name).type)
    ]
    if wrong:
        raise InvalidArgument(
            f"Column(s) of {where} are not numbers: {'; '.join(wrong)}. Cast them in the dataset, "
            "or score a model trained on these types. Nothing was written."
        )

    if columns is None:
        keep = list(info.keys) if info is not None else []
        if not keep:
            raise InvalidArgument(
                f"Dataset {dataset!r} declares no keys, so the predictions could not be joined back "
                "to its rows; name the columns to keep with --columns (columns= in the SDK)."
            )
    else:
        keep = list(dict.fromkeys(c.strip() for c in columns if c.strip()))
    unknown = [c for c in keep if c not in schema.names]
    if unknown:
        raise InvalidArgument(
            f"{where} has no column(s) {', '.join(map(repr, unknown))} to keep; its columns are: "
            f"{', '.join(schema.names)}."
        )
    if PREDICTION in keep:
        raise InvalidArgument(
            f"Column {PREDICTION!r} of {where} would clash with the predictions; keep other columns."
        )
    event_time = info.event_time if info is not None and info.event_time in keep else None
    return _Plan(
        model=resolved,
        dataset=dataset,
        version=version,
        files=tuple(files),
        inputs=names,
        numeric=numeric,
        keep=keep,
        event_time=event_time,
    )


def _dataset_info(meta: MetaStore, name: str) -> catalog.DatasetInfo | None:
    try:
        return catalog.get_dataset(meta, name)
    except NotFound:  # a table written to the lake without the catalog (a script, a test)
        return None


def _is_numeric(t: pa.DataType) -> bool:
    return bool(
        pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_boolean(t)
        or pa.types.is_decimal(t)
        or pa.types.is_null(t)
    )


# -- scoring a batch (in this process or in a Ray actor) ------------------------------------


def _score_batch(
    model: LoadedModel, inputs: list[str], numeric: bool, keep: list[str], batch: Any
) -> pa.Table:
    """The kept columns of ``batch`` (a RecordBatch or Table) and the model's ``prediction``."""
    n = batch.num_rows
    try:
        if numeric:
            x = np.empty((n, len(inputs)), dtype=np.float64)
            for j, name in enumerate(inputs):
                x[:, j] = _floats(batch.column(name))
            out = model.predict_numpy(x)
        else:
            out = model.predict({name: batch.column(name).to_numpy(zero_copy_only=False) for name in inputs})
    except GyreError:
        raise
    except Exception as exc:
        raise PredictionFailed(
            f"The model failed on a batch of {n} rows: {type(exc).__name__}: {exc}. Nothing was written."
        ) from exc
    out = np.asarray(out)
    if len(out) != n:
        raise PredictionFailed(
            f"The model returned {len(out)} predictions for {n} rows. Nothing was written."
        )
    return pa.Table.from_arrays(
        [*(batch.column(c) for c in keep), _prediction_array(out)], [*keep, PREDICTION]
    )


def _floats(column: Any) -> np.ndarray:
    """A numeric Arrow column as float64, nulls as NaN."""
    if column.type != pa.float64():
        column = pc.cast(column, pa.float64())
    return column.to_numpy(zero_copy_only=False)


def _prediction_array(out: np.ndarray) -> pa.Array:
    """One value per row; a row of class probabilities (multiclass) as a list of doubles."""
    if out.ndim == 2:
        values = pa.array(np.ascontiguousarray(out, dtype=np.float64).ravel())
        offsets = pa.array(np.arange(0, out.size + 1, out.shape[1], dtype=np.int32))
        return pa.ListArray.from_arrays(offsets, values)
    if out.dtype.kind == "f":
        return pa.array(out.astype(np.float64, copy=False))
    return pa.array(out)


def _score_local(lake: Lake, plan: _Plan, model: LoadedModel, batch_rows: int) -> Iterator[pa.RecordBatch]:
    """Score in this process; the next batch is read and predicted on a second thread while the
    previous one is written (Parquet decoding and tree models release the GIL)."""
    from concurrent.futures import Future, ThreadPoolExecutor

    batches = _read(lake, plan, batch_rows)

    def next_scored() -> pa.Table | None:
        for batch in batches:
            if batch.num_rows:
                return _score_batch(model, plan.inputs, plan.numeric, plan.keep, batch)
        return None

    with ThreadPoolExecutor(1, thread_name_prefix="gyre-score") as pool:
        pending: Future[pa.Table | None] = pool.submit(next_scored)
        while (table := pending.result()) is not None:
            pending = pool.submit(next_scored)
            yield from table.to_batches()


def _read(lake: Lake, plan: _Plan, batch_rows: int) -> Iterator[pa.RecordBatch]:
    """The version's rows, file by file and row group by row group, in batches of ``batch_rows``.

    Not ``Lake.scan``: pyarrow's dataset scanner reads ahead without bound when its consumer is
    slower than the disk (here: the model), so its memory grew with the number of files.
    """
    import pyarrow.parquet as pq

    files = lake.open_files(plan.dataset, list(plan.files))
    schema = pa.schema([files.schema.field(c) for c in plan.read_columns])
    for fragment in files.get_fragments():
        with files.filesystem.open_input_file(fragment.path) as f:
            for batch in pq.ParquetFile(f).iter_batches(batch_size=batch_rows, columns=plan.read_columns):
                yield batch if batch.schema.equals(schema) else batch.cast(schema)


def _conform(first: pa.RecordBatch, rest: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Every batch in the first one's schema (Arrow readers need one schema for all batches)."""
    yield first
    for batch in rest:
        yield batch if batch.schema.equals(first.schema) else batch.cast(first.schema)


def _widen(low: Any, high: Any, column: Any) -> tuple[Any, Any]:
    bounds = pc.min_max(column)
    lo, hi = bounds["min"].as_py(), bounds["max"].as_py()
    if lo is not None and (low is None or lo < low):
        low = lo
    if hi is not None and (high is None or hi > high):
        high = hi
    return low, high


def _record(
    meta: MetaStore,
    lake: Lake,
    out: str,
    version: int,
    schema: pa.Schema,
    plan: _Plan,
    source: str,
    lineage: dict[str, Any],
    rows: int,
    event_range: tuple[Any, Any],
    actor: str | None,
) -> None:
    """The output version in the catalog (``dataset.version_created``), the dataset declared
    on its first run with the input's keys and event time among the kept columns."""
    if _dataset_info(meta, out) is None:
        source_info = _dataset_info(meta, plan.dataset)
        keys = [k for k in (source_info.keys if source_info else []) if k in plan.keep]
        catalog.ensure_dataset(
            meta,
            out,
            keys=keys,
            event_time=plan.event_time,
            description=f"Batch predictions written by gyre score (first: {plan.describe()}).",
        )
    described, schema_hash = catalog.describe_schema(schema)
    low, high = event_range
    catalog.record_version(
        meta,
        out,
        version,
        rows=rows,
        bytes=int(lake.commit_info(out, version)["bytes"]),
        schema=described,
        schema_hash=schema_hash,
        source=source,
        offsets=lineage,
        min_event_time=low if isinstance(low, datetime) else None,
        max_event_time=high if isinstance(high, datetime) else None,
        actor=actor,
    )


# -- Ray -----------------------------------------------------------------------------------


class _RayScorer:
    """A Ray Data actor: loads the model once (from the artifact store, through the package
    cache) and scores the batches it is given."""

    def __init__(
        self,
        store_url: str,
        digest: str,
        name: str,
        cache_dir: str,
        inputs: list[str],
        numeric: bool,
        keep: list[str],
    ) -> None:
        from gyre.models.package import load_model_package
        from gyre.serving.endpoint import fetch_package
        from gyre.store import ArtifactStore

        path = fetch_package(ArtifactStore(store_url), digest, Path(cache_dir), name)
        self.model = load_model_package(path)
        self.inputs, self.numeric, self.keep = inputs, numeric, keep

    def __call__(self, table: pa.Table) -> pa.Table:
        return _score_batch(self.model, self.inputs, self.numeric, self.keep, table)


def _score_on_ray(
    lake: Lake, store: ArtifactStore, plan: _Plan, compute: str, batch_rows: int, cache_dir: Path
) -> Iterator[pa.RecordBatch]:
    """Ray Data over the version's Parquet files; results stream back to this process."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise InvalidArgument("Scoring on Ray needs Ray: pip install 'gyre-ml[ray]'.") from None

    root = lake.table_uri(plan.dataset).rstrip("/")
    paths = [f"{root}/{f.path}" for f in plan.files]
    context = ray.data.DataContext.get_current()
    shown = context.enable_progress_bars, context.print_on_execution_start
    # Progress is the caller's (on_rows): Ray's own bars and plan printouts are off for the run,
    # and so are Ray Data's notes about them and its summary (its errors still show).
    context.enable_progress_bars, context.print_on_execution_start = False, False
    ray_data_log = logging.getLogger("ray.data")
    level = ray_data_log.level
    ray_data_log.setLevel(logging.ERROR)
    try:
        with _ray_session(ray, compute):
            cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
            ds = ray.data.read_parquet(paths, filesystem=lake.filesystem).select_columns(plan.read_columns)
            ds = ds.map_batches(
                _RayScorer,
                fn_constructor_args=(
                    store.url,
                    plan.model.package_digest,
                    plan.model.uri,
                    str(cache_dir),
                    plan.inputs,
                    plan.numeric,
                    plan.keep,
                ),
                batch_format="pyarrow",
                batch_size=batch_rows,
                compute=ray.data.ActorPoolStrategy(min_size=1, max_size=cpus),
            )
            for table in ds.iter_batches(batch_format="pyarrow", batch_size=None):
                yield from pa.table(table).to_batches()
    except GyreError:
        raise
    except Exception as exc:
        cause = _gyre_cause(exc)
        if cause is not None:
            raise cause from exc
        detail = str(exc).strip().splitlines()[-1].rstrip(".") if str(exc).strip() else ""
        raise PredictionFailed(
            f"Scoring {plan.describe()} on Ray failed: {type(exc).__name__}: {detail}. Nothing was written."
        ) from exc
    finally:
        context.enable_progress_bars, context.print_on_execution_start = shown
        ray_data_log.setLevel(level)


def _gyre_cause(exc: BaseException) -> GyreError | None:
    """The GyreError a Ray worker raised, if that is what failed (Ray wraps it)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, GyreError):
            return current
        current = getattr(current, "cause", None) or current.__cause__
    return None


@contextlib.contextmanager
def _ray_session(ray: Any, compute: str) -> Iterator[None]:
    """Use the Ray session already running in this process, or start one for this run only.

    As the pipelines' Ray executor: ``ray:local`` starts Ray here, ``ray://host:port``
    connects through Ray Client, ``ray:auto`` joins this machine's cluster.
    """
    if ray.is_initialized():
        yield
        return
    rest = compute[len("ray:") :] if compute.startswith("ray:") else ""
    # Ray's INFO lines (a local instance started, a dataset finished) are not the user's
    # business: Gyre reports progress and the outcome itself.
    options: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "logging_level": logging.WARNING,
    }
    if rest.startswith("//"):
        options["address"] = compute
    elif rest == "auto":
        options["address"] = "auto"
    elif rest not in ("", "local"):
        raise InvalidArgument(f"Unknown Ray address {compute!r}; use ray:local, ray:auto or ray://host:port.")
    try:
        ray.init(**options)
    except ConnectionError as exc:
        raise InvalidArgument(f"Cannot reach the Ray cluster at {compute!r}: {exc}") from None
    try:
        yield
    finally:
        ray.shutdown()
