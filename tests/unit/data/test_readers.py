"""Streaming readers: every format, every bad input the issue lists, and bounded memory."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from gyre.data import readers
from gyre.data.readers import open_source
from gyre.errors import InvalidArgument, NotFound


def sample(n: int, start: int = 0) -> pa.Table:
    ids = np.arange(start, start + n)
    return pa.table(
        {
            "id": ids,
            "amount": ids * 1.5,
            "country": pa.array(np.array(["US", "DE", "FR"])[ids % 3]),
            "flag": ids % 2 == 0,
        }
    )


def write_jsonl(path: Path, rows: list[dict] | pa.Table) -> Path:
    if isinstance(rows, pa.Table):
        rows = rows.to_pylist()
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def read_all(spec: str | list[str], **kwargs: object) -> pa.Table:
    source = open_source(spec, **kwargs)  # type: ignore[arg-type]
    return pa.Table.from_batches(list(source), schema=source.schema)


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Small CSV/JSON blocks, so type inference sees only the first rows of a small file."""
    monkeypatch.setattr(readers, "BLOCK_SIZE", 1 << 12)


# -- formats ---------------------------------------------------------------------------------


def test_csv_parquet_and_jsonl_read_the_same_rows(tmp_path: Path) -> None:
    table = sample(1000)
    pacsv.write_csv(table, tmp_path / "a.csv")
    pq.write_table(table, tmp_path / "a.parquet", row_group_size=300)
    write_jsonl(tmp_path / "a.jsonl", table)
    for name, fmt in [("a.csv", "csv"), ("a.parquet", "parquet"), ("a.jsonl", "jsonl")]:
        source = open_source(str(tmp_path / name), batch_rows=128)
        assert source.format == fmt
        assert source.paths == [str(tmp_path / name)]
        assert source.schema.names == ["id", "amount", "country", "flag"]
        batches = list(source)
        assert max(b.num_rows for b in batches) <= 128
        got = pa.Table.from_batches(batches)
        assert got.column("id").to_pylist() == list(range(1000))
        assert got.column("country").to_pylist() == table.column("country").to_pylist()
        assert got.column("flag").to_pylist() == table.column("flag").to_pylist()
        assert list(source)  # a source can be read again


def test_globs_directories_lists_and_compression(tmp_path: Path) -> None:
    (tmp_path / "in" / "sub").mkdir(parents=True)
    for i in (2, 0, 1):
        pacsv.write_csv(sample(10, start=10 * i), tmp_path / "in" / f"part-{i}.csv")
    with gzip.open(tmp_path / "in" / "sub" / "part-3.csv.gz", "wb") as f:
        pacsv.write_csv(sample(10, start=30), f)
    (tmp_path / "in" / "_SUCCESS").write_text("")

    flat = open_source(str(tmp_path / "in" / "*.csv"))
    assert [Path(p).name for p in flat.paths] == ["part-0.csv", "part-1.csv", "part-2.csv"]
    assert read_all(str(tmp_path / "in" / "*.csv")).column("id").to_pylist() == list(range(30))
    deep = read_all(str(tmp_path / "in" / "**" / "*.csv*"))
    assert sorted(deep.column("id").to_pylist()) == list(range(40))
    assert open_source(str(tmp_path / "in")).paths == flat.paths  # a directory: its data files
    both = open_source([str(tmp_path / "in" / "part-0.csv"), str(tmp_path / "in" / "part-*.csv")])
    assert len(both.paths) == 3  # named twice, read once
    assert open_source(str(tmp_path / "in" / "sub" / "part-3.csv.gz")).format == "csv"


def test_format_can_be_given(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "records.txt", [{"a": 1}, {"a": 2}])
    assert read_all(str(tmp_path / "records.txt"), format="ndjson").num_rows == 2
    with pytest.raises(InvalidArgument, match="Cannot tell the format of .*records.txt"):
        open_source(str(tmp_path / "records.txt"))
    with pytest.raises(InvalidArgument, match="Unknown format 'xml'"):
        open_source(str(tmp_path / "records.txt"), format="xml")


def test_column_types_override_inference(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("code,amount\n001,1\n002,2\n")
    got = read_all(str(tmp_path / "a.csv"), column_types={"code": "string", "amount": pa.float64()})
    assert got.schema.types == [pa.string(), pa.float64()]
    assert got.column("code").to_pylist() == ["001", "002"]
    with pytest.raises(InvalidArgument, match="Unknown type 'integer' for column 'code'"):
        open_source(str(tmp_path / "a.csv"), column_types={"code": "integer"})


def test_csv_files_whose_numbers_look_different_read_as_double(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("x,y\n1,a\n2,b\n")
    (tmp_path / "b.csv").write_text("x,y\n1.5,c\n,d\n")
    got = read_all(str(tmp_path / "*.csv"))
    assert got.schema.field("x").type == pa.float64()
    assert got.column("x").to_pylist() == [1.0, 2.0, 1.5, None]


# -- bad input -------------------------------------------------------------------------------


def test_malformed_csv_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("a,b,c\n1,2,3\n4,5\n6,7,8\n")
    with pytest.raises(InvalidArgument, match=r"bad\.csv line 3: expected 3 fields like the header, found 2"):
        read_all(str(path))


def test_malformed_csv_line_deep_in_a_file(tmp_path: Path, small_blocks: None) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("a,b\n" + "".join(f"{i},{i}\n" for i in range(5000)) + "1,2,3\n")
    source = open_source(str(path))  # the first block is fine
    with pytest.raises(InvalidArgument, match=r"bad\.csv line 5002: expected 2 fields.*found 3"):
        list(source)


def test_wrong_type_in_a_csv_column_names_line_and_column(tmp_path: Path, small_blocks: None) -> None:
    path = tmp_path / "amounts.csv"
    path.write_text("id,amount\n" + "".join(f"{i},{i}.5\n" for i in range(3000)) + "3000,lots\n")
    with pytest.raises(InvalidArgument) as err:
        read_all(str(path))
    message = str(err.value)
    assert "amounts.csv line 3002, column 'amount': 'lots' is not a valid double" in message
    assert "column_types={'amount': 'string'}" in message


def test_csv_column_empty_in_the_first_rows(tmp_path: Path, small_blocks: None) -> None:
    path = tmp_path / "sparse.csv"
    path.write_text("id,note\n" + "".join(f"{i},\n" for i in range(3000)) + "3000,7.5\n")
    with pytest.raises(InvalidArgument, match=r"line 3002, column 'note'.*empty in the first rows"):
        read_all(str(path))
    assert read_all(str(path), column_types={"note": "double"}).column("note")[-1].as_py() == 7.5


def test_empty_and_header_only_files(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "header.csv").write_text("id,amount\n")
    (tmp_path / "blank.jsonl").write_text("\n\n")
    (tmp_path / "empty.parquet").write_bytes(b"")
    pq.write_table(sample(0), tmp_path / "norows.parquet")
    with pytest.raises(InvalidArgument, match=r"empty\.csv is empty"):
        open_source(str(tmp_path / "empty.csv"))
    with pytest.raises(InvalidArgument, match=r"header\.csv has a header but no rows"):
        open_source(str(tmp_path / "header.csv"))
    with pytest.raises(InvalidArgument, match=r"blank\.jsonl is empty"):
        open_source(str(tmp_path / "blank.jsonl"))
    with pytest.raises(InvalidArgument, match=r"empty\.parquet is empty"):
        open_source(str(tmp_path / "empty.parquet"))
    with pytest.raises(InvalidArgument, match=r"norows\.parquet has a schema but no rows"):
        open_source(str(tmp_path / "norows.parquet"))


def test_a_bad_file_among_good_ones_is_found_before_reading(tmp_path: Path) -> None:
    pacsv.write_csv(sample(5), tmp_path / "a.csv")
    (tmp_path / "b.csv").write_text("id,amount,country,flag\n")
    with pytest.raises(InvalidArgument, match=r"b\.csv has a header but no rows"):
        open_source(str(tmp_path / "*.csv"))


def test_parquet_file_with_a_different_schema(tmp_path: Path) -> None:
    pq.write_table(sample(5), tmp_path / "a.parquet")
    other = sample(5).drop_columns(["flag"]).append_column("channel", pa.array(["web"] * 5))
    other = other.set_column(1, "amount", pa.array(["1"] * 5))
    pq.write_table(other, tmp_path / "b.parquet")
    with pytest.raises(InvalidArgument) as err:
        open_source(str(tmp_path / "*.parquet"))
    message = str(err.value)
    assert "b.parquet has a different schema from" in message and "a.parquet" in message
    assert "missing columns 'flag'" in message
    assert "extra columns 'channel'" in message
    assert "column 'amount' is string here but double there" in message


def test_not_a_parquet_file(tmp_path: Path) -> None:
    (tmp_path / "fake.parquet").write_text("id,amount\n1,2\n")
    with pytest.raises(InvalidArgument, match=r"fake\.parquet is not a readable Parquet file"):
        open_source(str(tmp_path / "fake.parquet"))


def test_csv_files_with_different_columns(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("id,amount\n1,2\n")
    (tmp_path / "b.csv").write_text("id,total\n1,2\n")
    (tmp_path / "c.csv").write_text("id,amount\n1,x\n")
    with pytest.raises(
        InvalidArgument, match=r"b\.csv has different columns from .*a\.csv.*'amount'.*'total'"
    ):
        open_source([str(tmp_path / "a.csv"), str(tmp_path / "b.csv")])
    with pytest.raises(InvalidArgument, match=r"column 'amount' is string here but int64 there"):
        open_source([str(tmp_path / "a.csv"), str(tmp_path / "c.csv")])


def test_duplicate_column_names(tmp_path: Path) -> None:
    (tmp_path / "dup.csv").write_text("id,id\n1,2\n")
    with pytest.raises(InvalidArgument, match=r"dup\.csv has duplicate column names 'id'"):
        open_source(str(tmp_path / "dup.csv"))


def test_json_line_that_is_not_an_object(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text('{"a": 1}\n{"a": 2}\n[1, 2]\n')
    with pytest.raises(InvalidArgument, match=r"a\.jsonl line 3 is a JSON array, not an object"):
        read_all(str(tmp_path / "a.jsonl"))
    (tmp_path / "b.jsonl").write_text('{"a": 1}\n\n7\n')
    with pytest.raises(InvalidArgument, match=r"b\.jsonl line 3 is a JSON number, not an object"):
        read_all(str(tmp_path / "b.jsonl"))


def test_json_array_file_and_invalid_json(tmp_path: Path) -> None:
    (tmp_path / "array.json").write_text('[\n  {"a": 1},\n  {"a": 2}\n]\n')
    with pytest.raises(InvalidArgument, match=r"array\.json holds a JSON array, not JSON Lines"):
        read_all(str(tmp_path / "array.json"))
    (tmp_path / "broken.jsonl").write_text('{"a": 1}\n{"a": \n')
    with pytest.raises(InvalidArgument, match=r"broken\.jsonl line 2 is not valid JSON"):
        read_all(str(tmp_path / "broken.jsonl"))


def test_json_wrong_type_and_unknown_field_deep_in_a_file(tmp_path: Path, small_blocks: None) -> None:
    rows = [{"id": i, "amount": i + 0.5} for i in range(2000)]
    write_jsonl(tmp_path / "t.jsonl", [*rows, {"id": 2000, "amount": "lots"}])
    source = open_source(str(tmp_path / "t.jsonl"))
    with pytest.raises(InvalidArgument, match=r"t\.jsonl line 2001, field 'amount': 'lots' is a JSON string"):
        list(source)
    write_jsonl(tmp_path / "u.jsonl", [*rows, {"id": 2000, "amount": 1.0, "extra": True}])
    with pytest.raises(InvalidArgument, match=r"u\.jsonl line 2001 has field 'extra'"):
        read_all(str(tmp_path / "u.jsonl"))


def test_paths_that_match_nothing(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="No file at"):
        open_source(str(tmp_path / "missing.csv"))
    with pytest.raises(NotFound, match="No file matches"):
        open_source(str(tmp_path / "*.csv"))
    (tmp_path / "a.csv").write_text("a\n1\n")
    write_jsonl(tmp_path / "b.jsonl", [{"a": 1}])
    with pytest.raises(InvalidArgument, match="The files mix formats"):
        open_source(str(tmp_path / "*"))
    with pytest.raises(InvalidArgument, match="batch_rows"):
        open_source(str(tmp_path / "a.csv"), batch_rows=0)


# -- S3 --------------------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.backend("s3")
def test_s3_globs_and_formats(s3_url: str) -> None:
    import io

    import boto3

    from gyre.data.lake import S3Settings

    settings = S3Settings.from_env()
    s3 = boto3.client("s3", endpoint_url=settings.endpoint_url, region_name=settings.region)
    bucket, prefix = s3_url[len("s3://") :].split("/", 1)
    for i in range(3):
        out = io.BytesIO()
        pacsv.write_csv(sample(10, start=10 * i), out)
        s3.put_object(Bucket=bucket, Key=f"{prefix}/in/part-{i}.csv", Body=out.getvalue())
    out = io.BytesIO()
    pq.write_table(sample(30), out)
    s3.put_object(Bucket=bucket, Key=f"{prefix}/in/all.parquet", Body=out.getvalue())
    source = open_source(f"{s3_url}/in/part-*.csv")
    assert source.paths == [f"{s3_url}/in/part-{i}.csv" for i in range(3)]
    assert pa.Table.from_batches(list(source)).column("id").to_pylist() == list(range(30))
    assert read_all(f"{s3_url}/in/all.parquet").num_rows == 30
    with pytest.raises(NotFound):
        open_source(f"{s3_url}/in/*.jsonl")


# -- memory ----------------------------------------------------------------------------------

_MEASURE = textwrap.dedent(
    """
    import json, resource, sys
    import pyarrow as pa
    from gyre.data import readers
    readers.BLOCK_SIZE = 1 << 16  # small blocks, so the read-ahead cap is reached at test scale


    def rss_peak():
        # VmHWM, not ru_maxrss: ru_maxrss survives exec, so it starts at the parent's (pytest's) size.
        try:
            with open("/proc/self/status") as f:
                return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM"))
        except OSError:
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


    rows = 0
    for batch in readers.open_source(sys.argv[1]):
        rows += batch.num_rows
    arrow_peak = pa.default_memory_pool().max_memory()
    print(json.dumps({"rows": rows, "arrow_peak": arrow_peak, "rss_peak": rss_peak()}))
    """
)


def _write(fmt: str, path: Path, rows: int) -> Path:
    table = sample(rows)
    if fmt == "csv":
        pacsv.write_csv(table, path)
    elif fmt == "parquet":
        pq.write_table(table, path, row_group_size=20_000)
    else:
        with open(path, "w") as f:
            for batch in table.to_batches(50_000):
                f.write("".join(json.dumps(r) + "\n" for r in batch.to_pylist()))
    return path


def _measure(path: Path) -> dict[str, int]:
    out = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(path)], capture_output=True, text=True, check=True, timeout=120
    )
    return json.loads(out.stdout)


@pytest.mark.parametrize(
    ("fmt", "small", "large"),
    [("csv", 100_000, 800_000), ("parquet", 100_000, 800_000), ("jsonl", 50_000, 300_000)],
)
def test_memory_does_not_grow_with_file_size(tmp_path: Path, fmt: str, small: int, large: int) -> None:
    """A file 6-8x larger is read with the same peak memory: batches are streamed, not kept."""
    ext = {"csv": "csv", "parquet": "parquet", "jsonl": "jsonl"}[fmt]
    a = _measure(_write(fmt, tmp_path / f"small.{ext}", small))
    b = _measure(_write(fmt, tmp_path / f"large.{ext}", large))
    size = (tmp_path / f"large.{ext}").stat().st_size
    assert (a["rows"], b["rows"]) == (small, large)
    mib = 1 << 20
    # Arrow memory: bounded by the read-ahead (CSV/JSON) or one row group (Parquet).
    assert b["arrow_peak"] < 16 * mib, f"{b['arrow_peak'] / mib:.1f} MiB of Arrow memory"
    assert b["arrow_peak"] < 1.5 * a["arrow_peak"] + 2 * mib, (a, b)
    # Whole-process peak: grows far less than the file does.
    assert b["rss_peak"] - a["rss_peak"] < max(16 * mib, size // 4), (a, b, size)
