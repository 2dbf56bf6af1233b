"""Swapping models under load over real sockets: a canary, its promotion, a rollback and a new
endpoint applied while clients keep calling — no request fails, and every answer says which
version made it."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

import gyre
from gyre.client.client import Client
from gyre.config import Settings
from gyre.data.lake import Lake
from gyre.definitions import Definitions
from gyre.deploy import rollout
from gyre.deploy.records import list_deployments
from gyre.models import registry
from gyre.project import apply

from .conftest import LiveServer

pytestmark = pytest.mark.integration

EXAMPLE = pd.DataFrame({"a": [0.1, 0.2], "b": [1.0, 2.0]})
# The two constant models' predictions differ entirely and latency on a busy CI machine is noisy:
# this test is about swapping under load, so the analysis judges traffic and errors only.
ENDPOINT = gyre.Endpoint(
    "e", model="m@champion", rollout=gyre.Rollout(max_prediction_psi=None, max_latency_ratio=1000)
)


class Constant:
    def __init__(self, value: float) -> None:
        self.value = value

    def predict(self, x: Any) -> np.ndarray:
        return np.full(len(np.asarray(x)), self.value)


def _register(client: Client, value: float, alias: str | None) -> int:
    with client.start_run("swap") as run:
        mv = run.log_model(Constant(value), "model", register_as="m", input_example=EXAMPLE)
    if alias:
        client.set_alias("m", alias, mv.version)  # type: ignore[union-attr]
    return int(mv.version)  # type: ignore[union-attr]


class Load:
    """Clients calling an endpoint in a loop on their own threads, counting every answer."""

    def __init__(self, url: str, clients: int = 4) -> None:
        self.url = url
        self.stop = threading.Event()
        self.answers: Counter[int] = Counter()
        self.failures: list[str] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def _run(self) -> None:
        with httpx.Client(timeout=30) as http:
            while not self.stop.is_set():
                r = http.post(self.url, json={"row": {"a": 0.5, "b": 1.5}})
                with self.lock:
                    if r.status_code != 200:
                        self.failures.append(f"{r.status_code} {r.text}")
                    else:
                        body = r.json()
                        assert body["predictions"] == [float(body["model_version"])]
                        self.answers[body["model_version"]] += 1

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)

    def wait_for(self, version: int, only: bool = False, timeout: float = 15) -> None:
        """Until ``version`` answers (with ``only``: answers alone, 50 requests in a row)."""
        deadline = time.monotonic() + timeout
        with self.lock:
            start = Counter(self.answers)
        while time.monotonic() < deadline:
            with self.lock:
                new = self.answers - start
            if (only and new[version] >= 50 and sum(new.values()) == new[version]) or (
                not only and new[version] > 0
            ):
                return
            if only and sum(v for k, v in new.items() if k != version):
                with self.lock:
                    start = Counter(self.answers)
            time.sleep(0.05)
        raise AssertionError(f"version {version} did not take the traffic; answers {self.answers}")


def test_swaps_under_load_fail_no_request(
    client: Client, settings: Settings, project: Path, start_server: Callable[..., LiveServer]
) -> None:
    meta = client.backend.meta  # type: ignore[attr-defined]
    store = client.backend.store  # type: ignore[attr-defined]
    v1 = _register(client, 1.0, "champion")
    v2 = _register(client, 2.0, "challenger")
    apply(meta, Definitions([ENDPOINT]))
    server = start_server()
    cache = project / ".gyre" / "cache" / "models"
    with Load(f"{server.url}/v1/endpoints/e/predict") as load:
        load.wait_for(v1)
        d = rollout.start(
            meta, store, "e", "m@challenger", cache_dir=cache, strategy="canary", steps=[50, 100]
        )
        load.wait_for(v2)  # the server picked the split up
        rollout.rollback(meta, "e", "testing the way back")
        load.wait_for(v1, only=True)
        rollout.start(meta, store, "e", "m@challenger", cache_dir=cache, strategy="blue_green", interval_s=1)
        load.wait_for(v2, only=True)
        deadline = time.monotonic() + 30  # the analysis promotes once the log has the step
        while not any(d.state == "promoted" for d in rollout.tick(meta, Lake(settings.store_url))):
            assert time.monotonic() < deadline, list_deployments(meta, "e")[0].reason
            time.sleep(0.5)
        assert registry.resolve(meta, "models:/m@champion").version == v2
        load.wait_for(v2, only=True)
        v3 = _register(client, 3.0, None)
        client.set_alias("m", "champion", v3)  # an alias moved by hand is followed too
        load.wait_for(v3, only=True)
        # An endpoint applied while the server runs is served without a restart.
        apply(meta, Definitions([ENDPOINT, gyre.Endpoint("f", model="m/1")]))
        deadline = time.monotonic() + 15
        while (
            httpx.post(f"{server.url}/v1/endpoints/f/predict", json={"row": {"a": 0, "b": 0}}).status_code
            != 200
        ):
            assert time.monotonic() < deadline, "endpoint 'f' was not loaded by the running server"
            time.sleep(0.2)
    assert load.failures == []
    assert set(load.answers) == {v1, v2, v3} and sum(load.answers.values()) > 200
    assert d.id
