"""Streaming readers for the files a dataset is ingested from: CSV, Parquet and JSON Lines.

:func:`open_source` takes paths, globs, directories or ``s3://`` URLs and returns a :class:`Source`
that yields Arrow record batches in bounded memory: CSV and JSON Lines through pyarrow's
streaming readers (a bounded read-ahead of blocks), Parquet one row group at a time. Nothing
materialises a whole file, so a file larger than memory reads fine (a 2 GB CSV streams with
under 50 MiB of Arrow memory).

Everything that can be checked before the first batch is checked when the source is opened:
every path exists, the format is known, no file is empty or header-only, and all files have the
same columns and types. Problems found later (a malformed line, a value of the wrong type) raise
:class:`~gyre.errors.InvalidArgument` naming the file, the line and the column, and what to fix.
Compressed files (``.gz``, ``.bz2``, ``.zst``, ``.lz4``) are decompressed on the fly.
"""

from __future__ import annotations

import glob as globlib
import io
import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pyarrow.json as pajson
import pyarrow.parquet as pq

from gyre.data.lake import S3Settings
from gyre.errors import InvalidArgument, NotFound

FORMATS: dict[str, tuple[str, ...]] = {
    "csv": (".csv",),
    "parquet": (".parquet", ".pq"),
    "jsonl": (".jsonl", ".ndjson", ".json"),
}
_ALIASES = {"json": "jsonl", "ndjson": "jsonl", "pq": "parquet"}
# pyarrow's input streams decompress these on the fly (compression="detect").
_COMPRESSED = (".gz", ".bz2", ".zst", ".lz4", ".br")
# CSV/JSON block size. pyarrow's streaming readers read ahead a bounded queue of blocks (about
# 36 block sizes of memory measured with pyarrow 25, whatever the file size): 1 MiB blocks keep a
# read under ~40 MiB of Arrow memory at the same throughput as larger ones. A JSON line must fit
# in one block.
BLOCK_SIZE = 1 << 20
_GLOB_CHARS = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class _File:
    fs: pafs.FileSystem
    path: str  # the filesystem's path
    name: str  # as shown to people: the local path as given, or s3://bucket/key
    size: int


@dataclass
class Source:
    """Files of one format with one schema, read as a stream of record batches.

    Iterating yields :class:`pyarrow.RecordBatch` es of at most ``batch_rows`` rows, with the
    columns of :attr:`schema` in its order; each iteration reads the files again from the start.
    """

    format: str
    schema: pa.Schema
    files: list[_File] = field(repr=False)
    batch_rows: int = 65_536

    @property
    def paths(self) -> list[str]:
        """The files, sorted, as given (local paths) or as ``s3://`` URLs."""
        return [f.name for f in self.files]

    @property
    def size(self) -> int:
        """Total bytes of the files as stored (compressed, if they are), for progress bars."""
        return sum(f.size for f in self.files)

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        reader = {"csv": self._csv_batches, "parquet": self._parquet_batches, "jsonl": self._json_batches}
        for file in self.files:
            for batch in reader[self.format](file):
                if batch.schema.names != self.schema.names:
                    batch = batch.select(self.schema.names)
                for offset in range(0, batch.num_rows, self.batch_rows):
                    yield batch.slice(offset, self.batch_rows)

    def to_reader(self) -> pa.RecordBatchReader:
        """A one-shot :class:`pyarrow.RecordBatchReader` over the batches (for the lake's append)."""
        return pa.RecordBatchReader.from_batches(self.schema, iter(self))

    # -- per format --------------------------------------------------------------------------

    def _csv_batches(self, file: _File) -> Iterator[pa.RecordBatch]:
        with file.fs.open_input_stream(file.path) as stream:
            try:
                reader = _open_csv(stream, self._types())
                yield from reader
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                raise _csv_error(file, exc, self._types()) from None

    def _json_batches(self, file: _File) -> Iterator[pa.RecordBatch]:
        with file.fs.open_input_stream(file.path) as stream:
            try:
                # Every column typed and unknown fields refused: a later file or block cannot
                # change the schema behind the table's back.
                reader = _open_json(stream, self._types(), unexpected="error")
                yield from reader
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                raise _json_error(file, exc, self._types(), closed=True) from None

    def _parquet_batches(self, file: _File) -> Iterator[pa.RecordBatch]:
        with file.fs.open_input_file(file.path) as handle:
            try:
                # pre_buffer=False: pyarrow's default (True) fetches every row group's column
                # chunks ahead, so memory grew with the file (42 MiB for a 3.2M-row file, measured);
                # without it iter_batches holds one row group at a time, whatever the file size.
                pf = pq.ParquetFile(handle, pre_buffer=False)
                yield from pf.iter_batches(batch_size=self.batch_rows)
            except (pa.ArrowInvalid, OSError) as exc:
                raise InvalidArgument(f"{file.name} could not be read as Parquet: {exc}") from None

    def _types(self) -> dict[str, pa.DataType]:
        return {f.name: f.type for f in self.schema}


def open_source(
    path_or_glob_or_url: str | Sequence[str],
    format: str | None = None,
    *,
    batch_rows: int = 65_536,
    column_types: Mapping[str, pa.DataType | str] | None = None,
) -> Source:
    """Open files for streaming reads, checking what can be checked up front.

    Args:
        path_or_glob_or_url: a path, a glob (``data/*.csv``, ``**`` for any depth), a directory
            (its files with a known extension), an ``s3://bucket/key`` URL or glob, or a list of
            any of these. Each glob's matches are read in sorted order.
        format: ``"csv"``, ``"parquet"`` or ``"jsonl"`` (``"json"``, ``"ndjson"``); by default
            inferred from the extension (``.csv``, ``.parquet``/``.pq``,
            ``.jsonl``/``.ndjson``/``.json``, optionally compressed, e.g. ``.csv.gz``).
        batch_rows: the most rows in one batch.
        column_types: types for some or all columns of CSV and JSON Lines files (Arrow types or
            names like ``"int64"``, ``"string"``, ``"timestamp[us, tz=UTC]"``), instead of
            inferring them from the first rows; pass the dataset's schema here so every ingest
            reads the same types. Parquet files carry their own types.

    Raises:
        NotFound: a path or glob matches no file.
        InvalidArgument: unknown format, an empty or header-only file, a file that is not
            of its format, or files whose columns differ (naming the file and the columns).
    """
    if batch_rows < 1:
        raise InvalidArgument(f"batch_rows must be at least 1, got {batch_rows}.")
    specs = [path_or_glob_or_url] if isinstance(path_or_glob_or_url, str) else list(path_or_glob_or_url)
    if not specs:
        raise InvalidArgument("No path given: pass a file, a glob like 'data/*.csv', or an s3:// URL.")
    files: list[_File] = []
    for spec in specs:
        files.extend(_expand(spec))
    unique: dict[tuple[str, str], _File] = {}
    for f in files:  # a file named twice (overlapping globs) is read once
        unique.setdefault((f.fs.type_name, f.path), f)
    files = list(unique.values())
    fmt = _format_of(files, format)
    types = {name: _as_type(t, name) for name, t in (column_types or {}).items()}

    if fmt == "parquet":
        schema = _parquet_schema(files)
    else:
        schemas = [(f, _probe_text(f, fmt, types)) for f in files]
        schema = _unify_text_schemas(schemas)
        if types:
            schema = pa.schema([pa.field(f.name, types.get(f.name, f.type)) for f in schema])
    return Source(fmt, schema, files, batch_rows)


# -- finding files ---------------------------------------------------------------------------


def _expand(spec: str) -> list[_File]:
    if spec.startswith("s3://"):
        fs: pafs.FileSystem = S3Settings.from_env().pyarrow_filesystem()
        path, prefix = spec[len("s3://") :], "s3://"
    else:
        fs, prefix = pafs.LocalFileSystem(), ""
        path = spec[len("file://") :] if spec.startswith("file://") else spec
        path = os.path.expanduser(path)

    if _GLOB_CHARS.search(path):
        if prefix:
            infos = _s3_glob(fs, path)
        else:
            matches = sorted(p for p in globlib.glob(path, recursive=True) if os.path.isfile(p))
            infos = fs.get_file_info([os.path.abspath(p) for p in matches])
            infos = [(info, name) for info, name in zip(infos, matches, strict=True)]
        if not infos:
            raise NotFound(f"No file matches {spec!r}: check the pattern (use ** for any depth).")
        return [_File(fs, info.path, prefix + name, info.size or 0) for info, name in infos]

    local = path if prefix else os.path.abspath(path)
    try:
        info = fs.get_file_info(local)
    except OSError as exc:
        raise NotFound(f"Cannot read {spec}: {exc}") from None
    if info.type == pafs.FileType.File:
        return [_File(fs, info.path, spec, info.size or 0)]
    if info.type == pafs.FileType.Directory:
        known = tuple(ext for exts in FORMATS.values() for ext in exts)
        listing = sorted(
            (i for i in fs.get_file_info(pafs.FileSelector(local)) if i.type == pafs.FileType.File),
            key=lambda i: i.path,
        )
        out = [
            _File(fs, i.path, f"{spec.rstrip('/')}/{i.base_name}", i.size or 0)
            for i in listing
            if _strip_compression(i.base_name.lower()).endswith(known)
            and not i.base_name.startswith((".", "_"))
        ]
        if not out:
            raise NotFound(f"Directory {spec} has no CSV, Parquet or JSON Lines files.")
        return out
    raise NotFound(f"No file at {spec}: check the path.")


def _s3_glob(fs: pafs.FileSystem, pattern: str) -> list[tuple[pafs.FileInfo, str]]:
    first = _GLOB_CHARS.search(pattern)
    assert first is not None
    base = pattern[: first.start()].rsplit("/", 1)[0]
    regex = re.compile(_glob_to_regex(pattern))
    try:
        infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    except OSError as exc:
        raise NotFound(f"Cannot list s3://{base}: {exc}") from None
    found = sorted(
        (i for i in infos if i.type == pafs.FileType.File and regex.fullmatch(i.path)), key=lambda i: i.path
    )
    return [(i, i.path) for i in found]


def _glob_to_regex(pattern: str) -> str:
    """Shell glob to regex: ``*`` and ``?`` stay within one path segment, ``**/`` spans any."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1 : end]
                out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
                i = end
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def _strip_compression(name: str) -> str:
    for ext in _COMPRESSED:
        if name.endswith(ext):
            return name[: -len(ext)]
    return name


def _format_of(files: list[_File], format: str | None) -> str:
    if format is not None:
        fmt = _ALIASES.get(format.lower(), format.lower())
        if fmt not in FORMATS:
            raise InvalidArgument(
                f"Unknown format {format!r}: use one of {', '.join(FORMATS)} (or json, ndjson)."
            )
        return fmt
    found: dict[str, str] = {}
    for f in files:
        name = _strip_compression(f.name.lower())
        found_fmt = next((k for k, exts in FORMATS.items() if name.endswith(exts)), None)
        if found_fmt is None:
            known = ", ".join(e for exts in FORMATS.values() for e in exts)
            raise InvalidArgument(
                f"Cannot tell the format of {f.name} from its extension (known: {known}): "
                "pass the format (csv, parquet or jsonl)."
            )
        found.setdefault(found_fmt, f.name)
    if len(found) > 1:
        listed = "; ".join(f"{fmt} ({name})" for fmt, name in found.items())
        raise InvalidArgument(f"The files mix formats: {listed}. Ingest one format at a time.")
    return next(iter(found))


def _as_type(value: pa.DataType | str, column: str) -> pa.DataType:
    if isinstance(value, pa.DataType):
        return value
    text = str(value).strip()
    ts = re.fullmatch(r"timestamp\[(s|ms|us|ns)(?:,\s*tz=(.+))?\]", text)
    try:
        if ts:
            return pa.timestamp(ts.group(1), ts.group(2))
        return pa.type_for_alias(text)
    except (ValueError, KeyError):
        raise InvalidArgument(
            f"Unknown type {value!r} for column {column!r}: use an Arrow type name such as int64, "
            "double, string, bool, date32, timestamp[us, tz=UTC]."
        ) from None


# -- schemas, checked up front ---------------------------------------------------------------


def _check_names(file: _File, names: list[str]) -> None:
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InvalidArgument(
            f"{file.name} has duplicate column names {', '.join(map(repr, dupes))}: rename them."
        )
    if any(not n.strip() for n in names):
        raise InvalidArgument(f"{file.name} has a column with an empty name: give every column a name.")


def _parquet_schema(files: list[_File]) -> pa.Schema:
    first: pa.Schema | None = None
    for file in files:
        try:
            with file.fs.open_input_file(file.path) as handle:
                meta = pq.ParquetFile(handle, pre_buffer=False)
                schema, rows = meta.schema_arrow, meta.metadata.num_rows
        except (pa.ArrowInvalid, OSError) as exc:
            if file.size == 0:
                raise InvalidArgument(
                    f"{file.name} is empty (0 bytes): remove it or export it again."
                ) from None
            raise InvalidArgument(f"{file.name} is not a readable Parquet file: {exc}") from None
        _check_names(file, schema.names)
        if rows == 0:
            raise InvalidArgument(f"{file.name} has a schema but no rows: remove it or export it again.")
        schema = schema.remove_metadata()
        if first is None:
            first = schema
            first_name = file.name
            continue
        problem = _compare(first, schema, exact=True)
        if problem:
            raise InvalidArgument(
                f"{file.name} has a different schema from {first_name}: {problem}. "
                "All files of one ingest need the same columns and types."
            )
    assert first is not None
    return pa.schema([pa.field(f.name, f.type) for f in first])


def _compare(first: pa.Schema, other: pa.Schema, *, exact: bool) -> str:
    """Describe how ``other`` differs from ``first`` by column name and type ('' if it does not)."""
    a = {f.name: f.type for f in first}
    b = {f.name: f.type for f in other}
    parts = []
    missing = [n for n in a if n not in b]
    extra = [n for n in b if n not in a]
    if missing:
        parts.append("missing columns " + ", ".join(map(repr, missing)))
    if extra:
        parts.append("extra columns " + ", ".join(map(repr, extra)))
    for name in a:
        if name in b and a[name] != b[name] and (exact or _merge_types(a[name], b[name]) is None):
            parts.append(f"column {name!r} is {b[name]} here but {a[name]} there")
    return "; ".join(parts)


def _merge_types(a: pa.DataType, b: pa.DataType) -> pa.DataType | None:
    """The type two files' inferred types read as together, or None if they conflict.

    Inference sees only a file's first block: a column empty there is ``null``, and a numeric
    column may look integral in one file and fractional in another.
    """
    if a == b:
        return a
    if pa.types.is_null(a):
        return b
    if pa.types.is_null(b):
        return a
    if (pa.types.is_integer(a) or pa.types.is_floating(a)) and (
        pa.types.is_integer(b) or pa.types.is_floating(b)
    ):
        return pa.float64()
    return None


def _unify_text_schemas(schemas: list[tuple[_File, pa.Schema]]) -> pa.Schema:
    first_file, first = schemas[0]
    merged = {f.name: f.type for f in first}
    for file, schema in schemas[1:]:
        problem = _compare(first, schema, exact=False)
        if problem:
            raise InvalidArgument(
                f"{file.name} has different columns from {first_file.name}: {problem}. "
                "All files of one ingest need the same columns and types."
            )
        for f in schema:
            merged[f.name] = _merge_types(merged[f.name], f.type)
    return pa.schema(list(merged.items()))


def _probe_text(file: _File, fmt: str, types: dict[str, pa.DataType]) -> pa.Schema:
    """Open a CSV/JSON Lines file, infer its schema from the first block and check it has rows."""
    if file.size == 0:
        raise InvalidArgument(f"{file.name} is empty (0 bytes): remove it or export it again.")
    with file.fs.open_input_stream(file.path) as stream:
        try:
            reader = _open_csv(stream, types) if fmt == "csv" else _open_json(stream, types)
            schema = reader.schema
            _check_names(file, schema.names)
            first = _first_batch(reader)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            text = str(exc)
            if "Empty CSV file" in text or "Empty JSON stream" in text:
                raise InvalidArgument(f"{file.name} is empty: remove it or export it again.") from None
            if fmt == "csv":
                raise _csv_error(file, exc, types) from None
            raise _json_error(file, exc, types) from None
    if first is None:
        if fmt == "csv":
            raise InvalidArgument(
                f"{file.name} has a header but no rows: add data rows or leave the file out."
            )
        raise InvalidArgument(f"{file.name} has no records: remove it or export it again.")
    return schema


def _first_batch(reader: Any) -> pa.RecordBatch | None:
    for batch in reader:
        if batch.num_rows:
            return batch
    return None


# -- CSV -------------------------------------------------------------------------------------


def _open_csv(stream: Any, types: dict[str, pa.DataType], *, use_threads: bool = True) -> Any:
    return pacsv.open_csv(
        stream,
        read_options=pacsv.ReadOptions(block_size=BLOCK_SIZE, use_threads=use_threads),
        convert_options=pacsv.ConvertOptions(column_types=types or None),
    )


_CSV_CONVERSION = re.compile(
    r"In CSV column #(\d+): (?:Row #(\d+): )?CSV conversion error to (.+?): invalid value '(.*)'", re.S
)
_CSV_PARSE = re.compile(r"CSV parse error: (?:Row #(\d+): )?Expected (\d+) columns, got (\d+): (.*)", re.S)
_ROW = re.compile(r"Row #(\d+)")


def _csv_error(file: _File, exc: BaseException, types: dict[str, pa.DataType]) -> InvalidArgument:
    """An actionable error for a CSV problem, with its line number.

    pyarrow reports line numbers only when it parses on one thread; reads are multi-threaded
    for speed, so on an error the file is read again single-threaded up to the bad line.
    """
    text = str(exc)
    names: list[str] = []
    try:
        with file.fs.open_input_stream(file.path) as stream:
            reader = _open_csv(stream, types, use_threads=False)
            names = reader.schema.names
            if not _ROW.search(text):
                for _ in reader:
                    pass
    except (pa.ArrowInvalid, pa.ArrowTypeError) as again:
        text = str(again) if _ROW.search(str(again)) or not _ROW.search(text) else text
    m = _CSV_CONVERSION.search(text)
    if m:
        index, row, to_type, value = int(m.group(1)), m.group(2), m.group(3), m.group(4)
        column = names[index] if index < len(names) else f"#{index + 1}"
        where = f"{file.name} line {row}" if row else file.name
        if to_type == "null":
            return InvalidArgument(
                f"{where}, column {column!r}: found {value!r}, but the column is empty in the first "
                f"rows, so its type could not be inferred. Pass its type, e.g. "
                f"column_types={{{column!r}: 'double'}}, or declare the dataset's schema."
            )
        return InvalidArgument(
            f"{where}, column {column!r}: {value!r} is not a valid {to_type} (the column's type). "
            f"Fix the value, or read the column as another type, e.g. column_types={{{column!r}: 'string'}}."
        )
    m = _CSV_PARSE.search(text)
    if m:
        row, expected, got, line = m.group(1), m.group(2), m.group(3), m.group(4)
        where = f"{file.name} line {row}" if row else file.name
        return InvalidArgument(
            f"{where}: expected {expected} fields like the header, found {got} ({line.strip()[:80]!r}). "
            "Fix the line; quote values that contain the delimiter."
        )
    row = _ROW.search(text)
    where = f"{file.name} line {row.group(1)}" if row else file.name
    if "invalid UTF8" in text or "UTF8" in text:
        return InvalidArgument(f"{where}: the file is not valid UTF-8 text; convert it to UTF-8 first.")
    return InvalidArgument(f"{where} could not be read as CSV: {text.strip()}")


# -- JSON Lines ------------------------------------------------------------------------------


def _open_json(stream: Any, types: dict[str, pa.DataType], *, unexpected: str = "infer") -> Any:
    parse = pajson.ParseOptions(
        explicit_schema=pa.schema(list(types.items())) if types else None,
        unexpected_field_behavior=unexpected if types else "infer",
    )
    return pajson.open_json(
        stream, read_options=pajson.ReadOptions(block_size=BLOCK_SIZE), parse_options=parse
    )


def _json_error(
    file: _File, exc: BaseException, types: dict[str, pa.DataType], *, closed: bool = False
) -> InvalidArgument:
    """An actionable error for a JSON Lines problem, found by re-reading the file line by line.

    pyarrow numbers rows within a block, not within the file, so its row number is no help;
    this only runs on the error path. ``types`` are the known column types; with ``closed``
    they are all the columns there may be. Other fields must keep the JSON kind of their
    first non-null value (what pyarrow's inference requires).
    """
    text = str(exc)
    if "straddl" in text.lower():
        return InvalidArgument(
            f"{file.name} has a line longer than {BLOCK_SIZE >> 20} MiB; split the record or "
            "keep each JSON object on its own shorter line."
        )
    seen: dict[str, tuple[str, int]] = {}  # field -> (JSON kind, line it was first seen on)
    first = True
    with file.fs.open_input_stream(file.path) as raw:
        for number, line in enumerate(io.TextIOWrapper(raw, encoding="utf-8", errors="replace"), 1):
            line = line.strip()
            if not line:
                continue
            if first and line.startswith("["):
                return _json_array_error(file)
            first = False
            problem = _json_line_problem(line, number, types, closed, seen)
            if problem:
                return InvalidArgument(f"{file.name} line {number}{problem}")
    return InvalidArgument(f"{file.name} could not be read as JSON Lines: {text.strip()}")


def _json_line_problem(
    line: str,
    number: int,
    types: dict[str, pa.DataType],
    closed: bool,
    seen: dict[str, tuple[str, int]],
) -> str | None:
    """What is wrong with one line (completing "FILE line N..."), or None."""
    try:
        value = json.loads(line)
    except ValueError as err:
        return f" is not valid JSON ({err}). Each line must hold one JSON object."
    if not isinstance(value, dict):
        return (
            f" is a JSON {_json_kind(value)}, not an object: each line of a JSON Lines file must be "
            'one object like {"amount": 1.5}.'
        )
    for key, item in value.items():
        want = types.get(key)
        if want is None:
            if closed:
                return (
                    f" has field {key!r}, which the first rows and the dataset's schema do not have "
                    f"(columns: {', '.join(types)}). Remove it, or declare it in the schema."
                )
            if item is None:
                continue
            kind, where = seen.setdefault(key, (_json_kind(item), number))
            if kind != _json_kind(item):
                return (
                    f", field {key!r}: {item!r} is a JSON {_json_kind(item)}, but the field is a "
                    f"{kind} on line {where}. Make the field's values one kind, or read it as "
                    f"another type, e.g. column_types={{{key!r}: 'string'}}."
                )
            continue
        if _json_fits(item, want):
            continue
        if pa.types.is_null(want):
            return (
                f", field {key!r}: found {item!r}, but the field is null in the first rows, so its "
                f"type could not be inferred. Pass its type, e.g. column_types={{{key!r}: 'double'}}, "
                "or declare the dataset's schema."
            )
        if pa.types.is_string(want) or pa.types.is_large_string(want):
            return (
                f", field {key!r}: {item!r} is a JSON {_json_kind(item)}, but the column is a string "
                "and JSON values are not converted: quote the value."
            )
        return (
            f", field {key!r}: {item!r} is a JSON {_json_kind(item)}, but the column is {want}. "
            f"Fix the value, or read the column as another type, e.g. column_types={{{key!r}: 'string'}}."
        )
    return None


def _json_array_error(file: _File) -> InvalidArgument:
    return InvalidArgument(
        f"{file.name} holds a JSON array, not JSON Lines: write one object per line "
        "(e.g. `jq -c '.[]' in.json > out.jsonl`)."
    )


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _json_fits(value: Any, arrow_type: pa.DataType) -> bool:
    if value is None:
        return True
    if pa.types.is_null(arrow_type):
        return False
    if pa.types.is_boolean(arrow_type):
        return isinstance(value, bool)
    if pa.types.is_integer(arrow_type):
        return isinstance(value, int) and not isinstance(value, bool)
    if pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return isinstance(value, str)
    if pa.types.is_timestamp(arrow_type) or pa.types.is_date(arrow_type):
        return isinstance(value, str)
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type):
        return isinstance(value, list)
    if pa.types.is_struct(arrow_type):
        return isinstance(value, dict)
    return True
