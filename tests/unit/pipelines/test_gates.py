"""Gates each way, alone and in pipeline runs: registered as challenger, rejected, held for review."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

import gyre
from gyre.client.client import Client
from gyre.errors import Conflict, InvalidArgument, NotFound
from gyre.meta import MetaStore
from gyre.pipelines import review, run_pipeline
from gyre.pipelines.executors.local import LocalExecutor
from gyre.pipelines.gates import (
    BeatsChampion,
    DataCheck,
    DemographicParity,
    EqualOpportunity,
    GateContext,
    MetricThreshold,
    roc_auc,
)


class Rule:
    """A stand-in model: predicts ``fn(columns)``; gates only call ``predict``."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn

    def predict(self, cols: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(self.fn(cols), dtype=float)


class Info:
    def __init__(self, version: int, metrics: dict[str, float]) -> None:
        self.version, self.metrics = version, metrics


HOLDOUT = pd.DataFrame(
    {
        "x": [0.1, 0.2, 0.3, 0.6, 0.7, 0.9, 0.4, 0.8],
        "group": ["a", "a", "a", "a", "b", "b", "b", "b"],
        "y": [0, 0, 0, 1, 1, 1, 0, 1],
    }
)


def ctx(**kw: Any) -> GateContext:
    base: dict[str, Any] = {"outputs": {"holdout": HOLDOUT, "train": HOLDOUT}, "metrics": {}, "label": "y"}
    base.update(kw)
    return GateContext(**base)


# -- each gate alone ---------------------------------------------------------------------------


def test_metric_threshold() -> None:
    gate = MetricThreshold("auc", ">=", 0.8)
    assert gate.evaluate(ctx(metrics={"auc": 0.85})).passed
    failed = gate.evaluate(ctx(metrics={"auc": 0.7}))
    assert not failed.passed and failed.reason == "auc = 0.7, needs >= 0.8"
    missing = gate.evaluate(ctx(metrics={"loss": 0.1}))
    assert not missing.passed and "metric 'auc' was not logged (logged: loss)" in missing.reason
    assert not gate.evaluate(ctx(metrics={"auc": float("nan")})).passed
    assert MetricThreshold("loss", "<", 0.2).evaluate(ctx(metrics={"loss": 0.1})).passed
    with pytest.raises(InvalidArgument, match="operator '=>'"):
        MetricThreshold("auc", "=>", 0.8)


def test_data_check() -> None:
    assert DataCheck(min_rows=8, min_label_fraction=0.4).evaluate(ctx()).passed
    small = DataCheck(min_rows=100).evaluate(ctx())
    assert not small.passed and small.reason == "8 rows, needs at least 100"
    imbalanced = DataCheck(min_label_fraction=0.3).evaluate(ctx(outputs={"train": {"y": [0, 0, 0, 1]}}))
    assert not imbalanced.passed
    assert imbalanced.reason == "label 'y' rarest value 1 is 0.25 of rows, needs 0.3"
    assert imbalanced.details["rarest_fraction"] == 0.25
    one_class = DataCheck(min_label_fraction=0.1).evaluate(ctx(outputs={"train": {"y": [1, 1, 1]}}))
    assert not one_class.passed and "has a single value 1" in one_class.reason
    holes = DataCheck(max_missing_fraction=0.2).evaluate(
        ctx(outputs={"train": {"y": [1.0, None, None, 0.0]}})
    )
    assert not holes.passed and "column 'y' is 0.5 missing" in holes.reason
    no_data = DataCheck(min_rows=1, data="nope").evaluate(ctx())
    assert not no_data.passed and "no output named 'nope'" in no_data.reason
    no_label = DataCheck(min_label_fraction=0.1).evaluate(ctx(label=None))
    assert not no_label.passed and "no label column" in no_label.reason
    with pytest.raises(InvalidArgument, match="checks nothing"):
        DataCheck()


def test_data_check_reads_pyarrow() -> None:
    import pyarrow as pa

    table = pa.table({"y": [0, 1, 1, 0]})
    assert DataCheck(min_rows=4, min_label_fraction=0.5).evaluate(ctx(outputs={"train": table})).passed


def test_beats_champion_on_the_same_holdout() -> None:
    good = Rule(lambda c: c["x"])  # perfectly ranks y, except x=0.4
    weak = Rule(lambda c: 1 - c["x"])
    champion = (Info(3, {"auc": 0.5}), weak)
    gate = BeatsChampion("auc", margin=0.05)
    result = gate.evaluate(ctx(candidate=lambda: good, champion=lambda: champion))
    assert (
        result.passed
        and "vs champion v3" in result.reason
        and "both scored on 'holdout' (8 rows)" in result.reason
    )
    worse = gate.evaluate(ctx(candidate=lambda: weak, champion=lambda: (Info(3, {}), good)))
    assert not worse.passed and "needs an improvement of at least 0.05" in worse.reason
    # a negative margin tolerates a small loss
    same = BeatsChampion("auc", margin=-0.01).evaluate(
        ctx(candidate=lambda: good, champion=lambda: (Info(3, {}), good))
    )
    assert same.passed


def test_beats_champion_without_champion_or_holdout() -> None:
    assert (
        BeatsChampion("auc").evaluate(ctx(model_name="fraud")).reason
        == "no champion of 'fraud' yet: nothing to beat"
    )
    recorded = BeatsChampion("rmse", holdout=None).evaluate(
        ctx(metrics={"rmse": 1.0}, champion=lambda: (Info(2, {"rmse": 1.5}), None))
    )
    assert recorded.passed and "recorded metrics" in recorded.reason  # lower rmse is better
    missing_model = BeatsChampion("auc").evaluate(ctx(champion=lambda: (Info(1, {}), Rule(lambda c: c["x"]))))
    assert not missing_model.passed and "no 'model' output" in missing_model.reason
    with pytest.raises(InvalidArgument, match="cannot score 'gini'"):
        BeatsChampion("gini")


def test_fairness_gates() -> None:
    # group a: 1 of 4 predicted positive; group b: 4 of 4
    model = Rule(lambda c: c["x"] > 0.35)
    parity = DemographicParity("group", max_diff=0.2).evaluate(ctx(candidate=lambda: model))
    assert not parity.passed
    assert "positive rate by 'group': a=0.25, b=1; difference 0.75 exceeds 0.2" in parity.reason
    assert DemographicParity("group", max_diff=0.8).evaluate(ctx(candidate=lambda: model)).passed
    # true-positive rates: a has one positive (x=0.6, predicted), b three (all predicted)
    opportunity = EqualOpportunity("group", max_diff=0.0).evaluate(ctx(candidate=lambda: model))
    assert opportunity.passed and "a=1, b=1" in opportunity.reason
    missing = DemographicParity("gender", 0.1).evaluate(ctx(candidate=lambda: model))
    assert not missing.passed and "no column 'gender'" in missing.reason


def test_roc_auc_matches_scikit_learn() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    score = np.round(rng.random(500) + y * 0.3, 1)  # with ties
    assert roc_auc(y, score) == pytest.approx(roc_auc_score(y, score))


# -- in pipeline runs ---------------------------------------------------------------------------


@gyre.step(outputs=2)
def make_data(n: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    frame = pd.DataFrame(
        {"x": x, "noise": rng.normal(size=n), "y": (x + rng.normal(scale=0.5, size=n) > 0).astype(int)}
    )
    return frame.iloc[: n // 2], frame.iloc[n // 2 :]


@gyre.step
def fit_lr(train: pd.DataFrame, use_x: bool) -> Any:
    from sklearn.linear_model import LogisticRegression

    cols = ["x", "noise"] if use_x else ["noise"]
    return LogisticRegression().fit(train[cols], train["y"])


@gyre.step
def score(model: Any, holdout: pd.DataFrame) -> dict[str, float]:
    p = model.predict_proba(holdout[list(model.feature_names_in_)])[:, 1]
    return {"auc": roc_auc(holdout["y"].to_numpy(), p)}


def _fraud(review_flag: bool = False, min_auc: float = 0.7, margin: float = 0.0) -> Any:
    @gyre.pipeline(
        name="fraud",
        gates=[
            DataCheck(min_rows=50, min_label_fraction=0.2),
            MetricThreshold("auc", ">=", min_auc),
            BeatsChampion("auc", margin=margin),
        ],
        label="y",
        review=review_flag,
    )
    def fraud(n: int = 400, seed: int = 0, use_x: bool = True):
        train, holdout = make_data(n, seed)
        model = fit_lr(train, use_x)
        return {"model": model, "metrics": score(model, holdout), "train": train, "holdout": holdout}

    return fraud


@pytest.fixture(scope="module")
def executor() -> Any:
    ex = LocalExecutor(max_workers=2)
    yield ex
    ex.close()


def test_passing_gates_register_a_challenger_and_failing_ones_nothing(
    client: Client, executor: LocalExecutor
) -> None:
    first = run_pipeline(client, _fraud(), {}, executor=executor)
    assert first.outcome is not None and first.outcome.decision == "registered", first.outcome
    assert first.outcome.version == 1 and [g.passed for g in first.outcome.gates] == [True, True, True]
    assert client.models.get("fraud").aliases == {"challenger": 1}
    history = client.models.alias_history("fraud")
    assert "pipeline 'fraud' run" in history[-1].reason and "passed 3 gate(s)" in history[-1].reason
    client.models.set_alias("fraud", "champion", 1)

    weak = run_pipeline(client, _fraud(min_auc=0.0), {"use_x": False}, executor=executor)
    assert weak.ok and weak.outcome is not None and weak.outcome.decision == "rejected"
    beats = weak.outcome.gates[2]
    assert (
        not beats.passed and "vs champion v1" in beats.reason and "both scored on 'holdout'" in beats.reason
    )
    assert [v.version for v in client.models.versions("fraud")] == [1]  # nothing registered
    info = client.runs.get(weak.run_id)
    assert info.tags["gyre.outcome"] == "rejected" and "gyre.model" not in info.tags
    assert "nothing was registered" in info.tags["gyre.outcome.reason"]
    meta: MetaStore = client.backend.meta  # type: ignore[attr-defined]
    with pytest.raises(NotFound, match="version 1 is not held for review"):
        review.approve(meta, "fraud", 1)
    assert [a.path for a in client.runs.artifacts(weak.run_id)] == ["model"]  # kept for inspection

    too_strict = run_pipeline(client, _fraud(min_auc=0.99), {"seed": 1}, executor=executor)
    assert too_strict.outcome is not None and too_strict.outcome.decision == "rejected"
    assert "auc >= 0.99" in too_strict.outcome.reason


def test_review_holds_the_version_until_approved_or_rejected(client: Client, executor: LocalExecutor) -> None:
    meta: MetaStore = client.backend.meta  # type: ignore[attr-defined]
    held = run_pipeline(client, _fraud(review_flag=True), {}, executor=executor)
    assert held.outcome is not None and held.outcome.decision == "held" and held.outcome.version == 1
    assert "gyre models approve fraud 1" in held.outcome.reason
    assert client.models.get("fraud").aliases == {}
    assert client.runs.get(held.run_id).tags["gyre.review"] == "pending"
    assert [(r.model, r.version, r.state) for r in review.list_reviews(meta)] == [("fraud", 1, "pending")]

    approved = review.approve(meta, "fraud", 1, "looked at the drift report")
    assert approved.state == "approved" and approved.reason == "looked at the drift report"
    assert client.models.get("fraud").aliases == {"challenger": 1}
    with pytest.raises(Conflict, match="already approved"):
        review.reject(meta, "fraud", 1)

    second = run_pipeline(client, _fraud(review_flag=True), {"seed": 3}, executor=executor)
    assert second.outcome is not None and second.outcome.version == 2
    rejected = review.reject(meta, "fraud", 2, "worse on the new segment")
    assert rejected.state == "rejected"
    assert client.models.get("fraud").aliases == {"challenger": 1}
    assert review.list_reviews(meta, "pending") == []
    with pytest.raises(NotFound, match="has no version 99"):
        review.approve(meta, "fraud", 99)
