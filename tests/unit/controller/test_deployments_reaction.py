"""The controller drives rollouts: a new challenger rolls out on an auto endpoint (once, even
when seen again), a rollback request rolls it back, and a challenger that cannot serve is
recorded as rejected instead of being retried every tick."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import gyre
from gyre.client.client import Client
from gyre.controller import Controller
from gyre.controller.deployments import Deployer, deployment_reaction
from gyre.definitions import Definitions
from gyre.deploy.records import list_deployments
from gyre.project import apply

EXAMPLE = pd.DataFrame({"a": [0.1, 0.2], "b": [1.0, 2.0]})


class Broken:
    def predict(self, x: Any) -> np.ndarray:
        raise RuntimeError("broken")


class Constant:
    def __init__(self, value: float) -> None:
        self.value = value

    def predict(self, x: Any) -> np.ndarray:
        return np.full(len(np.asarray(x)), self.value)


def _register(client: Client, model: Any, alias: str | None, **kw: Any) -> int:
    with client.start_run("deploy-tests") as run:
        mv = run.log_model(model, "model", register_as="m", **kw)
    if alias:
        client.set_alias("m", alias, mv.version)  # type: ignore[union-attr]
    return int(mv.version)  # type: ignore[union-attr]


def _controller(client: Client, project: Path) -> Controller:
    meta = client.backend.meta  # type: ignore[attr-defined]
    deployer = Deployer(meta, client.backend.store, client.features.lake, project / ".gyre" / "cache")  # type: ignore[attr-defined]
    return Controller(meta, [deployment_reaction(deployer)])


def test_a_new_challenger_rolls_out_and_a_rollback_request_undoes_it(project: Path, client: Client) -> None:
    meta = client.backend.meta  # type: ignore[attr-defined]
    _register(client, Constant(1.0), "champion", input_example=EXAMPLE)
    rollout = gyre.Rollout("canary", steps=[10, 100], interval="1h", on_challenger="auto")
    apply(meta, Definitions([gyre.Endpoint("e", model="m@champion", rollout=rollout)]))
    controller = _controller(client, project)
    controller.run_once()  # the reaction starts from now

    v2 = _register(client, Constant(2.0), "challenger", input_example=EXAMPLE)
    controller.run_once()
    [d] = list_deployments(meta, "e")
    assert (d.state, d.candidate_version, d.weight) == ("running", v2, 10.0)
    assert "became the challenger" in d.reason

    client.set_alias("m", "challenger", v2)  # seen again (no move: no event), and a tick later
    with meta.write() as uow:
        uow.record("deployment.rollback_requested", "endpoint:e", {"endpoint": "e", "reason": "AUC fell"})
    controller.run_once()
    [d] = list_deployments(meta, "e")
    assert (d.state, d.reason) == ("rolled_back", "AUC fell")
    with meta.write() as uow:  # the same challenger is not tried again by a later event
        uow.record("model.alias_set", "model:m@challenger", {"name": "m", "alias": "challenger"})
    controller.run_once()
    assert len(list_deployments(meta, "e")) == 1


def test_a_challenger_that_cannot_serve_is_rejected_once(project: Path, client: Client) -> None:
    meta = client.backend.meta  # type: ignore[attr-defined]
    _register(client, Constant(1.0), "champion", input_example=EXAMPLE)
    apply(
        meta,
        Definitions(
            [
                gyre.Endpoint("e", model="m@champion", rollout=gyre.Rollout(on_challenger="auto")),
                gyre.Endpoint("manual", model="m@champion"),
            ]
        ),
    )
    controller = _controller(client, project)
    controller.run_once()
    _register(client, Broken(), "challenger", signature={"inputs": [{"name": "a", "dtype": "float64"}]})
    controller.run_once()
    controller.run_once()
    [d] = list_deployments(meta)
    assert (d.endpoint, d.state) == ("e", "rejected")
    assert "cannot be deployed" in d.reason
    assert list_deployments(meta, "manual") == []  # manual endpoints wait for gyre deploy
