"""Batch scoring on a real local Ray cluster, started by the test (``ray.init(num_cpus=2)``).

One test: Ray starts slowly. Fails in CI when Ray is missing (it is in the ``dev`` extra),
skips elsewhere.
"""

from __future__ import annotations

import os

import lightgbm as lgb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import gyre
from gyre.client.client import Client
from gyre.data import catalog
from gyre.data.lake import Lake

pytestmark = [
    pytest.mark.integration,
    # Ray Data's DataContext sets its own deprecated fields when it is created; not our code.
    pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*"),
]

COLUMNS = [f"f{i}" for i in range(5)]


def _need(name: str, reason: str) -> None:
    # As tests/conftest.py's need_service (test modules cannot import conftest modules).
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"{name} is required in CI but unavailable: {reason}")
    pytest.skip(f"{name} unavailable: {reason}")


def test_scoring_on_ray_equals_scoring_here_and_commits_once(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    try:
        import ray
    except ImportError as exc:
        _need("Ray (pip install 'gyre-ml[ray]')", str(exc))
    rng = np.random.default_rng(8)
    x = rng.normal(size=(400, len(COLUMNS)))
    model = lgb.LGBMClassifier(n_estimators=20, num_threads=1, verbose=-1)
    model.fit(pd.DataFrame(x, columns=COLUMNS), (x[:, 0] - x[:, 2] > 0).astype(int))
    with client.start_run("ray") as run:
        run.log_model(model, "model", register_as="fraud", input_example=pd.DataFrame(x[:5], columns=COLUMNS))
    client.set_alias("fraud", "champion", 1)

    meta, lake = client.backend.meta, Lake(client.settings.store_url)  # type: ignore[attr-defined]
    catalog.ensure_dataset(meta, "payments", keys=["payment_id"])
    for part in range(3):  # three versions, so three Parquet files for Ray Data to read
        values = rng.normal(size=(2000, len(COLUMNS)))
        ids = np.arange(part * 2000, (part + 1) * 2000)
        lake.append(
            "payments", pa.table({"payment_id": ids, **{c: values[:, j] for j, c in enumerate(COLUMNS)}})
        )

    monkeypatch.setenv("GYRE_BACKENDS_COMPUTE", "ray:local")  # the project's compute: Ray, by default
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        on_ray = gyre.score("models:/fraud@champion", "payments@1", out="on_ray", batch_rows=500)
        assert ray.is_initialized()  # the session that was running is used, not shut down
    finally:
        ray.shutdown()
    here = gyre.score("models:/fraud@champion", "payments@1", out="here", batch_rows=500, on="local")

    assert (on_ray.compute, here.compute) == ("ray:local", "local")
    assert on_ray.rows == here.rows == 4000 and on_ray.dataset_version == 1
    a = lake.read("on_ray").sort_by("payment_id")
    b = lake.read("here").sort_by("payment_id")
    assert a["payment_id"].to_pylist() == list(range(4000))
    np.testing.assert_array_equal(a["prediction"].to_numpy(), b["prediction"].to_numpy())
    history = lake.history("on_ray")
    assert len(history) == 1  # the driver made one commit of everything the actors scored
    assert history[0]["metadata"]["gyre.score.dataset_version"] == "1"
    assert catalog.get_version(meta, "on_ray", 0).offsets["model_version"] == 1
