"""A project with registered models and endpoints, and its server app driven in-process.

:class:`AppClient` runs the app's lifespan and requests on an event loop of its own thread, over
httpx's ASGI transport (no sockets), so a test can send requests one by one or many at once.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import gyre
from gyre.api.app import create_app
from gyre.client.client import Client
from gyre.config import Settings
from gyre.data.lake import Lake
from gyre.definitions import Definition, Definitions
from gyre.project import apply

COLUMNS = ["amount", "age", "score", "hour"]


@dataclass(frozen=True)
class Data:
    x: np.ndarray  # (300, 4)
    y: np.ndarray
    frame: pd.DataFrame  # x with COLUMNS


@pytest.fixture(scope="session")
def data() -> Data:
    rng = np.random.default_rng(11)
    x = rng.normal(size=(300, 4))
    y = (x[:, 0] + 0.5 * x[:, 1] + rng.normal(scale=0.3, size=300) > 0).astype(int)
    return Data(x, y, pd.DataFrame(x, columns=COLUMNS))


def lightgbm_model(data: Data) -> lgb.LGBMClassifier:
    return lgb.LGBMClassifier(n_estimators=15, num_threads=1, verbose=-1).fit(data.frame, data.y)


def sklearn_model(data: Data) -> LogisticRegression:
    return LogisticRegression().fit(data.frame, data.y)


class Exploding:
    """Sums its columns, and raises on a row whose first column is 666 (a model bug)."""

    def predict(self, x: Any) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        if (x[:, 0] == 666).any():
            raise ValueError("boom: the model cannot handle 666")
        return x.sum(axis=1)


def register(client: Client, model: Any, name: str, example: Any, alias: str | None = "champion") -> int:
    """Log ``model`` in a run, register it as ``name`` and point ``alias`` at the new version."""
    with client.start_run("serving-tests") as run:
        mv = run.log_model(model, "model", register_as=name, input_example=example)
    if alias:
        client.set_alias(name, alias, mv.version)
    return int(mv.version)  # type: ignore[union-attr]


def apply_definitions(client: Client, *items: Definition) -> None:
    apply(client.backend.meta, Definitions(items))  # type: ignore[attr-defined]


def lake_rows(settings: Settings, dataset: str = "predictions") -> list[dict[str, Any]]:
    lake = Lake(settings.store_url)
    if not lake.exists(dataset):
        return []
    rows: list[dict[str, Any]] = lake.read(dataset).to_pylist()
    return rows


class AppClient:
    """The server app with its lifespan entered, driven from a loop on another thread."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self._lifespan = app.router.lifespan_context(app)
        self.run(self._lifespan.__aenter__())
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gyre")

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.run(self.http.get(path, **kwargs))  # type: ignore[no-any-return]

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.run(self.http.post(path, **kwargs))  # type: ignore[no-any-return]

    def post_many(self, path: str, bodies: list[Any]) -> list[httpx.Response]:
        """POST every JSON body at once (concurrently, on the app's loop)."""

        async def all_at_once() -> list[httpx.Response]:
            return list(await asyncio.gather(*(self.http.post(path, json=b) for b in bodies)))

        return self.run(all_at_once())  # type: ignore[no-any-return]

    @property
    def serving(self) -> Any:
        return self.app.state.serving

    def close(self) -> None:
        self.run(self.http.aclose())
        self.run(self._lifespan.__aexit__(None, None, None))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@pytest.fixture
def start_app(settings: Settings) -> Iterator[Callable[..., AppClient]]:
    """Start the server app for this project (after registering what the test needs)."""
    started: list[AppClient] = []

    def start(**kwargs: Any) -> AppClient:
        app_client = AppClient(create_app(settings, **kwargs))
        started.append(app_client)
        return app_client

    yield start
    for app_client in started:
        app_client.close()


@pytest.fixture
def fraud(client: Client, data: Data) -> int:
    """LightGBM model 'fraud' (champion) and endpoint 'fraud' reading COLUMNS from the request."""
    version = register(client, lightgbm_model(data), "fraud", data.frame.head(5))
    apply_definitions(client, gyre.Endpoint("fraud", model="fraud@champion"))
    return version


def row(values: Any) -> dict[str, float]:
    return dict(zip(COLUMNS, (float(v) for v in values), strict=True))
