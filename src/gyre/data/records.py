"""JSON records into a dataset: the Arrow table for its schema, and the catalog entry of a commit.

Shared by the record-at-a-time sources (HTTP push, stream consumers), which receive JSON
objects rather than files: :func:`to_table` checks and converts a group of records, and
:func:`record_commit` records the Delta version the group became in the catalog.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from gyre.data import catalog
from gyre.errors import InvalidArgument
from gyre.meta import MetaStore


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
        return table.cast(schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise InvalidArgument(f"Records do not fit dataset '{dataset}': {exc}") from None


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
