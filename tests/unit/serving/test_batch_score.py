"""Batch scoring (``gyre.score`` / ``gyre score``): predictions equal the model's own, time travel to
an input version, lineage in the commit and the catalog, errors that write nothing, a failure
midway that leaves the output as it was, and memory that does not grow with the rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from typer.testing import CliRunner

import gyre
from gyre.cli.main import app
from gyre.client.client import Client
from gyre.config import Settings
from gyre.data import catalog
from gyre.data.lake import Lake
from gyre.errors import CorruptArtifact, InvalidArgument, NotFound
from gyre.meta import MetaStore
from gyre.serving.batch import parse_dataset_ref
from gyre.serving.errors import PredictionFailed
from gyre.store import ArtifactStore

from .conftest import COLUMNS, Data, Exploding, lightgbm_model, register


@pytest.fixture
def meta_store(client: Client) -> MetaStore:
    return client.backend.meta  # type: ignore[attr-defined,no-any-return]


@pytest.fixture
def lake(settings: Settings) -> Lake:
    return Lake(settings.store_url)


def payments(rows: int, start: int = 0, seed: int = 0) -> pa.Table:
    """Rows with a key, an event time, the model's columns (not in its order, one an integer,
    some nulls) and a text column the model does not read."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 4))
    amount = pa.array(x[:, 0], mask=np.arange(rows) % 17 == 3)  # nulls reach the model as NaN
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    return pa.table(
        {
            "payment_id": [f"p{start + i}" for i in range(rows)],
            "ts": [t0 + timedelta(minutes=start + i) for i in range(rows)],
            "hour": x[:, 3],
            "score": x[:, 2],
            "age": np.round(x[:, 1] * 10).astype(np.int64),
            "amount": amount,
            "country": ["fr" if i % 2 else "de" for i in range(rows)],
        }
    )


def add_version(meta: MetaStore, lake: Lake, table: pa.Table, name: str = "payments") -> int:
    catalog.ensure_dataset(meta, name, keys=["payment_id"], event_time="ts")
    return lake.append(name, table)


def expected(model: lgb.LGBMClassifier, table: pa.Table) -> dict[str, float]:
    """What the model answers called directly, by payment id."""
    frame = table.select(COLUMNS).to_pandas().astype(float)
    return dict(zip(table["payment_id"].to_pylist(), model.booster_.predict(frame.to_numpy()), strict=True))


@pytest.fixture
def fraud_model(client: Client, data: Data) -> lgb.LGBMClassifier:
    model = lightgbm_model(data)
    register(client, model, "fraud", data.frame.head(5))
    return model


def test_predictions_equal_the_models_and_the_version_records_its_lineage(
    fraud_model: lgb.LGBMClassifier, meta_store: MetaStore, lake: Lake
) -> None:
    table = payments(1000)
    add_version(meta_store, lake, table)
    seen: list[tuple[int, int]] = []
    result = gyre.score(
        "models:/fraud@champion",
        "payments",
        out="scored",
        batch_rows=128,
        on_rows=lambda n, t: seen.append((n, t)),
    )
    assert (result.rows, result.out_version, result.model_version, result.dataset_version) == (1000, 0, 1, 0)
    assert sum(n for n, _ in seen) == 1000 and len(seen) >= 8 and {t for _, t in seen} == {1000}

    out = lake.read("scored")
    assert out.column_names == ["payment_id", "prediction"]  # the input's keys, then the prediction
    got = dict(zip(out["payment_id"].to_pylist(), out["prediction"].to_pylist(), strict=True))
    want = expected(fraud_model, table)
    assert got.keys() == want.keys()
    np.testing.assert_allclose([got[k] for k in want], list(want.values()), rtol=1e-12)

    commit = lake.history("scored")[0]["metadata"]
    assert commit["gyre.score.model"] == "fraud" and commit["gyre.score.model_version"] == "1"
    assert commit["gyre.score.dataset"] == "payments" and commit["gyre.score.dataset_version"] == "0"
    version = catalog.get_version(meta_store, "scored", 0)
    assert version.rows == 1000 and version.source == "gyre score models:/fraud/1 on payments@0"
    assert version.offsets == {
        "model": "fraud",
        "model_version": 1,
        "dataset": "payments",
        "dataset_version": 0,
    }
    assert catalog.get_dataset(meta_store, "scored").keys == ["payment_id"]


def test_version_time_travel_and_kept_columns(
    fraud_model: lgb.LGBMClassifier, meta_store: MetaStore, lake: Lake
) -> None:
    first, second = payments(300), payments(200, start=300, seed=1)
    add_version(meta_store, lake, first)
    add_version(meta_store, lake, second)
    old = gyre.score("fraud@champion", "payments@0", out="scored", columns=["payment_id", "ts", "country"])
    new = gyre.score("models:/fraud/1", "payments", out="scored", columns=["payment_id", "ts", "country"])
    assert (old.dataset_version, old.rows, old.out_version) == (0, 300, 0)
    assert (new.dataset_version, new.rows, new.out_version) == (1, 500, 1)

    assert lake.read("scored", version=0).num_rows == 300
    latest = lake.read("scored", version=1, filter=pc.field("payment_id") == "p350")
    assert latest.column_names == ["payment_id", "ts", "country", "prediction"]
    assert latest["country"].to_pylist() == ["de"]
    assert latest["prediction"][0].as_py() == pytest.approx(expected(fraud_model, second)["p350"], rel=1e-12)
    versions = catalog.list_versions(meta_store, "scored")
    assert [v.offsets["dataset_version"] for v in versions] == [0, 1]
    # The kept event time makes the output a time-ranged dataset too.
    assert catalog.get_dataset(meta_store, "scored").event_time == "ts"
    assert versions[1].min_event_time == datetime(2026, 11, 1, tzinfo=UTC)
    assert versions[1].max_event_time == datetime(2026, 11, 1, tzinfo=UTC) + timedelta(minutes=499)


def test_bad_inputs_are_refused_before_anything_is_written(
    fraud_model: lgb.LGBMClassifier, meta_store: MetaStore, lake: Lake
) -> None:
    table = payments(50)
    add_version(meta_store, lake, table.drop_columns(["score", "hour"]), name="partial")
    with pytest.raises(InvalidArgument, match=r"no column\(s\) 'score', 'hour' that models:/fraud@champion"):
        gyre.score("models:/fraud@champion", "partial", out="scored")
    texty = table.set_column(table.schema.get_field_index("age"), "age", pa.array(["x"] * 50))
    add_version(meta_store, lake, texty, name="texty")
    with pytest.raises(InvalidArgument, match=r"not numbers: 'age' is string \(the model reads float64\)"):
        gyre.score("models:/fraud@champion", "texty", out="scored")
    add_version(meta_store, lake, table)
    with pytest.raises(InvalidArgument, match="no column\\(s\\) 'nope' to keep"):
        gyre.score("models:/fraud@champion", "payments", out="scored", columns=["payment_id", "nope"])
    with pytest.raises(InvalidArgument, match="into itself"):
        gyre.score("models:/fraud@champion", "payments", out="payments")
    with pytest.raises(NotFound, match="no version 7"):
        gyre.score("models:/fraud@champion", "payments@7", out="scored")
    with pytest.raises(NotFound):
        gyre.score("models:/fraud@nope", "payments", out="scored")
    with pytest.raises(InvalidArgument, match="'local' or 'ray'"):
        gyre.score("models:/fraud@champion", "payments", out="scored", on="spark")
    assert not lake.exists("scored")

    lake.append("keyless", table)  # no catalog entry: no declared keys
    with pytest.raises(InvalidArgument, match="declares no keys.*--columns"):
        gyre.score("models:/fraud@champion", "keyless", out="scored")
    assert gyre.score("models:/fraud@champion", "keyless", out="scored", columns=["payment_id"]).rows == 50


def test_dataset_references_parse() -> None:
    assert parse_dataset_ref("payments") == ("payments", None)
    assert parse_dataset_ref("payments@12") == ("payments", 12)
    for bad in ("payments@latest", "Payments", "a@1@2", ""):
        with pytest.raises(InvalidArgument):
            parse_dataset_ref(bad)


def test_a_missing_or_corrupt_model_package_writes_nothing(
    fraud_model: lgb.LGBMClassifier, client: Client, meta_store: MetaStore, lake: Lake, settings: Settings
) -> None:
    add_version(meta_store, lake, payments(50))
    store = ArtifactStore(settings.store_url)
    package = client.models.versions("fraud")[0].package_digest
    blobs = [e.digest for e in store.read_tree(package)]
    biggest = max(blobs, key=lambda d: Path(store.blob_key(d)).stat().st_size)
    path = Path(store.blob_key(biggest))
    original = path.read_bytes()
    path.write_bytes(original[: len(original) // 2] + b"garbage")
    with pytest.raises(
        CorruptArtifact, match="Cannot load models:/fraud@champion \\(version 1\\) for scoring"
    ):
        gyre.score("models:/fraud@champion", "payments", out="scored")
    path.unlink()
    with pytest.raises(NotFound, match="Nothing was written"):
        gyre.score("models:/fraud@champion", "payments", out="scored")
    assert not lake.exists("scored")
    assert not (settings.root / ".gyre" / "cache" / "models" / package).exists()


def test_a_model_failing_midway_leaves_the_output_as_it_was(
    client: Client, data: Data, meta_store: MetaStore, lake: Lake
) -> None:
    register(client, Exploding(), "exploding", data.frame.head(5))
    table = payments(1000)
    add_version(meta_store, lake, table)
    before = gyre.score("models:/exploding@champion", "payments", out="scored", batch_rows=100)
    assert before.rows == 1000
    boom = table.set_column(  # the model raises on row 1,901 of 2,000: after 19 batches went to the writer
        table.schema.get_field_index("amount"),
        "amount",
        pa.array([666.0 if i == 900 else 1.0 for i in range(1000)]),
    )
    add_version(meta_store, lake, boom)
    with pytest.raises(PredictionFailed, match="boom.*Nothing was written"):
        gyre.score("models:/exploding@champion", "payments", out="scored", batch_rows=100)
    assert lake.version("scored") == 0 and lake.read("scored").num_rows == 1000
    assert [v.version for v in catalog.list_versions(meta_store, "scored")] == [0]


def test_the_command_line(fraud_model: lgb.LGBMClassifier, meta_store: MetaStore, lake: Lake) -> None:
    add_version(meta_store, lake, payments(100))
    runner = CliRunner(env={"COLUMNS": "200"})
    ok = runner.invoke(app, ["score", "models:/fraud@champion", "payments@0", "--out", "scored", "--json"])
    assert ok.exit_code == 0, ok.output
    result = json.loads(ok.stdout)
    assert (
        result["rows"] == 100
        and result["out_version"] == 0
        and result["columns"] == ["payment_id", "prediction"]
    )
    text = runner.invoke(
        app, ["score", "fraud@champion", "payments", "-o", "scored", "--columns", "payment_id,ts"]
    )
    assert text.exit_code == 1 and text.stderr.startswith("error: ")  # another shape than version 0
    assert "does not match dataset 'scored'" in text.stderr and "Traceback" not in text.stderr
    shown = runner.invoke(app, ["score", "fraud@champion", "payments", "-o", "scored_too"])
    assert (
        shown.exit_code == 0 and "scored_too version 0" in shown.stdout and "100 predictions" in shown.stdout
    )
    assert lake.version("scored") == 0


# -- memory ----------------------------------------------------------------------------------

_MEASURE = textwrap.dedent(
    """
    import json, sys
    import pyarrow as pa
    import gyre
    import gyre.serving.batch, deltalake, lightgbm  # imported before the baseline is read


    def rss_peak():
        # VmHWM: the process's peak resident memory so far.
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM"))


    base = rss_peak()
    result = gyre.score("models:/wide@champion", sys.argv[1], out=sys.argv[1] + "_scored", batch_rows=8192)
    arrow = pa.default_memory_pool().max_memory()
    print(json.dumps({"rows": result.rows, "arrow_peak": arrow, "rss_growth": rss_peak() - base}))
    """
)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM from /proc")
def test_memory_does_not_grow_with_the_rows(
    client: Client, meta_store: MetaStore, lake: Lake, project: Path
) -> None:
    """Eight times the rows (the input ~130 MB) are scored with the same peak memory.

    The output is kept small on purpose (a low-cardinality key, a model with few distinct
    answers): the lake writer buffers one output file (deltalake's target file size, ~100 MB)
    before writing it, a bound of its own that this test is not about.
    """
    features = [f"f{i}" for i in range(12)]
    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, len(features)))
    model = lgb.LGBMClassifier(n_estimators=4, num_leaves=4, num_threads=1, verbose=-1)
    model.fit(pd.DataFrame(x, columns=features), (x[:, 0] > 0).astype(int))
    register(client, model, "wide", pd.DataFrame(x[:5], columns=features))
    rows_per_file = 50_000
    for name, files in (("small", 3), ("large", 24)):
        catalog.ensure_dataset(meta_store, name, keys=["user_id"])
        for _ in range(files):
            values = rng.normal(size=(rows_per_file, len(features)))
            lake.append(
                name,
                pa.table(
                    {
                        "user_id": np.arange(rows_per_file) % 97,
                        **{f: values[:, j] for j, f in enumerate(features)},
                    }
                ),
            )
    measured = {}
    for name in ("small", "large"):
        out = subprocess.run(
            [sys.executable, "-c", _MEASURE, name],
            capture_output=True,
            text=True,
            check=True,
            timeout=240,
            cwd=project,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        measured[name] = json.loads(out.stdout)
    small, large = measured["small"], measured["large"]
    assert (small["rows"], large["rows"]) == (3 * rows_per_file, 24 * rows_per_file)
    mib = 1 << 20
    input_bytes = 24 * rows_per_file * (len(features) + 1) * 8
    # Arrow memory: one row group being read and a batch or two, whatever the number of files.
    assert large["arrow_peak"] < 1.2 * small["arrow_peak"] + 2 * mib, measured
    # The whole process: grows far less than the input does (it would by ~130 MB if it were kept).
    assert large["rss_growth"] - small["rss_growth"] < max(16 * mib, input_bytes // 8), measured
