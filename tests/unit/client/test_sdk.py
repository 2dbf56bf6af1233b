import threading
import time
from pathlib import Path

import pytest

import gyre
from gyre.client.client import Client
from gyre.errors import Conflict, CorruptArtifact, InvalidArgument, NotFound


def test_start_run_logs_and_finishes(client: Client) -> None:
    with gyre.start_run(experiment="fraud", run_name="first") as run:
        assert gyre.active_run() is run
        run.log_params({"n_estimators": 200})
        run.log_metric("auc", 0.93, step=1)
        run.log_metrics({"precision": 0.5, "recall": 0.25}, step=1)
        run.set_tags({"team": "risk"})
    assert gyre.active_run() is None
    info = client.runs.get(run.id)
    assert info.status == "FINISHED"
    assert info.params == {"n_estimators": "200"}
    assert info.metrics == {"auc": 0.93, "precision": 0.5, "recall": 0.25}
    assert info.tags == {"team": "risk"}
    assert info.python_version and info.packages_hash and info.host


def test_exception_marks_run_failed_and_reraises(client: Client) -> None:
    with pytest.raises(ZeroDivisionError), gyre.start_run(experiment="e") as run:
        run.log_metric("before", 1.0)
        1 / 0  # noqa: B018
    info = client.runs.get(run.id)
    assert info.status == "FAILED"
    assert "ZeroDivisionError" in info.error
    assert info.metrics == {"before": 1.0}  # buffered points are flushed before failing


def test_keyboard_interrupt_marks_run_killed(client: Client) -> None:
    with pytest.raises(KeyboardInterrupt), gyre.start_run(experiment="e") as run:
        raise KeyboardInterrupt
    assert client.runs.get(run.id).status == "KILLED"


def test_nested_runs_become_children(client: Client) -> None:
    with gyre.start_run(experiment="e") as parent, gyre.start_run(experiment="e") as child:
        assert gyre.active_run() is child
    assert client.runs.get(child.id).parent_run_id == parent.id


def test_active_run_is_per_thread(client: Client) -> None:
    seen = []
    with gyre.start_run(experiment="e"):
        t = threading.Thread(target=lambda: seen.append(gyre.active_run()))
        t.start()
        t.join()
    assert seen == [None]


def test_buffered_points_are_written_within_the_flush_interval(client: Client) -> None:
    run = client.start_run("e")
    run.log_metric("loss", 0.5, step=0)
    deadline = time.monotonic() + 3
    while client.runs.get(run.id).metrics.get("loss") != 0.5:
        assert time.monotonic() < deadline, "a buffered point was not flushed within the interval"
        time.sleep(0.05)
    run.end()


def test_many_points_all_stored(client: Client) -> None:
    with client.start_run("e") as run:
        for i in range(5000):
            run.log_metric("loss", 1 / (i + 1), step=i)
    hist = client.runs.metric_history(run.id, "loss")
    assert [p.step for p in hist] == list(range(5000))


def test_logging_after_end_is_refused(client: Client) -> None:
    run = client.start_run("e")
    run.end()
    with pytest.raises(Conflict, match="has ended"):
        run.log_metric("x", 1.0)
    with pytest.raises(Conflict):
        run.end()


def test_background_write_error_surfaces_on_flush(client: Client) -> None:
    run = client.start_run("e")
    client.runs.finish(run.id)  # someone else ends the run: the next write is refused
    run.log_metric("x", 1.0)
    with pytest.raises(Conflict):
        run.flush()


def test_artifacts_round_trip(client: Client, tmp_path: Path) -> None:
    (tmp_path / "report.txt").write_text("hello")
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "roc.csv").write_text("0,1\n")
    with client.start_run("e") as run:
        run.log_artifact(tmp_path / "report.txt")
        run.log_artifact(tmp_path / "plots", "figures")
        with pytest.raises(InvalidArgument, match="Invalid artifact path"):
            run.log_artifact(tmp_path / "report.txt", "../escape.txt")
    assert [a.path for a in client.runs.artifacts(run.id)] == ["figures", "report.txt"]
    out = client.runs.download_artifact(run.id, "figures", tmp_path / "out")
    assert (out / "roc.csv").read_text() == "0,1\n"
    with pytest.raises(NotFound, match="has no artifact 'nope'"):
        client.runs.download_artifact(run.id, "nope", tmp_path / "x")


def test_corrupted_artifact_is_detected_naming_it(client: Client, tmp_path: Path) -> None:
    (tmp_path / "weights.bin").write_bytes(b"\x00" * 1000)
    with client.start_run("e") as run:
        art = run.log_artifact(tmp_path / "weights.bin")
    blob = Path(client.backend.store.blob_key(art.digest))
    blob.write_bytes(b"\x01" + blob.read_bytes()[1:])
    with pytest.raises(CorruptArtifact, match=f"runs:/{run.id}/weights.bin is corrupt"):
        client.runs.download_artifact(run.id, "weights.bin", tmp_path / "w.bin")


def test_registry_versions_and_alias_history(client: Client) -> None:
    v1 = client.backend.create_model_version("fraud", package_digest="a" * 64, flavor="sklearn")
    v2 = client.backend.create_model_version("fraud", package_digest="b" * 64, flavor="sklearn")
    assert (v1.version, v2.version) == (1, 2)
    gyre.set_alias("fraud", 1, "champion")
    gyre.set_alias("fraud", 2, "champion", reason="better auc")
    assert client.models.resolve("models:/fraud@champion").version == 2
    assert client.models.resolve("models:/fraud/1").package_digest == "a" * 64
    assert client.models.resolve("models:/fraud/latest").version == 2
    moves = [(m.from_version, m.to_version, m.reason) for m in client.models.alias_history("fraud")]
    assert moves == [(None, 1, ""), (1, 2, "better auc")]
    assert client.models.get("fraud").aliases == {"champion": 2}
    assert [v.aliases for v in client.models.versions("fraud")] == [["champion"], []]
    client.models.delete_alias("fraud", "champion")
    with pytest.raises(NotFound, match="has no alias 'champion'"):
        client.models.resolve("models:/fraud@champion")
    assert client.models.alias_history("fraud", "champion")[-1].to_version is None


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("fraud", "not a model URI"),
        ("models:/fraud/one", "must be a number"),
        ("models:/fr aud/1", "Invalid model name"),
    ],
)
def test_bad_model_uris(client: Client, uri: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        client.models.resolve(uri)


def test_registry_errors(client: Client) -> None:
    client.backend.create_model_version("fraud", package_digest="a" * 64, flavor="sklearn")
    with pytest.raises(NotFound, match="Did you mean 'fraud'"):
        client.models.get("frauds")
    with pytest.raises(NotFound, match="has no version 7; it has versions: 1"):
        client.models.get_version("fraud", 7)
    with pytest.raises(InvalidArgument, match="reserved"):
        client.models.set_alias("fraud", "latest", 1)
    with pytest.raises(InvalidArgument, match="Invalid alias"):
        client.models.set_alias("fraud", "Champion!", 1)
    with pytest.raises(NotFound):
        client.models.set_alias("fraud", "champion", 9)


def test_import_gyre_is_light() -> None:
    """`import gyre` must not pull in the database, HTTP or ML stacks (checked in a fresh process)."""
    import subprocess
    import sys

    code = (
        "import sys, time; t = time.perf_counter(); import gyre; dt = time.perf_counter() - t; "
        "heavy = [m for m in ('sqlalchemy', 'httpx', 'fastapi', 'sklearn', 'pandas', 'numpy') "
        "if m in sys.modules]; "
        "print(dt, heavy)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split(" ", 1)
    assert out[1].strip() == "[]", out
    assert float(out[0]) < 0.5


def test_public_api_is_curated() -> None:
    assert gyre.__all__ == sorted(gyre.__all__)
    for name in gyre.__all__:
        assert getattr(gyre, name) is not None
    with pytest.raises(AttributeError):
        gyre.not_a_thing  # noqa: B018


def test_log_model_register_alias_and_load(client: Client) -> None:
    import json

    import numpy as np
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4))
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    model = LogisticRegression().fit(x, y)
    with gyre.start_run(experiment="fraud") as run:
        run.log_metric("auc", 0.93, step=1)
        mv = run.log_model(model, "model", register_as="fraud", input_example=x[:5])
    assert (mv.name, mv.version, mv.flavor, mv.run_id) == ("fraud", 1, "sklearn", run.id)
    assert mv.metrics == {"auc": 0.93}
    assert [c["name"] for c in mv.signature["inputs"]] == ["f0", "f1", "f2", "f3"]
    gyre.set_alias("fraud", mv.version, "champion")

    loaded = gyre.load_model("models:/fraud@champion")
    np.testing.assert_allclose(loaded.predict(x[:10]), model.predict_proba(x[:10])[:, 1])
    same = client.load_model(f"runs:/{run.id}/model")
    np.testing.assert_allclose(same.predict(x[:3]), loaded.predict(x[:3]))

    package = client.model_path("models:/fraud/1")
    meta = json.loads((package / "gyre-model.json").read_text())
    assert meta["run_id"] == run.id and meta["flavor"] == "sklearn"
    assert client.runs.artifacts(run.id)[0].is_dir
