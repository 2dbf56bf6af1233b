"""Batch ingestion of files into a dataset: read, profile, validate, then commit or quarantine.

One streaming pass over the files, in bounded memory: each batch is profiled on its way into
the Delta table; after the last batch the whole batch's profile is validated against the
dataset's expectations and reference profile, and only then is the commit made, one commit
per ingest, recorded in the catalog (``dataset.version_created``). A batch with an
error-severity failure aborts the write, so bad data never becomes a table version, even for
a moment: its files are copied to the artifact store and recorded in the quarantine with the
reasons.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa

from gyre.data import catalog
from gyre.data.lake import Lake, check_dataset_name, schema_diff
from gyre.data.profiles import Profile, Profiler
from gyre.data.readers import Source, open_source
from gyre.data.validation import Expectations, ValidationReport, infer_expectations, validate
from gyre.errors import InvalidArgument
from gyre.meta import MetaStore
from gyre.store import ArtifactStore


@dataclass
class IngestResult:
    """What an ingest did: the version committed, or the quarantine record of a rejected batch."""

    dataset: str
    rows: int
    report: ValidationReport
    version: int | None = None
    quarantine_id: str | None = None
    dry_run: bool = False

    @property
    def accepted(self) -> bool:
        return self.report.ok

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "rows": self.rows,
            "accepted": self.accepted,
            "version": self.version,
            "quarantine_id": self.quarantine_id,
            "dry_run": self.dry_run,
            "validation": self.report.to_dict(),
        }


def ingest_files(
    meta: MetaStore,
    lake: Lake,
    store: ArtifactStore,
    dataset: str,
    paths: str | Sequence[str],
    *,
    format: str | None = None,
    keys: list[str] | None = None,
    event_time: str | None = None,
    dry_run: bool = False,
    actor: str | None = None,
    on_rows: Callable[[int], None] | None = None,
) -> IngestResult:
    """Validate files against ``dataset`` and, unless rejected or ``dry_run``, commit them.

    Args:
        meta, lake, store: the metadata store, the lake and the artifact store of the project.
        dataset: the dataset's name; created by its first ingest if not declared.
        paths: files, globs, a directory or ``s3://`` URLs (see :func:`open_source`).
        format: ``csv``, ``parquet`` or ``jsonl``; inferred from the extension by default.
        keys, event_time: declared on a dataset created by this ingest.
        dry_run: validate and report only; nothing is written anywhere.
        on_rows: called with each batch's row count as it is written (for progress bars).

    Raises:
        InvalidArgument: unreadable input (the message names the file, line and column), or an
            event-time column the files do not have.
    """
    check_dataset_name(dataset)
    info = _dataset_or_none(meta, dataset)
    column_types = {c["name"]: c["type"] for c in info.schema} if info and info.schema else None
    source = open_source(paths, format, column_types=column_types)
    declared_event_time = event_time or (info.event_time if info else None)
    if declared_event_time and declared_event_time not in source.schema.names:
        raise InvalidArgument(
            f"The event-time column '{declared_event_time}' of dataset '{dataset}' is not in "
            f"{', '.join(source.paths)}; its columns are: {', '.join(source.schema.names)}."
        )

    expectations, reference = _expectations_and_reference(meta, info)
    if dry_run:
        batch_profile, report = _profile_and_validate(source, expectations, reference)
        return IngestResult(dataset, batch_profile.rows, report, dry_run=True)

    if info is None:
        info, _ = catalog.ensure_dataset(meta, dataset, keys=keys, event_time=event_time)
    if lake.exists(dataset) and schema_diff(lake.schema(dataset), source.schema):
        # The table would refuse these columns before reading a row: report them through
        # validation instead, so the batch is quarantined with the reasons like any other.
        batch_profile, report = _profile_and_validate(source, expectations, reference)
        if not report.ok:
            return _quarantine(meta, store, dataset, source, batch_profile, report, actor)
    # One pass: the batches are profiled on their way into the table, and validation runs
    # after the last one, before the commit; a rejection raises inside the stream, which
    # aborts the append with nothing committed. (A second read would cost CSV ~45% of its
    # throughput.) A rejected append leaves unreferenced Parquet files, as any failed write does.
    profiler = Profiler()
    outcome: dict[str, Any] = {}

    def checked() -> Iterator[pa.RecordBatch]:
        # The profile is computed on a second thread while the writer encodes Parquet: both
        # spend most of their time in Arrow/numpy kernels that release the GIL.
        with ThreadPoolExecutor(1, thread_name_prefix="gyre-profile") as pool:
            pending: Future[None] | None = None
            for batch in source:
                if pending is not None:
                    pending.result()
                pending = pool.submit(profiler.update, batch)
                if on_rows is not None:
                    on_rows(batch.num_rows)
                yield batch
            if pending is not None:
                pending.result()
        outcome["profile"] = prof = profiler.result()
        if prof.rows == 0:
            raise InvalidArgument(f"{', '.join(source.paths)} has no rows; nothing to ingest.")
        outcome["report"] = report = validate(prof, expectations, reference=reference)
        if not report.ok:
            raise _Rejected

    label = _source_label(source)
    try:
        version = lake.append(
            dataset,
            pa.RecordBatchReader.from_batches(source.schema, checked()),
            custom_metadata={"gyre.source": label[:1000], "gyre.actor": actor or meta.actor},
        )
    except _Rejected:
        batch_profile = outcome["profile"]
        # Read once more, only now, to point at example rows of the failures.
        report = validate(batch_profile, expectations, reference=reference, batches=source)
        return _quarantine(meta, store, dataset, source, batch_profile, report, actor)
    batch_profile, report = outcome["profile"], outcome["report"]
    schema, schema_hash = catalog.describe_schema(source.schema)
    low, high = _event_time_range(batch_profile, info.event_time)
    catalog.record_version(
        meta,
        dataset,
        version,
        rows=batch_profile.rows,
        bytes=source.size,
        schema=schema,
        schema_hash=schema_hash,
        source=label,
        min_event_time=low,
        max_event_time=high,
        validation=report.to_dict(),
        profile=batch_profile.to_dict(),
        actor=actor,
    )
    if not info.expectations:
        # The first version proposes the expectations later batches are held to.
        catalog.ensure_dataset(meta, dataset, expectations=infer_expectations(batch_profile).to_list())
    return IngestResult(dataset, batch_profile.rows, report, version=version)


class _Rejected(Exception):
    """Raised at the end of the stream when validation failed, to abort the append."""


def _profile_and_validate(
    source: Source, expectations: Expectations, reference: Profile | None
) -> tuple[Profile, ValidationReport]:
    profiler = Profiler()
    for batch in source:
        profiler.update(batch)
    batch_profile = profiler.result()
    if batch_profile.rows == 0:
        raise InvalidArgument(f"{', '.join(source.paths)} has no rows; nothing to ingest.")
    report = validate(batch_profile, expectations, reference=reference)
    if report.errors or report.warnings:  # read once more, only to point at example rows
        report = validate(batch_profile, expectations, reference=reference, batches=source)
    return batch_profile, report


def _dataset_or_none(meta: MetaStore, name: str) -> catalog.DatasetInfo | None:
    from gyre.errors import NotFound

    try:
        return catalog.get_dataset(meta, name)
    except NotFound:
        return None


def _expectations_and_reference(
    meta: MetaStore, info: catalog.DatasetInfo | None
) -> tuple[Expectations, Profile | None]:
    if info is None:
        return Expectations(), None
    expectations = Expectations.from_list(info.expectations or [])
    if info.latest_version is None:
        return expectations, None
    version = info.reference_version if info.reference_version is not None else info.latest_version
    ref = catalog.get_version(meta, info.name, version).profile
    return expectations, Profile.from_dict(ref) if ref else None


def _quarantine(
    meta: MetaStore,
    store: ArtifactStore,
    dataset: str,
    source: Source,
    batch_profile: Profile,
    report: ValidationReport,
    actor: str | None,
) -> IngestResult:
    # Local files are kept, content-addressed, for inspection; remote ones stay where they are.
    kept = []
    for path in source.paths:
        kept.append(path if "://" in path else f"sha256:{store.put_file(path).digest}")
    record = catalog.record_quarantine(
        meta,
        dataset,
        source=_source_label(source),
        rows=batch_profile.rows,
        reasons=[r.to_dict() for r in report.errors],
        location=" ".join(kept),
        actor=actor,
    )
    return IngestResult(dataset, batch_profile.rows, report, quarantine_id=record.id)


def _source_label(source: Source) -> str:
    paths = source.paths
    return paths[0] if len(paths) == 1 else f"{paths[0]} (+{len(paths) - 1} more files)"


def _event_time_range(profile: Profile, column: str | None) -> tuple[datetime | None, datetime | None]:
    if not column or column not in profile.columns:
        return None, None
    col = profile.columns[column]
    low, high = col.min, col.max
    return (low if isinstance(low, datetime) else None, high if isinstance(high, datetime) else None)
