"""JSON records into a dataset: the Arrow table for its schema, and the catalog entry of a commit.

Shared by the record-at-a-time sources (HTTP push, stream consumers), which receive JSON
objects rather than files: :func:`to_table` checks and converts a group of records, and
:func:`record_commit` records the Delta version the group became in the catalog.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from gyre.data import catalog
from gyre.data.lake import Lake, new_table_schema
from gyre.data.validation import (
    AllowedValues,
    ColumnType,
    Expectations,
    MaxNullFraction,
    RowChecks,
    ValueRange,
)
from gyre.errors import InvalidArgument, NotFound
from gyre.meta import MetaStore


@dataclass(frozen=True)
class DatasetRules:
    """What a group of records must satisfy to enter a dataset: its schema (the table's, or the
    declared one before the first version) and its row-level expectations of error severity
    (ranges, allowed values, not-null). Statistical checks (null fractions, skew) need a batch,
    not a request, and are left to file ingest."""

    dataset: str
    schema: pa.Schema | None
    row_expectations: tuple[Any, ...] = ()

    @classmethod
    def load(cls, meta: MetaStore, lake: Lake, dataset: str) -> DatasetRules:
        try:
            info = catalog.get_dataset(meta, dataset)
        except NotFound:
            info = None
        expectations = Expectations.from_list(info.expectations or []) if info else Expectations()
        schema = lake.schema(dataset) if lake.exists(dataset) else declared_schema(expectations)
        rows = tuple(
            e
            for e in expectations
            if e.severity == "error"
            and (
                isinstance(e, ValueRange | AllowedValues)
                or (isinstance(e, MaxNullFraction) and e.fraction == 0)
            )
        )
        return cls(dataset, schema, rows)

    def table(self, records: list[dict[str, Any]]) -> pa.Table:
        """The records as a table of the dataset's schema, checked; nothing is written.

        Raises:
            InvalidArgument: a field or type that does not fit, or a value an expectation
                refuses (the message names the record, field, value and rule).
        """
        table = to_table(self.dataset, records, self.schema)
        if self.schema is None:  # these records would create the table: refuse what it could not hold
            new_table_schema(
                self.dataset,
                table.schema,
                "Nothing was stored: send values for them, or declare the dataset with a schema "
                "(gyre.Dataset(name, schema={...}) in definitions.py, then gyre apply).",
            )
        if not self.row_expectations:
            return table
        checks = RowChecks(self.row_expectations, max_examples=3)
        checks.update(table)
        problems = []
        for exp in self.row_expectations:
            tally = checks.tally(exp)
            if tally is None or not tally.count:
                continue
            values = tally.values or [None] * len(tally.rows)
            examples = ", ".join(f"record {r}: {v!r}" for r, v in zip(tally.rows, values, strict=False))
            problems.append(f"'{exp.column}' breaks {_describe(exp)} in {tally.count} record(s) ({examples})")
        if problems:
            raise InvalidArgument(
                f"Records refused by dataset '{self.dataset}' expectations; nothing was stored: "
                + "; ".join(problems)
                + "."
            )
        return table


def _describe(exp: Any) -> str:
    if isinstance(exp, ValueRange):
        bounds = [
            f">= {exp.min:g}" if exp.min is not None else "",
            f"<= {exp.max:g}" if exp.max is not None else "",
        ]
        return "value_range " + " and ".join(b for b in bounds if b)
    if isinstance(exp, AllowedValues):
        shown = ", ".join(exp.values[:10]) + (", …" if len(exp.values) > 10 else "")
        return f"allowed_values [{shown}]"
    return "not_null"


def arrow_type(logical: str) -> pa.DataType:
    """The Arrow type of a logical type name (``int64``, ``double``, ``string``, ``bool``,
    ``timestamp``, ``timestamp[tz=UTC]``, ``date32[day]``…), as ``gyre datasets show`` prints them."""
    if logical.startswith("timestamp"):
        tz = logical[len("timestamp[tz=") : -1] if logical.startswith("timestamp[tz=") else None
        return pa.timestamp("us", tz)
    try:
        return pa.type_for_alias(logical.split("[", 1)[0])
    except ValueError:
        raise InvalidArgument(
            f"Unknown column type {logical!r}: use int64, double, string, bool, timestamp, "
            "timestamp[tz=UTC], date32…"
        ) from None


def declared_schema(expectations: Expectations) -> pa.Schema | None:
    """The schema a dataset declared (its column types), or ``None`` if it declared none."""
    columns = [e for e in expectations if isinstance(e, ColumnType)]
    return pa.schema([(e.column, arrow_type(e.dtype)) for e in columns]) if columns else None


def to_table(dataset: str, records: list[dict[str, Any]], schema: pa.Schema | None) -> pa.Table:
    """Convert JSON objects to a table conforming to ``schema`` (the dataset's, or ``None`` if new).

    A new dataset's columns are every field any record has, in order of first appearance,
    with types inferred from all values. Timestamps and dates arrive as ISO strings and are
    cast to the dataset's types.

    Raises:
        InvalidArgument: a field the dataset does not have, or a value that does not fit its type.
    """
    try:
        if schema is None:
            names = list(dict.fromkeys(k for r in records for k in r))
            return pa.Table.from_pydict({n: [r.get(n) for r in records] for n in names})
        extra = sorted({k for r in records for k in r} - set(schema.names))
        if extra:
            raise InvalidArgument(
                f"Field(s) {', '.join(extra)} are not in dataset '{dataset}'; its fields: "
                f"{', '.join(schema.names)}."
            )
        table = pa.Table.from_pylist(
            records, schema=pa.schema([f.with_type(_wire_type(f.type)) for f in schema])
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise InvalidArgument(f"Records do not fit dataset '{dataset}': {exc}") from None
    columns = []
    for f in schema:
        try:
            columns.append(table[f.name].cast(f.type))
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise InvalidArgument(
                f"Records do not fit dataset '{dataset}': field '{f.name}' must be {f.type}: {exc}"
            ) from None
    return pa.Table.from_arrays(columns, schema=schema)


def record_commit(
    meta: MetaStore,
    dataset: str,
    version: int,
    table: pa.Table,
    *,
    source: str,
    offsets: dict[str, Any],
) -> catalog.DatasetVersionInfo:
    """Record committed ``version`` of ``dataset`` (holding ``table``) in the catalog.

    The event-time range is taken from the dataset's declared event-time column, if any.
    """
    try:  # a read: the dataset is almost always declared already (ensuring it is a write)
        info = catalog.get_dataset(meta, dataset)
    except NotFound:
        info, _ = catalog.ensure_dataset(meta, dataset)
    schema, schema_hash = catalog.describe_schema(table.schema)
    event_time = info.event_time
    low = high = None
    if event_time and event_time in table.column_names:
        import pyarrow.compute as pc

        mm = pc.min_max(table[event_time])
        low, high = mm["min"].as_py(), mm["max"].as_py()
    return catalog.record_version(
        meta,
        dataset,
        version,
        rows=table.num_rows,
        bytes=table.nbytes,
        schema=schema,
        schema_hash=schema_hash,
        source=source,
        offsets=offsets,
        min_event_time=low,
        max_event_time=high,
    )


def _wire_type(t: pa.DataType) -> pa.DataType:
    """JSON carries timestamps as ISO strings; read them as text, then cast."""
    return pa.string() if pa.types.is_timestamp(t) or pa.types.is_date(t) else t
