"""Predictions from a live server over real sockets: Triton's own client (Open Inference Protocol),
batching of concurrent callers, the prediction log counted after a burst, and ``kill -9`` of a
``gyre serve`` process under load losing no answered prediction."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

import gyre
from gyre.client.client import Client
from gyre.config import Settings
from gyre.data.lake import Lake
from gyre.definitions import Definitions
from gyre.project import apply

from .conftest import LiveServer

pytestmark = pytest.mark.integration

COLUMNS = [f"f{i}" for i in range(6)]


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    return pd.DataFrame(rng.normal(size=(400, len(COLUMNS))), columns=COLUMNS)


class Slow:
    """A model that takes 20 ms a call, whatever the batch size (like a remote or a big model)."""

    def predict(self, x: Any) -> np.ndarray:
        time.sleep(0.02)
        return np.asarray(x, dtype=float).sum(axis=1)


def _register(client: Client, model: Any, name: str, example: pd.DataFrame) -> int:
    with client.start_run("serving") as run:
        mv = run.log_model(model, "model", register_as=name, input_example=example)
    client.set_alias(name, "champion", mv.version)
    return int(mv.version)  # type: ignore[union-attr]


def _endpoints(client: Client, *endpoints: gyre.Endpoint) -> None:
    apply(client.backend.meta, Definitions(endpoints))  # type: ignore[attr-defined]


@pytest.fixture
def fraud(client: Client, frame: pd.DataFrame) -> lgb.LGBMClassifier:
    y = (frame.f0 + frame.f1 > 0).astype(int)
    model = lgb.LGBMClassifier(n_estimators=30, num_threads=1, verbose=-1).fit(frame, y)
    _register(client, model, "fraud", frame.head(5))
    _endpoints(client, gyre.Endpoint("fraud", model="fraud@champion"))
    return model


@pytest.fixture
def slow(client: Client, frame: pd.DataFrame) -> None:
    """Endpoint 'slow' (its model class lives in this module: only servers in this process load it)."""
    _register(client, Slow(), "slow", frame.head(5))
    _endpoints(client, gyre.Endpoint("slow", model="slow@champion"))


def _lake_ids(settings: Settings) -> list[str]:
    lake = Lake(settings.store_url)
    if not lake.exists("predictions"):
        return []
    return lake.read("predictions", columns=["prediction_id"])["prediction_id"].to_pylist()  # type: ignore[no-any-return]


def test_tritons_client_speaks_to_the_server(
    fraud: lgb.LGBMClassifier, frame: pd.DataFrame, start_server: Callable[..., LiveServer]
) -> None:
    httpclient = pytest.importorskip("tritonclient.http")
    server = start_server()
    triton = httpclient.InferenceServerClient(server.url.removeprefix("http://"))
    try:
        assert triton.is_server_live() and triton.is_server_ready()
        assert triton.is_model_ready("fraud") and not triton.is_model_ready("nope")
        meta = triton.get_model_metadata("fraud")
        assert meta["versions"] == ["1"] and [i["name"] for i in meta["inputs"]] == COLUMNS
        x = frame.to_numpy(dtype=np.float32)[:7]
        want = fraud.booster_.predict(x)
        for binary in (True, False):  # Triton's default binary tensors, and JSON data
            tensor = httpclient.InferInput("input-0", list(x.shape), "FP32")
            tensor.set_data_from_numpy(x, binary_data=binary)
            outputs = [httpclient.InferRequestedOutput("predict", binary_data=binary)]
            result = triton.infer("fraud", [tensor], outputs=outputs, request_id="r-7")
            np.testing.assert_allclose(result.as_numpy("predict"), want, rtol=1e-6)
            assert result.get_response()["id"] == "r-7"
        named = []
        for j, column in enumerate(COLUMNS):
            tensor = httpclient.InferInput(column, [len(x)], "FP64")
            tensor.set_data_from_numpy(x[:, j].astype(np.float64))
            named.append(tensor)
        np.testing.assert_allclose(triton.infer("fraud", named).as_numpy("predict"), want, rtol=1e-6)
        bad = httpclient.InferInput("input-0", [1, 2], "FP32")
        bad.set_data_from_numpy(np.zeros((1, 2), dtype=np.float32))
        with pytest.raises(Exception, match=r"shape \[rows, 6\]"):
            triton.infer("fraud", [bad])
    finally:
        triton.close()


def test_concurrent_callers_share_model_calls_over_sockets(
    slow: None, frame: pd.DataFrame, start_server: Callable[..., LiveServer]
) -> None:
    server = start_server()
    url = f"{server.url}/v1/endpoints/slow/predict"
    rows = frame.head(24).to_dict(orient="records")

    def call(r: dict[str, float]) -> float:
        with httpx.Client(timeout=30) as http:
            answer = http.post(url, json={"row": r})
            assert answer.status_code == 200, answer.text
            return float(answer.json()["predictions"][0])

    with ThreadPoolExecutor(len(rows)) as pool:
        answers = list(pool.map(call, rows))
    assert answers == pytest.approx(frame.head(24).sum(axis=1).tolist())
    metrics = httpx.get(f"{server.url}/metrics").text
    calls = next(
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith('gyre_predict_batch_size_count{endpoint="slow"')
    )
    assert calls < len(rows), f"{calls:.0f} model calls for {len(rows)} concurrent requests"


def test_a_burst_is_logged_exactly(
    fraud: lgb.LGBMClassifier,
    frame: pd.DataFrame,
    start_server: Callable[..., LiveServer],
    settings: Settings,
) -> None:
    ids: list[str] = []
    lock = threading.Lock()
    server = start_server()
    url = f"{server.url}/v1/endpoints/fraud/predict"
    records = frame.to_dict(orient="records")

    def client(worker: int) -> None:
        with httpx.Client(timeout=30) as http:
            for i in range(50):
                r = records[(worker * 50 + i) % len(records)]
                answer = http.post(url, json={"rows": [r] * (1 + i % 3)})
                assert answer.status_code == 200, answer.text
                with lock:
                    ids.extend(answer.json()["prediction_ids"])

    threads = [threading.Thread(target=client, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ids) == 8 * sum(1 + i % 3 for i in range(50))
    # Durable when answered; the server's flusher commits the buffer to the lake within a second.
    deadline = time.monotonic() + 15
    while len(_lake_ids(settings)) < len(ids):
        assert time.monotonic() < deadline, "logged predictions did not reach the lake"
        time.sleep(0.2)
    time.sleep(1.5)  # nothing more arrives
    logged = _lake_ids(settings)
    assert len(logged) == len(ids) and set(logged) == set(ids)


def test_kill_9_loses_no_answered_prediction(  # type: ignore[no-untyped-def]
    fraud: lgb.LGBMClassifier,
    frame: pd.DataFrame,
    project: Path,
    settings: Settings,
    start_gyre,
    unused_port: int,
) -> None:
    port = unused_port
    proc = start_gyre(port)
    url = f"http://127.0.0.1:{port}/v1/endpoints/fraud/predict"
    answered: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    records = frame.to_dict(orient="records")

    def client(worker: int) -> None:
        n = 0
        with httpx.Client(timeout=5) as http:
            while not stop.is_set():
                rows = [records[(worker + n + k) % len(records)] for k in range(1 + n % 2)]
                try:
                    r = http.post(url, json={"rows": rows})
                except httpx.TransportError:
                    return
                if r.status_code == 200:
                    with lock:
                        answered.extend(r.json()["prediction_ids"])
                n += 1

    threads = [threading.Thread(target=client, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while len(answered) < 1500 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    stop.set()
    for t in threads:
        t.join()
    assert len(answered) >= 500

    proc = start_gyre(port)  # recovery commits what the killed process had answered
    try:
        deadline = time.monotonic() + 20
        while not set(answered) <= set(_lake_ids(settings)):
            assert time.monotonic() < deadline, "answered predictions were lost"
            time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(20)
    logged = _lake_ids(settings)
    assert set(answered) <= set(logged)
    assert len(logged) == len(set(logged)), "a prediction was logged twice"


def test_several_worker_processes_log_each_prediction_once(  # type: ignore[no-untyped-def]
    fraud: lgb.LGBMClassifier,
    frame: pd.DataFrame,
    settings: Settings,
    start_gyre,
    unused_port: int,
) -> None:
    """``gyre serve --workers 2``: both processes serve, share the prediction log's buffer, and
    every answered prediction reaches the lake exactly once."""
    port = unused_port
    proc = start_gyre(port, "serve", "--workers", "2")
    url = f"http://127.0.0.1:{port}/v1/endpoints/fraud/predict"
    records = frame.to_dict(orient="records")
    answered: list[str] = []
    lock = threading.Lock()

    def client(worker: int) -> None:
        # A new connection per request, so the kernel spreads requests over both processes.
        for i in range(60):
            r = httpx.post(url, json={"row": records[(worker * 60 + i) % len(records)]}, timeout=30)
            assert r.status_code == 200, r.text
            with lock:
                answered.extend(r.json()["prediction_ids"])

    threads = [threading.Thread(target=client, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        deadline = time.monotonic() + 20
        while len(_lake_ids(settings)) < len(answered):
            assert time.monotonic() < deadline, "answered predictions did not reach the lake"
            time.sleep(0.2)
        time.sleep(2)  # both flushers have had their turn
    finally:
        proc.terminate()
        proc.wait(20)
    logged = _lake_ids(settings)
    assert len(answered) == 360 and sorted(logged) == sorted(answered)
