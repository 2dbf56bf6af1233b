"""Reading the lake's Parquet files with low-cardinality strings kept as dictionaries.

A string column of categories (a country, a plan) is stored in Parquet as a small dictionary and
an index per row; pyarrow reads it back as one string per row unless asked for a dictionary,
and building those strings is most of the read (a million rows: 14 ms as strings, 3 ms as a
dictionary, where a float column takes 2.5 ms). A column is read as a dictionary only when its
footer shows every chunk dictionary-encoded: a column stored as plain strings would have to be
hashed into one instead, which is slower than reading it as is.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
import pyarrow.dataset as pads


def _is_string(kind: pa.DataType) -> bool:
    return (
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind)
    )


def _dictionary_encoded(fragment: pads.ParquetFileFragment, column: str) -> bool:
    """Whether every chunk of ``column`` holds dictionary indices: a dictionary page, and under
    4 bytes a value (an index takes at most 4; a plain string at least its 4-byte length)."""
    metadata = fragment.metadata
    for i in range(metadata.num_row_groups):
        group = metadata.row_group(i)
        chunk = next(
            (group.column(j) for j in range(group.num_columns) if group.column(j).path_in_schema == column),
            None,
        )
        if (
            chunk is None
            or not chunk.has_dictionary_page
            or chunk.total_uncompressed_size >= 4 * chunk.num_values
        ):
            return False
    return True


def with_dictionaries(
    schema: pa.Schema, fragments: list[pads.ParquetFileFragment], columns: Sequence[str]
) -> tuple[pa.Schema, list[pads.ParquetFileFragment]]:
    """``schema`` and ``fragments`` to read ``columns`` with, the dictionary-encoded string
    columns among them read as dictionaries (int32 indices, the schema's value type)."""
    chosen = [
        c
        for c in columns
        if _is_string(schema.field(c).type) and all(_dictionary_encoded(f, c) for f in fragments)
    ]
    if not chosen or not fragments:
        return schema, fragments
    for column in chosen:
        i = schema.get_field_index(column)
        schema = schema.set(i, schema.field(i).with_type(pa.dictionary(pa.int32(), schema.field(i).type)))
    fmt = pads.ParquetFileFormat(read_options=pads.ParquetReadOptions(dictionary_columns=chosen))
    return schema, [fmt.make_fragment(f.path, filesystem=f.filesystem) for f in fragments]
