"""Reference profiles at registration, drift over prediction-log windows and between dataset
versions, and the drift time series."""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pyarrow as pa
import pytest
from sqlalchemy import select

from gyre.data.ingest import ingest_files as ingest
from gyre.errors import InvalidArgument, NotFound
from gyre.meta.schema import Event
from gyre.monitoring import predictions
from gyre.monitoring.drift import DriftConfig
from gyre.monitoring.reference import get_reference, list_references, record_reference
from gyre.monitoring.service import dataset_drift, endpoint_drift, latest_drift_reports, list_drift_reports

from .conftest import NOW, Stores, register, score, training_frame


def test_record_reference_profiles_training_data_and_predictions(stores: Stores) -> None:
    rng = np.random.default_rng(0)
    version = register(stores.meta)
    train = training_frame(rng, 5000)

    class Model:
        def predict(self, data: pa.Table) -> np.ndarray:
            return score(data.to_pydict())

    refs = record_reference(stores.meta, stores.blobs, "fraud", version, data=pa.table(train), model=Model())
    assert [(r.kind, r.rows) for r in refs] == [("training", 5000), ("predictions", 5000)]
    assert refs[0].columns == ["amount", "hour", "country"]
    assert [r.kind for r in list_references(stores.meta, "fraud", version)] == ["predictions", "training"]
    ref = get_reference(stores.meta, stores.blobs, "fraud", version)
    assert set(ref.columns) == {"amount", "hour", "country", "prediction"}
    assert ref.columns["country"].categories == {
        k: int(v) for k, v in zip(*np.unique(train["country"], return_counts=True), strict=True)
    }
    assert get_reference(stores.meta, stores.blobs, "fraud", version) is ref  # compiled once, reused
    with stores.meta.read() as s:
        assert "model.reference_recorded" in s.scalars(select(Event.type)).all()


def test_reference_from_numpy_uses_the_signature_names_and_2d_predictions(stores: Stores) -> None:
    from gyre.models import registry

    mv = registry.create_model_version(
        stores.meta,
        "m",
        package_digest="1" * 64,
        flavor="sklearn",
        signature={
            "inputs": [{"name": "a", "dtype": "float64"}, {"name": "b", "dtype": "float64"}],
            "outputs": [],
        },
    )
    x = np.random.default_rng(1).normal(size=(300, 2))
    proba = np.column_stack([np.full(300, 0.3), np.full(300, 0.7)])
    refs = record_reference(stores.meta, stores.blobs, "m", mv.version, data=x, predictions=proba)
    assert refs[0].columns == ["a", "b"]
    ref = get_reference(stores.meta, stores.blobs, "m", mv.version)
    assert ref.columns["prediction"].values is not None
    assert set(ref.columns["prediction"].values.tolist()) == {0.7}


def test_reference_falls_back_to_pinned_dataset_profiles(stores: Stores, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from gyre.models import registry

    rng = np.random.default_rng(2)
    path = tmp_path / "train.parquet"
    import pyarrow.parquet as pq

    pq.write_table(pa.table(training_frame(rng, 1000)), path)
    ingest(stores.meta, stores.lake, stores.blobs, "payments", [str(path)])
    mv = registry.create_model_version(
        stores.meta, "d", package_digest="2" * 64, flavor="sklearn", dataset_versions={"payments": 0}
    )
    refs = record_reference(stores.meta, stores.blobs, "d", mv.version)
    assert refs[0].rows == 1000 and refs[0].source == "dataset profiles payments@0"
    bare = registry.create_model_version(stores.meta, "e", package_digest="3" * 64, flavor="sklearn")
    with pytest.raises(InvalidArgument, match="No training data to profile"):
        record_reference(stores.meta, stores.blobs, "e", bare.version)
    with pytest.raises(NotFound, match="no reference profile"):
        get_reference(stores.meta, stores.blobs, "e", bare.version)


def _reference(stores: Stores, version: int) -> None:
    rng = np.random.default_rng(3)
    train = training_frame(rng, 5000)
    record_reference(stores.meta, stores.blobs, "fraud", version, data=train, predictions=score(train))


def test_read_window_decodes_features_and_output(stores: Stores, log_rows) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(4)
    cols = training_frame(rng, 10)
    ids = log_rows(cols, errors=[None] * 9 + ["boom"])
    table = predictions.read_window(stores.lake, "fraud", NOW - timedelta(hours=1), NOW)
    base = ["prediction_id", "ts", "endpoint", "model", "model_version"]
    assert table.column_names == [*base, "country", "amount", "hour", "prediction"]
    assert table["prediction_id"].to_pylist() == ids[:9]  # the failed request is left out
    assert table["amount"].to_pylist() == pytest.approx(cols["amount"][:9].tolist())
    assert table["prediction"].to_pylist() == pytest.approx(score(cols)[:9].tolist())
    picked = predictions.read_window(stores.lake, "fraud", None, None, features=["hour", "missing"])
    assert picked.column_names[-3:] == ["hour", "missing", "prediction"]
    assert picked["missing"].null_count == picked.num_rows
    stats = predictions.service_stats(stores.lake, "fraud", None, None)
    assert (stats.requests, stats.errors, stats.p99_ms) == (10, 1, 2.0)
    assert predictions.read_window(stores.lake, "other", None, None).num_rows == 0


def test_endpoint_drift_per_model_version_and_window(stores: Stores, log_rows) -> None:  # type: ignore[no-untyped-def]
    v1 = register(stores.meta)
    v2 = register(stores.meta)
    _reference(stores, v1)
    _reference(stores, v2)
    rng = np.random.default_rng(5)
    log_rows(training_frame(rng, 3000), version=v1)  # champion: the training distribution
    log_rows(training_frame(rng, 3000, shift=0.6), version=v2)  # canary: amounts drifted
    reports = endpoint_drift(
        stores.meta, stores.lake, stores.blobs, "fraud", window=timedelta(hours=1), end=NOW
    )
    assert [r.subject["model_version"] for r in reports] == [v2, v1]
    canary, champion = reports
    assert {f.feature for f in canary.drifted} == {"amount", "prediction"}
    assert champion.drifted == []
    assert {f.feature for f in champion.features} == {"amount", "hour", "country", "prediction"}
    assert canary.window_start == NOW - timedelta(hours=1) and canary.window_end == NOW

    # An earlier window holds nothing: too little data is never a verdict.
    early = endpoint_drift(
        stores.meta,
        stores.lake,
        stores.blobs,
        "fraud",
        window=timedelta(hours=1),
        end=NOW - timedelta(hours=2),
    )
    assert early and all(f.status == "insufficient_data" for r in early for f in r.features)

    series = list_drift_reports(stores.meta, endpoint="fraud", model_version=v2)
    assert [len(r.drifted) for r in series] == [0, 2]  # newest first
    latest = latest_drift_reports(stores.meta)
    assert sorted(r.subject["model_version"] for r in latest) == [v1, v2]
    with stores.meta.read() as s:
        events = s.scalars(select(Event).where(Event.type == "drift.detected")).all()
    assert [e.payload["features"] for e in events] == [["amount", "prediction"]]


def test_endpoint_drift_overrides_and_errors(stores: Stores, log_rows) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(NotFound, match="No prediction log yet"):
        endpoint_drift(stores.meta, stores.lake, stores.blobs, "fraud", end=NOW)
    v1 = register(stores.meta)
    rng = np.random.default_rng(6)
    log_rows(training_frame(rng, 500), version=v1)
    with pytest.raises(NotFound, match="Endpoint 'nope' has no predictions.*fraud"):
        endpoint_drift(stores.meta, stores.lake, stores.blobs, "nope", end=NOW)
    [missing] = endpoint_drift(stores.meta, stores.lake, stores.blobs, "fraud", end=NOW)
    assert "no reference profile" in missing.subject["error"]
    _reference(stores, v1)
    config = DriftConfig(features={"amount": "wasserstein:0.5"}, exclude=("hour",))
    [report] = endpoint_drift(
        stores.meta, stores.lake, stores.blobs, "fraud", end=NOW, config=config, save=False
    )
    assert {f.feature: f.method for f in report.features} == {
        "amount": "wasserstein",
        "country": "chi2",
        "prediction": "ks",
    }
    assert list_drift_reports(stores.meta) == []


def test_dataset_version_against_version(stores: Stores, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import pyarrow.parquet as pq

    rng = np.random.default_rng(7)
    for i, shift in enumerate([0.0, 0.0, 0.8]):
        path = tmp_path / f"v{i}.parquet"
        pq.write_table(pa.table(training_frame(rng, 2000, shift=shift)), path)
        ingest(stores.meta, stores.lake, stores.blobs, "payments", [str(path)])
    same = dataset_drift(stores.meta, stores.lake, "payments", 0, 1)
    moved = dataset_drift(stores.meta, stores.lake, "payments", 0, 2)
    assert same.drifted == [] and len(same.tested) == 3
    assert [f.feature for f in moved.drifted] == ["amount"]
    assert [r.subject["to_version"] for r in list_drift_reports(stores.meta, dataset="payments")] == [2, 1]
    with pytest.raises(InvalidArgument, match="compare two different versions"):
        dataset_drift(stores.meta, stores.lake, "payments", 1, 1)
    with pytest.raises(NotFound):
        dataset_drift(stores.meta, stores.lake, "payments", 0, 9)
    # A pushed version has no catalog profile: the files it added are profiled instead.
    from gyre.data.records import record_commit

    table = pa.table(training_frame(rng, 1500, shift=0.8))
    version = stores.lake.append("payments", table)
    record_commit(stores.meta, "payments", version, table, source="http push", offsets={})
    pushed = dataset_drift(stores.meta, stores.lake, "payments", 0, version, save=False)
    assert [f.feature for f in pushed.drifted] == ["amount"]
    assert json.dumps(pushed.to_dict())  # JSON-safe


def test_registration_hook_profiles_the_registered_models_predictions(client) -> None:  # type: ignore[no-untyped-def]
    """What run.log_model(..., reference_data=X) calls once the version is registered."""
    pd = pytest.importorskip("pandas")
    linear_model = pytest.importorskip("sklearn.linear_model")
    from gyre.monitoring.reference import record_reference_for

    rng = np.random.default_rng(8)
    x = pd.DataFrame({"amount": rng.lognormal(3, 1, 800), "hour": rng.integers(0, 24, 800).astype(float)})
    y = (x["amount"] > 30).astype(int)
    model = linear_model.LogisticRegression().fit(x, y)
    with client.start_run("fraud", capture_environment=False) as run:
        mv = run.log_model(model, "model", register_as="fraud", input_example=x.head(3))
    refs = record_reference_for(client, mv, data=x)
    assert [(r.kind, r.rows) for r in refs] == [("training", 800), ("predictions", 800)]
    meta, blobs = client.backend.meta, client.backend.blobs
    ref = get_reference(meta, blobs, "fraud", mv.version)
    probabilities = ref.columns["prediction"].values
    assert probabilities is not None and probabilities.min() >= 0 and probabilities.max() <= 1
    assert record_reference_for(client, mv) == []  # no data and no profiled datasets: nothing
