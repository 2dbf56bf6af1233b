"""run.log_model(..., reference_data=X) stores the reference drift monitoring compares with."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from gyre.client.client import Client
from gyre.monitoring.reference import list_references


def test_log_model_records_the_training_reference(client: Client) -> None:
    rng = np.random.default_rng(0)
    x = pd.DataFrame({"amount": rng.gamma(2.0, 30.0, 500), "hour": rng.integers(0, 24, 500).astype(float)})
    y = (x["amount"] > 80).astype(int)
    model = LogisticRegression().fit(x, y)
    with client.start_run("ref", capture_environment=False) as run:
        mv = run.log_model(model, "model", register_as="fraud", input_example=x.head(3), reference_data=x)
    refs = list_references(client.backend.meta, "fraud", mv.version)  # type: ignore[attr-defined]
    assert refs, "no reference was recorded"
    with client.start_run("ref", capture_environment=False) as run:
        plain = run.log_model(model, "model", register_as="fraud", input_example=x.head(3))
    assert list_references(client.backend.meta, "fraud", plain.version) == []  # type: ignore[attr-defined]
