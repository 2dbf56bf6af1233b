"""The SDK against a live control-plane server: same entities, same errors as the local backend."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from sqlalchemy import select

import gyre
from gyre.api.server import check_bind, is_loopback, run_server
from gyre.client.client import Client, connect
from gyre.client.http import HttpBackend
from gyre.config import Settings, load_settings
from gyre.errors import (
    AlreadyExists,
    BackendUnavailable,
    Conflict,
    CorruptArtifact,
    InvalidArgument,
    NotFound,
    Unauthorized,
)
from gyre.meta import MetaStore
from gyre.meta.schema import AuditRecord
from gyre.store import ArtifactStore

if TYPE_CHECKING:
    from conftest import LiveServer

pytestmark = pytest.mark.integration


def test_experiments(remote: Client) -> None:
    exp = remote.experiments.create("team a/churn:v1", "first try", {"owner": "ana"})
    assert remote.experiments.get("team a/churn:v1") == exp
    assert remote.experiments.get(exp.id) == exp
    assert [e.name for e in remote.experiments.list()] == ["team a/churn:v1"]
    with pytest.raises(AlreadyExists, match="already exists"):
        remote.experiments.create("team a/churn:v1")


def test_runs_log_batch_round_trips_nan_and_infinity(remote: Client) -> None:
    run = remote.backend.create_run("e", name="r", tags={"team": "risk"})
    points = [
        ("loss", math.nan, 0, 1000),
        ("loss", math.inf, 1, 1001),
        ("loss", -math.inf, 2, 1002),
        ("loss", 0.25, 3, 1003),
        ("val/auc score", 0.9, 0, 1000),
    ]
    assert remote.runs.log_batch(run.id, points, params={"lr": 0.1, "depth": 3}, tags={"k": 1}) == 5
    history = remote.runs.metric_history(run.id, "loss")
    assert [p.step for p in history] == [0, 1, 2, 3]
    assert math.isnan(history[0].value)
    assert [p.value for p in history[1:]] == [math.inf, -math.inf, 0.25]
    assert remote.runs.metric_history(run.id, "val/auc score")[0].value == 0.9
    remote.runs.log_batch(run.id, [("gone", math.nan, 5, 2000)])

    got = remote.runs.get(run.id)
    assert got.params == {"lr": "0.1", "depth": "3"}
    assert got.tags == {"team": "risk", "k": "1"}
    assert got.metrics["loss"] == 0.25 and math.isnan(got.metrics["gone"])
    assert got.status == "RUNNING" and got.user.startswith("api:")

    ended = remote.runs.finish(run.id, "FAILED", "boom")
    assert (ended.status, ended.error) == ("FAILED", "boom") and ended.end_time is not None
    with pytest.raises(Conflict, match="FAILED"):
        remote.runs.log_batch(run.id, [("loss", 1.0, 9, 9)])


def test_params_are_written_once(remote: Client) -> None:
    run = remote.backend.create_run("e")
    remote.runs.log_batch(run.id, params={"lr": 0.1})
    remote.runs.log_batch(run.id, params={"lr": 0.1})  # the same value again is fine
    with pytest.raises(Conflict, match=r"Param 'lr' .* is already '0.1'"):
        remote.runs.log_batch(run.id, params={"lr": 0.2})


def test_bad_metric_points_are_invalid_arguments(remote: Client) -> None:
    run = remote.backend.create_run("e")
    with pytest.raises(InvalidArgument, match="numeric value"):
        remote.runs.log_batch(run.id, [("loss", "not a number", 0, 0)])
    with pytest.raises(InvalidArgument, match="metric key"):
        remote.runs.log_batch(run.id, [("bad\nkey", 1.0, 0, 0)])
    with httpx.Client(base_url=remote.backend.location) as http:
        answer = http.post(f"/api/v1/runs/{run.id}/log-batch", json={"metrics": [{"key": "x"}]})
        assert answer.status_code == 400 and answer.json()["error"] == "invalid_argument"
        assert http.post(f"/api/v1/runs/{run.id}/log-batch", content=b"{nope").status_code == 400


def test_filters_ordering_and_children(remote: Client) -> None:
    parent = remote.backend.create_run("search")
    for i, (model, auc) in enumerate([("lgbm", 0.91), ("lgbm", 0.95), ("xgb", 0.93)]):
        child = remote.backend.create_run("search", name=f"c{i}", parent_run_id=parent.id)
        remote.runs.log_batch(child.id, [("auc", auc, 0, 0)], params={"model": model})
    remote.backend.create_run("other")

    found = remote.runs.list(experiment="search", filter="metrics.auc > 0.92", order_by=["metrics.auc DESC"])
    assert [r.name for r in found] == ["c1", "c2"]
    lgbm = remote.runs.list(filter="params.model = 'lgbm'", order_by=["params.model", "metrics.auc"])
    assert [r.name for r in lgbm] == ["c0", "c1"]
    assert len(remote.runs.list(parent_run_id=parent.id, max_results=2)) == 2
    assert len(remote.runs.list()) == 5
    with pytest.raises(InvalidArgument, match="max_results"):
        remote.runs.list(max_results=0)
    with pytest.raises(InvalidArgument):
        remote.runs.list(filter="metrics.auc >>> 1")
    with pytest.raises(NotFound, match="Parent run"):
        remote.backend.create_run("search", parent_run_id="01NOPE")


def test_file_and_directory_artifacts(remote: Client, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "plots").mkdir(parents=True)
    (src / "plots" / "roc.png").write_bytes(os.urandom(300_000))
    (src / "notes.txt").write_text("hello")
    (src / "empty").write_bytes(b"")
    big = tmp_path / "weights.bin"
    big.write_bytes(os.urandom(3 * (1 << 20) + 17))  # several chunks, not a multiple of one

    with remote.start_run("e", capture_environment=False) as run:
        file_art = run.log_artifact(big)
        dir_art = run.log_artifact(src, "bundle")
    assert (file_art.is_dir, file_art.size) == (False, big.stat().st_size)
    assert (dir_art.is_dir, dir_art.size) == (True, 300_005)
    assert [a.path for a in remote.runs.artifacts(run.id)] == ["bundle", "weights.bin"]

    out = remote.runs.download_artifact(run.id, "weights.bin", tmp_path / "down" / "w.bin")
    assert out.read_bytes() == big.read_bytes()
    tree = remote.runs.download_artifact(run.id, "bundle", tmp_path / "down" / "bundle")
    assert (tree / "plots" / "roc.png").read_bytes() == (src / "plots" / "roc.png").read_bytes()
    assert (tree / "notes.txt").read_text() == "hello"
    assert (tree / "empty").read_bytes() == b""

    # Content the server has already is not sent again: a HEAD, and no PUT.
    methods: list[str] = []
    remote.backend._http.event_hooks["request"].append(lambda request: methods.append(request.method))
    assert remote.backend.blobs.put_file(big).digest == file_art.digest
    assert methods == ["HEAD"]

    with pytest.raises(AlreadyExists, match="immutable"):
        remote.backend.record_artifact(run.id, "weights.bin", file_art.digest, 1, False)
    with pytest.raises(NotFound, match="has no artifact 'nope'"):
        remote.runs.download_artifact(run.id, "nope", tmp_path / "x")
    with pytest.raises(InvalidArgument, match="Invalid artifact path"):
        remote.runs.download_artifact(run.id, "../escape", tmp_path / "x")


def test_recording_an_artifact_needs_its_blob_on_the_server(remote: Client) -> None:
    run = remote.backend.create_run("e")
    with pytest.raises(NotFound, match="PUT /api/v1/blobs"):
        remote.backend.record_artifact(run.id, "ghost.bin", "ab" * 32, 3, False)


def test_corrupt_blob_is_reported_with_the_artifact_name(
    remote: Client, settings: Settings, tmp_path: Path
) -> None:
    src = tmp_path / "model"
    src.mkdir()
    (src / "weights.bin").write_bytes(b"w" * 5000)
    lone = tmp_path / "lone.txt"
    lone.write_text("intact")
    with remote.start_run("e", capture_environment=False) as run:
        run.log_artifact(src)
        single = run.log_artifact(lone)

    store = ArtifactStore(settings.store_url)
    weights = next(e for e in store.read_tree(remote.backend.get_artifact(run.id, "model").digest))
    for digest in (weights.digest, single.digest):
        Path(store.blob_key(digest)).write_bytes(b"tampered!")

    with pytest.raises(CorruptArtifact, match=f"runs:/{run.id}/model/weights.bin is corrupt"):
        remote.runs.download_artifact(run.id, "model", tmp_path / "out")
    assert not (tmp_path / "out" / "weights.bin").exists()
    with pytest.raises(CorruptArtifact, match=f"runs:/{run.id}/lone.txt is corrupt"):
        remote.runs.download_artifact(run.id, "lone.txt", tmp_path / "lone-out.txt")
    assert not (tmp_path / "lone-out.txt").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".gyre-")] == []

    Path(store.blob_key(single.digest)).unlink()
    with pytest.raises(NotFound, match=f"runs:/{run.id}/lone.txt is missing"):
        remote.runs.download_artifact(run.id, "lone.txt", tmp_path / "lone-out.txt")


def test_registry_versions_aliases_history_resolve(remote: Client, tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "model.bin").write_bytes(b"model")
    digest = remote.backend.blobs.put_tree(pkg).digest
    run = remote.backend.create_run("e")

    created = remote.models.create("fraud", "catches fraud", {"team": "risk"})
    assert (created.name, created.latest_version) == ("fraud", None)
    with pytest.raises(AlreadyExists):
        remote.models.create("fraud")
    v1 = remote.backend.create_model_version(
        "fraud", package_digest=digest, flavor="pyfunc", run_id=run.id, metrics={"auc": 0.9, "ks": math.nan}
    )
    v2 = remote.backend.create_model_version("fraud", package_digest=digest, flavor="pyfunc")
    assert (v1.version, v2.version, v1.uri) == (1, 2, "models:/fraud/1")
    assert v1.metrics["auc"] == 0.9 and math.isnan(v1.metrics["ks"])
    assert math.isnan(remote.models.get_version("fraud", 1).metrics["ks"])
    assert [v.version for v in remote.models.versions("fraud")] == [2, 1]
    with pytest.raises(NotFound, match="is not on the server"):
        remote.backend.create_model_version("fraud", package_digest="cd" * 32, flavor="pyfunc")

    assert remote.models.set_alias("fraud", "champion", 1, "first").aliases == ["champion"]
    remote.models.set_alias("fraud", "champion", 2, "better")
    remote.models.set_alias("fraud", "challenger", 1)
    assert remote.models.resolve("models:/fraud@champion").version == 2
    assert remote.models.resolve("models:/fraud/latest").version == 2
    assert remote.models.resolve("models:/fraud/1").aliases == ["challenger"]
    assert remote.models.get("fraud").aliases == {"champion": 2, "challenger": 1}
    assert [m.latest_version for m in remote.models.list()] == [2]

    remote.models.delete_alias("fraud", "challenger", "retired")
    history = remote.models.alias_history("fraud")
    assert [(h.alias, h.from_version, h.to_version, h.reason) for h in history] == [
        ("champion", None, 1, "first"),
        ("champion", 1, 2, "better"),
        ("challenger", None, 1, ""),
        ("challenger", 1, None, "retired"),
    ]
    assert all(h.actor.startswith("api:") for h in history)
    assert len(remote.models.alias_history("fraud", "champion")) == 2

    with pytest.raises(NotFound, match="has no alias 'champio'.*Did you mean 'champion'"):
        remote.models.resolve("models:/fraud@champio")
    with pytest.raises(NotFound, match="has no version 7; it has versions: 1, 2"):
        remote.models.get_version("fraud", 7)
    with pytest.raises(InvalidArgument, match="reserved"):
        remote.models.set_alias("fraud", "latest", 1)
    with pytest.raises(NotFound, match="Did you mean 'fraud'"):
        remote.models.get("frau")

    # A model may be called "resolve": GET /models/resolve without ?uri= still finds it.
    remote.models.create("resolve")
    assert remote.models.get("resolve").name == "resolve"


def test_errors_carry_the_local_class_and_message(remote: Client, settings: Settings) -> None:
    local = connect(settings=settings)
    try:
        for call in (
            lambda c: c.runs.get("01NOPE"),
            lambda c: c.experiments.get("missing"),
            lambda c: c.runs.finish("01NOPE"),
            lambda c: c.models.versions("ghost"),
        ):
            with pytest.raises(NotFound) as over_http:
                call(remote)
            with pytest.raises(NotFound) as in_process:
                call(local)
            assert over_http.value.message == in_process.value.message
    finally:
        local.close()


def test_http_errors_have_one_json_shape(server: LiveServer) -> None:
    with httpx.Client(base_url=server.url) as http:
        answer = http.post("/api/v1/experiments", json={"description": 3})
        assert answer.status_code == 400
        body = answer.json()
        assert body["error"] == "invalid_argument"
        assert "body.name: Field required" in body["message"]
        assert "body.description" in body["message"]
        assert http.post("/api/v1/experiments", json={"name": "x", "nme": 1}).status_code == 400

        answer = http.get("/api/v1/nothing-here")
        assert answer.status_code == 404 and answer.json()["error"] == "not_found"
        answer = http.delete("/api/v1/experiments")
        assert answer.status_code == 405 and set(answer.json()) == {"error", "message"}
        answer = http.get("/api/v1/runs/01NOPE")
        assert answer.status_code == 404
        assert answer.json() == {"error": "not_found", "message": answer.json()["message"]}
        answer = http.head("/api/v1/blobs/not-a-digest")
        assert answer.status_code == 400 and answer.content == b""


def test_auth_and_audit_actor(start_server: Callable[..., LiveServer], settings: Settings) -> None:
    server = start_server(token="s3cret-token")
    with httpx.Client(base_url=server.url) as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        assert http.get("/readyz").status_code == 200
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-token"}):
            answer = http.get("/api/v1/experiments", headers=headers)
            assert answer.status_code == 401
            assert answer.json()["error"] == "unauthorized"
            assert "s3cret-token" not in answer.text
        assert http.get("/api/v1/openapi.json").status_code == 401
        ok = http.get("/api/v1/experiments", headers={"Authorization": "Bearer s3cret-token"})
        assert ok.status_code == 200 and ok.json() == {"experiments": []}

    anonymous = closing(connect(server.url, settings=settings))
    with anonymous as client, pytest.raises(Unauthorized, match="GYRE_SERVER_TOKEN"):
        client.experiments.list()
    wrong = closing(connect(server.url, token="nope", settings=settings))
    with wrong as client, pytest.raises(Unauthorized, match="Wrong bearer token"):
        client.experiments.list()

    ana = load_settings(settings.root, overrides={"server": {"actor": "ana@risk"}})
    client = connect(server.url, token="s3cret-token", settings=ana)
    client.experiments.create("audited")
    client.close()
    with httpx.Client(base_url=server.url, headers={"Authorization": "Bearer s3cret-token"}) as http:
        http.post("/api/v1/experiments", json={"name": "anonymous one"}).raise_for_status()
        bad = http.post("/api/v1/experiments", json={"name": "x"}, headers={"X-Gyre-Actor": "a\tb"})
        assert bad.status_code == 400

    meta = MetaStore(settings.metadata_url)
    with meta.read() as s:
        actors = dict(s.execute(select(AuditRecord.subject, AuditRecord.actor)).all())
    meta.close()
    assert actors == {"experiment:audited": "api:ana@risk", "experiment:anonymous one": "api:anonymous"}


def test_non_loopback_needs_a_token_or_no_auth(settings: Settings) -> None:
    with pytest.raises(InvalidArgument, match="GYRE_SERVER_TOKEN.*--token.*--no-auth"):
        run_server(settings, host="0.0.0.0", port=1)
    with pytest.raises(InvalidArgument, match="Refusing to serve 192.168.1.5"):
        check_bind("192.168.1.5", None, False)
    check_bind("0.0.0.0", "token", False)
    check_bind("0.0.0.0", None, True)
    for host in ("127.0.0.1", "127.8.0.2", "::1", "[::1]", "localhost"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "10.0.0.1", "example.com", "localhost.example.com"):
        assert not is_loopback(host), host


def test_body_size_limits(start_server: Callable[..., LiveServer], settings: Settings) -> None:
    server = start_server(max_blob_size=64 << 10, max_body_size=16 << 10)
    remote = connect(server.url, settings=settings)
    try:
        assert remote.backend.blobs.put_bytes(b"x" * (64 << 10)).size == 64 << 10
        with pytest.raises(InvalidArgument, match="over this server's limit of 65,536 bytes"):
            remote.backend.blobs.put_bytes(b"y" * ((64 << 10) + 1))
        run = remote.backend.create_run("e")
        with pytest.raises(InvalidArgument, match="A request body .* limit of 16,384 bytes"):
            remote.runs.log_batch(run.id, [("m", 1.0, i, 0) for i in range(2000)])
        with httpx.Client(base_url=server.url) as http:
            chunked = http.put("/api/v1/blobs", content=iter([b"z" * (40 << 10)] * 2))
            assert chunked.status_code == 413 and chunked.json()["error"] == "invalid_argument"
    finally:
        remote.close()


def test_openapi_document_lists_the_routes(server: LiveServer) -> None:
    with httpx.Client(base_url=server.url) as http:
        doc = http.get("/api/v1/openapi.json").json()
        assert http.get("/api/v1/docs").status_code == 200
    paths = doc["paths"]
    for path, method in [
        ("/api/v1/experiments", "post"),
        ("/api/v1/experiments/{name_or_id}", "get"),
        ("/api/v1/runs", "get"),
        ("/api/v1/runs/{run_id}/finish", "post"),
        ("/api/v1/runs/{run_id}/log-batch", "post"),
        ("/api/v1/runs/{run_id}/metrics/{key}", "get"),
        ("/api/v1/runs/{run_id}/artifacts/{path}", "get"),
        ("/api/v1/models/resolve", "get"),
        ("/api/v1/models/{name}/versions/{version}", "get"),
        ("/api/v1/models/{name}/aliases/{alias}", "put"),
        ("/api/v1/models/{name}/aliases/{alias}", "delete"),
        ("/api/v1/models/{name}/aliases/history", "get"),
        ("/api/v1/blobs", "put"),
        ("/api/v1/blobs/{digest}", "head"),
        ("/api/v1/blobs/{digest}", "get"),
    ]:
        assert method in paths.get(path, {}), (method, path)
    log_batch = paths["/api/v1/runs/{run_id}/log-batch"]["post"]
    assert "metrics" in json.dumps(log_batch["requestBody"])


def test_active_run_buffers_2000_points_through_http(remote: Client) -> None:
    with remote.start_run("buffered", capture_environment=False) as run:
        for i in range(2000):
            run.log_metric("loss", 1 / (i + 1), step=i)
        run.log_metrics({"a": 1.0, "b": math.inf}, step=7)
    history = remote.runs.metric_history(run.id, "loss")
    assert len(history) == 2000
    assert [p.step for p in history] == list(range(2000))
    assert history[-1].value == pytest.approx(1 / 2000)
    info = remote.runs.get(run.id)
    assert info.status == "FINISHED" and info.metrics["b"] == math.inf


def test_connect_uses_gyre_server_url(server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GYRE_SERVER_URL", server.url)
    client = gyre.connect()
    try:
        assert isinstance(client.backend, HttpBackend)
        assert client.backend.location == server.url
        client.experiments.create("via-env")
        assert [e.name for e in client.experiments.list()] == ["via-env"]
    finally:
        client.close()


def test_unreachable_server_is_backend_unavailable(settings: Settings) -> None:
    with socket.socket() as bound_not_listening:
        bound_not_listening.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{bound_not_listening.getsockname()[1]}"
        client = connect(url, settings=settings)
        with pytest.raises(BackendUnavailable, match=f"{url} cannot be reached"):
            client.experiments.list()
        client.close()


@pytest.mark.parametrize("loop", ["asyncio", "auto"])
def test_keep_alive_requests_do_not_wait_for_delayed_acks(
    start_server: Callable[..., LiveServer], loop: str
) -> None:
    """TCP_NODELAY: without it each response on a reused connection waits ~40 ms for an ACK.

    The test server listens on a socket made outside asyncio (as uvicorn's own is with
    several workers), on which asyncio does not set TCP_NODELAY; uvloop does.
    """
    server = start_server(loop=loop)
    with httpx.Client(base_url=server.url) as http:
        http.get("/api/v1/experiments")
        start = time.perf_counter()
        for _ in range(40):
            assert http.get("/api/v1/experiments").status_code == 200
        per_request = (time.perf_counter() - start) / 40
    assert per_request < 0.02, f"{per_request * 1000:.1f} ms a request"


def test_readyz_reports_an_outdated_schema(project: Path, start_server: Callable[..., LiveServer]) -> None:
    meta = MetaStore(load_settings(project).metadata_url)
    meta.ensure_schema()
    with meta.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0000'")
    meta.close()
    server = start_server()
    with httpx.Client(base_url=server.url) as http:
        assert http.get("/healthz").status_code == 200
        answer = http.get("/readyz")
        assert answer.status_code == 503
        assert answer.json()["error"] == "schema_outdated" and "gyre db upgrade" in answer.json()["message"]
        assert http.get("/api/v1/experiments").json()["error"] == "schema_outdated"


def test_run_server_serves_with_a_token(project: Path) -> None:
    """The real entry point, in its own process: auth on, health open."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code = (
        "from gyre.api.server import run_server; from gyre.config import load_settings; "
        f"run_server(load_settings(), port={port}, token='tok', log_level='warning')"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=project, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "run_server did not start"
                time.sleep(0.05)
        assert httpx.get(f"{url}/api/v1/models").status_code == 401
        client = connect(url, token="tok", settings=load_settings(project))
        assert client.models.list() == []
        client.close()
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


class _Doubler:
    def predict(self, x: Any) -> Any:
        return x * 2


def test_log_model_register_and_load_through_the_server(remote: Client) -> None:
    import numpy as np

    with remote.start_run("models", capture_environment=False) as run:
        run.log_metric("auc", 0.9)
        run.log_metric("ks", math.nan)
        mv = run.log_model(_Doubler(), register_as="doubler", flavor="pyfunc")
    assert (mv.name, mv.version, mv.run_id) == ("doubler", 1, run.id)
    assert mv.metrics["auc"] == 0.9 and math.isnan(mv.metrics["ks"])
    remote.set_alias("doubler", "champion", 1)
    model = remote.load_model("models:/doubler@champion")
    assert model.predict_numpy(np.array([[1.0, 2.0]])).tolist() == [[2.0, 4.0]]
