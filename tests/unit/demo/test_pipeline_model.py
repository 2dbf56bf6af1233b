"""What the demo's retraining relies on: a model a pipeline registers can be served and monitored.

It gets its signature from the ``"input_example"`` output (serving and rollouts need one), its
drift reference from the ``"reference"`` output (its model input columns only, with the
model's predictions), and a LightGBM model with categories predicts on a row whose numeric
feature is null (an online window with nothing in it), as the endpoint sends it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest

import gyre
from gyre.client.client import Client
from gyre.monitoring.reference import get_reference, list_references
from gyre.pipelines import run_pipeline
from gyre.pipelines.executors.local import LocalExecutor

lgb = pytest.importorskip("lightgbm")

INPUTS = ["amount", "country", "amount_1h"]

# -- steps (module level: workers import this module by its file) --------------------------------


@gyre.step
def payments(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    amount = rng.lognormal(3, 1, n)
    return pd.DataFrame(
        {
            "payment_id": [f"p{i}" for i in range(n)],
            "amount": amount,
            "country": rng.choice(["US", "GB", "DE"], n),
            "amount_1h": np.where(rng.random(n) < 0.5, np.nan, amount * 2),
            "is_fraud": amount > 60,
        }
    )


@gyre.step(outputs=2)
def fit(data: pd.DataFrame) -> tuple[Any, pd.DataFrame]:
    x = data[INPUTS].astype({"country": "category"})
    params = {"objective": "binary", "verbose": -1, "num_threads": 1, "min_data_in_leaf": 5}
    return lgb.train(params, lgb.Dataset(x, data["is_fraud"]), 10), x.head(3)


@gyre.pipeline(register_as="scorer", label="is_fraud")
def scorer(n: int = 400):
    data = payments(n)
    model, example = fit(data)
    return {"model": model, "input_example": example, "train": data, "reference": data}


@pytest.fixture
def executor() -> Iterator[LocalExecutor]:
    ex = LocalExecutor(max_workers=1)
    yield ex
    ex.close()


def test_a_pipeline_model_is_servable_and_monitored(client: Client, executor: LocalExecutor) -> None:
    run = run_pipeline(client, scorer, {}, executor=executor)
    assert run.ok and run.outcome is not None and run.outcome.decision == "registered"
    version = client.models.get_version("scorer", 1)
    assert version.signature is not None
    assert {c["name"]: c["dtype"] for c in version.signature["inputs"]} == {
        "amount": "float64",
        "country": "category",
        "amount_1h": "float64",
    }

    meta = client.backend.meta  # type: ignore[attr-defined]
    refs = {r.kind: r for r in list_references(meta, "scorer", 1)}
    assert set(refs) == {"training", "predictions"}
    assert sorted(refs["training"].columns) == sorted(INPUTS)  # no label, no id
    assert refs["training"].rows == 400
    assert "prediction" in get_reference(meta, client.backend.blobs, "scorer", 1).columns

    model = client.load_model("models:/scorer/1")
    out = model.predict({"amount": [80.0], "country": ["FR"], "amount_1h": [None]})
    assert out.shape == (1,) and 0 <= float(out[0]) <= 1
