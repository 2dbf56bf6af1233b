"""Deployments through the server app: canary split and promotion, rollback on errors, shadow
traffic that is logged but never answered, rollback after promotion, and what is refused."""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

import gyre
from gyre.client.client import Client
from gyre.config import Settings
from gyre.data.lake import Lake
from gyre.deploy import rollout
from gyre.deploy.records import get_deployment, list_deployments
from gyre.errors import Conflict, InvalidArgument, NotFound
from gyre.meta.schema import Event
from gyre.models import registry
from gyre.serving.routing import BUCKETS, Split, bucket

from .conftest import COLUMNS, AppClient, Data, apply_definitions, lake_rows, register, row

# Constant models' predictions differ entirely, and a p99 over 20 in-process requests is one GC
# pause on a busy machine: these tests judge the rollout mechanics, the checks have tests of their own.
FAST = gyre.Rollout(
    "canary", steps=[30, 100], interval=0.2, min_requests=20, max_prediction_psi=None, max_latency_ratio=1000
)


class Constant:
    """Answers ``value`` for every row: which version answered is plain from the answer."""

    def __init__(self, value: float) -> None:
        self.value = value

    def predict(self, x: Any) -> np.ndarray:
        return np.full(len(np.asarray(x)), self.value)


class Broken:
    """Raises on every call: a candidate that must never take the traffic."""

    def predict(self, x: Any) -> np.ndarray:
        raise RuntimeError("this version is broken")


@pytest.fixture
def two_versions(client: Client, data: Data) -> tuple[int, int]:
    """Model 'm': version 1 (champion) answers 1.0, version 2 answers 2.0; endpoint 'e'."""
    v1 = register(client, Constant(1.0), "m", data.frame.head(5))
    v2 = register(client, Constant(2.0), "m", data.frame.head(5), alias="challenger")
    apply_definitions(client, gyre.Endpoint("e", model="m@champion", rollout=FAST))
    return v1, v2


def _meta(client: Client) -> Any:
    return client.backend.meta  # type: ignore[attr-defined]


def _start(client: Client, settings: Settings, model: str = "m@challenger", **kw: Any) -> Any:
    return rollout.start(
        _meta(client),
        client.backend.store,
        "e",
        model,
        cache_dir=settings.root / "cache",
        **kw,  # type: ignore[attr-defined]
    )


def _send(app: AppClient, data: Data, n: int) -> list[dict[str, Any]]:
    bodies = [{"rows": [row(data.x[i % len(data.x)])]} for i in range(n)]
    answers = []
    for start in range(0, n, 25):
        for r in app.post_many("/v1/endpoints/e/predict", bodies[start : start + 25]):
            assert r.status_code in (200, 500), r.text
            answers.append(r.json())
    return answers


def _tick(app: AppClient, client: Client, settings: Settings) -> list[Any]:
    """Commit the log, wait out the running step's interval, and analyse."""
    app.app.state.push.flush()
    for d in list_deployments(_meta(client), "e", state="running"):
        time.sleep(max(0.0, d.interval_s - (datetime.now(UTC) - d.step_started_at).total_seconds()))
    return rollout.tick(_meta(client), Lake(settings.store_url))


def _events(client: Client, prefix: str) -> list[str]:
    with _meta(client).read() as s:
        return [e.type for e in s.query(Event).order_by(Event.created_at) if e.type.startswith(prefix)]


def test_canary_splits_traffic_then_promotes(
    client: Client, settings: Settings, data: Data, start_app: Any, two_versions: tuple[int, int]
) -> None:
    app = start_app()
    d = _start(client, settings)
    assert (d.strategy, d.steps, d.weight, d.baseline_version, d.candidate_version) == (
        "canary",
        [30.0, 100.0],
        30.0,
        1,
        2,
    )
    app.serving.sync()
    described = app.get("/v1/endpoints/e").json()
    assert described["deployment"] == {
        "id": d.id, "baseline_version": 1, "candidate_version": 2, "candidate_share": 30.0,
        "shadow": False, "candidate_loaded": True,
    }  # fmt: skip
    answers = _send(app, data, 300)
    by_version = Counter(a["model_version"] for a in answers)
    # No entity keys here, so each request is assigned at random: 30% of 300 is 90 ± ~24 (3 sd).
    assert 60 <= by_version[2] <= 120 and by_version[1] + by_version[2] == 300
    assert all(a["predictions"] == [float(a["model_version"])] for a in answers)

    moved = _tick(app, client, settings)
    assert [(m.step, m.weight, m.state) for m in moved] == [(1, 100.0, "running")]
    app.serving.sync()
    assert {a["model_version"] for a in _send(app, data, 40)} == {2}
    moved = _tick(app, client, settings)
    assert [m.state for m in moved] == ["promoted"]
    assert registry.resolve(_meta(client), "models:/m@champion").version == 2
    assert _events(client, "deployment.") == ["deployment.started", "deployment.step", "deployment.promoted"]
    step = get_deployment(_meta(client), "e").history[1]["analysis"]
    assert step["verdict"] == "pass" and {c["name"] for c in step["checks"]} >= {
        "traffic",
        "error_rate",
        "p99_latency_ms",
    }

    app.serving.sync()  # the promoted version serves alone, following the alias
    assert app.serving.routes["e"].candidate is None and app.serving.endpoints["e"].model_version == 2


def test_a_candidate_that_cannot_predict_is_refused(client: Client, settings: Settings, data: Data) -> None:
    register(client, Constant(1.0), "m", data.frame.head(5))
    # A model that raises cannot be logged with an input example: it gets version 1's signature.
    signature = {"inputs": [{"name": c, "dtype": "float64"} for c in COLUMNS]}
    with client.start_run("serving-tests") as run:
        mv = run.log_model(Broken(), "model", register_as="m", signature=signature)
    apply_definitions(client, gyre.Endpoint("e", model="m@champion", rollout=FAST))
    with pytest.raises(InvalidArgument, match="cannot be deployed: .*broken.*Traffic stays"):
        _start(client, settings, f"m/{mv.version}")  # type: ignore[union-attr]
    assert list_deployments(_meta(client)) == []


def test_errors_in_a_step_roll_it_back(
    client: Client, settings: Settings, data: Data, start_app: Any, two_versions: tuple[int, int]
) -> None:
    """Version 2 fails on rows whose first column is positive (about half): its error rate is
    far over the baseline's, so the canary goes back."""
    app = start_app()
    d = _start(client, settings, steps=[50, 100])
    app.serving.sync()
    candidate = app.serving.routes["e"].candidate
    assert candidate is not None

    def half_broken(x: Any) -> np.ndarray:
        x = np.asarray(x)
        if (x[:, 0] > 0).any():
            raise RuntimeError("the candidate cannot handle positive amounts")
        return np.full(len(x), 2.0)

    candidate.model.predict_numpy = half_broken  # the candidate degrades after its checks
    answers = _send(app, data, 200)
    assert any("error" in a for a in answers)
    moved = _tick(app, client, settings)
    assert [m.state for m in moved] == ["rolled_back"]
    assert "error rate" in moved[0].reason
    assert registry.resolve(_meta(client), "models:/m@champion").version == 1
    rows = lake_rows(settings)
    failed = [r for r in rows if r["error"] is not None]
    assert failed and all(r["model_version"] == 2 and r["output"] is None for r in failed)
    assert "positive amounts" in failed[0]["error"]
    app.serving.sync()
    assert app.serving.routes["e"].candidate is None
    assert {a["model_version"] for a in _send(app, data, 20)} == {1}
    assert d.id == moved[0].id


@pytest.mark.parametrize(
    ("policy", "slow", "reason"),
    [
        ({"max_prediction_psi": 0.5, "max_latency_ratio": 1000}, False, "prediction PSI"),
        ({"max_prediction_psi": None, "max_latency_ratio": 1.5}, True, "p99 latency"),
    ],
    ids=["predictions-shift", "slower"],
)
def test_a_step_that_fails_a_check_rolls_back(
    client: Client,
    settings: Settings,
    data: Data,
    start_app: Any,
    two_versions: tuple[int, int],
    policy: dict[str, Any],
    slow: bool,
    reason: str,
) -> None:
    """Version 2 answers 2.0 where the champion answers 1.0 (its predictions moved entirely), or
    takes 30 ms a call: each trips its own check, the other being off."""
    strict = gyre.Rollout("canary", steps=[50, 100], interval=0.2, min_requests=60, **policy)
    apply_definitions(client, gyre.Endpoint("e", model="m@champion", rollout=strict))
    app = start_app()
    _start(client, settings)
    app.serving.sync()
    candidate = app.serving.routes["e"].candidate
    assert candidate is not None
    if slow:
        fast = candidate.model.predict_numpy

        def sluggish(x: Any) -> np.ndarray:
            time.sleep(0.03)
            return fast(x)

        candidate.model.predict_numpy = sluggish
        for i in range(200):  # one at a time, or the baseline's requests queue behind the candidate's
            assert app.post("/v1/endpoints/e/predict", json={"rows": [row(data.x[i])]}).status_code == 200
    else:
        _send(app, data, 400)
    moved = _tick(app, client, settings)
    assert [m.state for m in moved] == ["rolled_back"] and reason in moved[0].reason
    assert registry.resolve(_meta(client), "models:/m@champion").version == 1


def test_shadow_is_logged_and_never_answers(
    client: Client, settings: Settings, data: Data, start_app: Any, two_versions: tuple[int, int]
) -> None:
    app = start_app()
    d = _start(client, settings, strategy="shadow")
    assert (d.steps, d.weight) == ([0.0], 0.0)
    app.serving.sync()
    answers = _send(app, data, 60)
    assert {a["model_version"] for a in answers} == {1}
    app.run(_drain(app))
    app.app.state.push.flush()
    rows = lake_rows(settings)
    served = {r["prediction_id"]: r for r in rows if r["shadow_of"] is None}
    shadows = [r for r in rows if r["shadow_of"] is not None]
    assert len(served) == 60 and len(shadows) == 60
    assert all(r["model_version"] == 2 and r["prediction"] == 2.0 for r in shadows)
    assert {r["shadow_of"] for r in shadows} == set(served)
    moved = _tick(app, client, settings)
    assert [m.state for m in moved] == ["completed"]
    assert registry.resolve(_meta(client), "models:/m@champion").version == 1  # nothing promoted


async def _drain(app: AppClient) -> None:
    import asyncio

    for _ in range(100):
        if all(e.idle for e in app.serving.routes["e"].versions()):
            return
        await asyncio.sleep(0.01)


def test_rollback_by_hand_and_after_promotion(
    client: Client, settings: Settings, data: Data, start_app: Any, two_versions: tuple[int, int]
) -> None:
    meta = _meta(client)
    with pytest.raises(Conflict, match="no running deployment and no promotion to undo"):
        rollout.rollback(meta, "e")
    d = _start(client, settings)
    back = rollout.rollback(meta, "e", "looks wrong")
    assert (back.id, back.state, back.reason) == (d.id, "rolled_back", "looks wrong")
    assert rollout.traffic(meta) == {}

    # A blue-green switch promoted by its analysis (the baseline judged on its traffic before
    # the switch), then undone: the alias goes back to the version it left.
    app = start_app()
    _send(app, data, 30)
    app.app.state.push.flush()
    # Held 2 s: the baseline is judged on its requests in the 2 s before the switch.
    d = _start(client, settings, strategy="blue_green", interval_s=2)
    assert rollout.traffic(meta) == {"e": Split(1, 2, 100.0, False, d.id)}
    app.serving.sync()
    assert {a["model_version"] for a in _send(app, data, 30)} == {2}
    assert [m.state for m in _tick(app, client, settings)] == ["promoted"]
    assert registry.resolve(meta, "models:/m@champion").version == 2
    undone = rollout.rollback(meta, "e", "complaints")
    assert (undone.id, undone.state) == (d.id, "rolled_back")
    assert registry.resolve(meta, "models:/m@champion").version == 1
    with pytest.raises(Conflict, match="last deployment .* is rolled_back"):
        rollout.rollback(meta, "e")


def test_what_cannot_be_deployed(
    client: Client, settings: Settings, data: Data, two_versions: tuple[int, int]
) -> None:
    meta = _meta(client)
    with pytest.raises(NotFound):
        rollout.rollback(meta, "nope")
    with pytest.raises(Conflict, match="already serves m version 1"):
        _start(client, settings, "m@champion")
    with pytest.raises(InvalidArgument, match="serves model 'm', not 'other'"):
        _start(client, settings, "other@challenger")
    with pytest.raises(InvalidArgument, match="steps must increase"):
        _start(client, settings, steps=[50, 10, 100])
    with pytest.raises(InvalidArgument, match="a shadow deployment has no steps"):
        _start(client, settings, strategy="shadow", steps=[50, 100])
    apply_definitions(
        client, gyre.Endpoint("e", model="m@champion", rollout=FAST), gyre.Endpoint("pinned", model="m/1")
    )
    with pytest.raises(InvalidArgument, match="pins m/1"):
        rollout.start(meta, client.backend.store, "pinned", "m/2", cache_dir=settings.root / "c")  # type: ignore[attr-defined]

    # A version whose stored package is corrupt cannot be deployed; nothing starts.
    store = client.backend.store  # type: ignore[attr-defined]
    files = store.read_tree(registry.get_model_version(meta, "m", 2).package_digest)
    model_file = next(e for e in files if not e.path.endswith(".json"))
    key = store.blob_key(model_file.digest)
    store.fs.pipe_file(key, b"X" + store.fs.cat_file(key)[1:])
    with pytest.raises(InvalidArgument, match="m/2 cannot be deployed: .*Traffic stays"):
        _start(client, settings, "m/2")
    assert list_deployments(meta) == []


def test_a_second_deployment_waits_for_the_first(
    client: Client, settings: Settings, data: Data, two_versions: tuple[int, int]
) -> None:
    register(client, Constant(3.0), "m", data.frame.head(5), alias=None)
    _start(client, settings)
    with pytest.raises(Conflict, match="still running on endpoint 'e'"):
        _start(client, settings, "m/3")


@hsettings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(0, 10**9), min_size=1, max_size=50, unique=True),
    st.integers(0, 100),
    st.integers(0, 100),
)
def test_assignment_is_sticky_and_only_grows(keys: list[int], w1: int, w2: int) -> None:
    """An entity's bucket is a pure function of its key, and raising the weight only moves
    entities onto the candidate, never off it."""
    low, high = sorted((w1, w2))
    for k in keys:
        b = bucket((k,))
        assert b == bucket((k,)) and 0 <= b < BUCKETS
        on_low = b < low * BUCKETS / 100
        on_high = b < high * BUCKETS / 100
        assert not on_low or on_high


def test_assignment_share_matches_the_weight() -> None:
    """Over 20,000 entities, each weight's share is within 1.5 points of it."""
    buckets = np.array([bucket((i,)) for i in range(20_000)])
    for weight in (1, 5, 25, 50, 99):
        share = (buckets < weight * BUCKETS / 100).mean() * 100
        assert abs(share - weight) < 1.5, (weight, share)


def test_split_weight_is_a_percentage() -> None:
    with pytest.raises(InvalidArgument, match="0 to 100"):
        Split(1, 2, 140.0)


def test_cli_deploy_show_list_rollback(cli: Any, project: Path, two_versions: tuple[int, int]) -> None:
    started = cli("deploy", "e", "--model", "m@challenger", "--steps", "10,100", "--interval", "2m", "--json")
    assert started.exit_code == 0, started.stderr
    d = json.loads(started.stdout)
    assert (d["state"], d["steps"], d["interval_s"]) == ("running", [10.0, 100.0], 120.0)
    listed = cli("deployments", "list")
    assert d["id"] in listed.stdout and "1 → 2" in listed.stdout
    shown = cli("deployments", "show", "e")
    assert "canary" in shown.stdout and "started" in shown.stdout
    again = cli("deploy", "e", "--model", "m@challenger")
    assert again.exit_code == 1 and "still running" in again.stderr
    bad = cli("deploy", "e", "--model", "m@challenger", "--steps", "ten")
    assert bad.exit_code == 1 and "5,25,50,100" in bad.stderr
    back = cli("rollback", "e", "--reason", "test")
    assert back.exit_code == 0 and "Rolled back" in back.stderr
    assert json.loads(cli("deployments", "list", "--json").stdout)[0]["state"] == "rolled_back"


def test_oip_can_name_a_version_in_a_deployment(
    client: Client, settings: Settings, data: Data, start_app: Any, two_versions: tuple[int, int]
) -> None:
    app = start_app()
    _start(client, settings, steps=[1, 100])
    app.serving.sync()
    infer = {"inputs": [{"name": c, "datatype": "FP64", "shape": [1], "data": [0.5]} for c in COLUMNS]}
    for version in (1, 2):
        r = app.post(f"/v2/models/e/versions/{version}/infer", json=infer)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model_version"] == str(version) and body["outputs"][0]["data"] == [float(version)]
        assert len(body["parameters"]["prediction_ids"]) == 26  # one ULID, for feedback
    missing = app.post("/v2/models/e/versions/7/infer", json=infer)
    assert missing.status_code == 404 and "serves version(s) 1, 2" in missing.json()["error"]
