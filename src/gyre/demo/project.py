"""The project ``gyre demo`` builds: ``gyre.toml``, ``definitions.py`` and the history files.

The definitions are ordinary Gyre code a user could have written (and can edit, then run
``gyre up`` on): the payments and labels datasets, per-user window features, the training
pipeline with its gates, the endpoint with an automatic canary, the monitor and the drift
alert that retrains. Only the numbers come from the :class:`~gyre.demo.pace.Pace`: the story
is time-compressed, so an hour of payments is ``HOUR`` real seconds.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from string import Template

import pyarrow as pa
import pyarrow.parquet as pq

from gyre.demo.pace import Pace
from gyre.errors import AlreadyExists, InvalidArgument

MODEL = "fraud"
ENDPOINT = "fraud"
PIPELINE = "train_fraud"
DRIFT_RULE = "fraud_drift"
QUALITY_RULE = "fraud_auc"
PAYMENTS = "payments"
LABELS = "labels"
PAYMENTS_FILE = "data/payments-history.parquet"
LABELS_FILE = "data/labels-history.parquet"
# What a predict request carries besides the user's id; the rest comes from the online store.
REQUEST_FIELDS = ("amount", "hour", "merchant_id", "country", "device")

GYRE_TOML = """\
# The project 'gyre demo' built. Explore it with 'gyre up' (API, prediction endpoint and
# controller), 'gyre runs list', 'gyre models show fraud', 'gyre deployments list',
# 'gyre monitor alerts'. Everything is kept under .gyre/.

[project]
name = $name
definitions = ["definitions.py"]
"""

DEFINITIONS_PY = Template('''\
"""Fraud detection on a payments stream: what 'gyre demo' set up, as ordinary Gyre code.

Payments and their labels (chargebacks, arriving late) are lake datasets; per-user window
features serve training (point in time) and the endpoint (online store) alike. The pipeline
'train_fraud' trains a LightGBM model and registers it as 'challenger' if it passes its
gates; the endpoint 'fraud' then rolls it out as a canary and promotes it on its own. The
alert 'fraud_drift' watches the endpoint's traffic and retrains when it drifts; 'fraud_auc'
watches its live AUC as labels come back.

Time is compressed $scale times: one hour of payments passes in HOUR = $hour real seconds,
so windows, intervals and cooldowns are in real seconds and short.
"""

import gyre
from gyre.monitoring import DriftedFeatures, QualityBelow, RunPipeline
from gyre.pipelines import BeatsChampion, DataCheck, MetricThreshold, current_step, read_dataset

HOUR = $hour  # real seconds per hour of payments
DAY = 24 * HOUR

# -- data ------------------------------------------------------------------------------------

payments = gyre.Dataset(
    "payments",
    keys=["payment_id"],
    event_time="ts",
    schema={
        "payment_id": "string", "user_id": "int64", "merchant_id": "string", "amount": "double",
        "currency": "string", "country": "string", "device": "string", "hour": "int64",
        "ts": "timestamp[tz=UTC]",
    },
    description="Card payments; 'hour' is the hour of day where the payment was made.",
)
labels = gyre.Dataset(
    "labels",
    keys=["payment_id"],
    event_time="label_ts",
    schema={"payment_id": "string", "is_fraud": "bool", "label_ts": "timestamp[tz=UTC]"},
    description="Whether a payment was fraud, known when its chargeback (or its absence) arrives.",
)

# -- features --------------------------------------------------------------------------------

user = gyre.Entity("user", join_keys=["user_id"])
user_activity = gyre.FeatureView(
    "user_activity",
    entity=user,
    source=payments,
    features=[
        gyre.Aggregate("payment_id", "count", window=HOUR, name="payments_1h"),
        gyre.Aggregate("amount", "sum", window=HOUR, name="amount_1h"),
        gyre.Aggregate("payment_id", "count", window=DAY, name="payments_1d"),
        gyre.Aggregate("amount", "sum", window=DAY, name="amount_1d"),
    ],
)
FEATURES = [f"user_activity:{f.name}" for f in user_activity.features]
REQUEST = $request  # sent with each prediction request
CATEGORIES = ["merchant_id", "country", "device"]
INPUTS = [*REQUEST, *(ref.split(":")[1] for ref in FEATURES)]

# -- training --------------------------------------------------------------------------------


@gyre.step
def labelled_payments(window_s: float):
    """The payments of the last window_s seconds whose label has arrived, each with its
    features as they were just before it (what the endpoint sees when it is asked)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    rows = read_dataset("payments", columns=["payment_id", "user_id", "ts", *REQUEST])
    newest = pc.max(rows["ts"])
    since = pc.subtract(newest, pa.scalar(int(window_s * 1e6), pa.duration("us")))
    rows = rows.filter(pc.greater_equal(rows["ts"], since))
    rows = rows.join(read_dataset("labels", columns=["payment_id", "is_fraud"]), "payment_id")
    # A window at t covers (t - w, t], which would count the payment itself.
    rows = rows.append_column("event_timestamp", pc.subtract(rows["ts"], pa.scalar(1, pa.duration("us"))))
    client = gyre.connect()
    try:
        data = client.get_training_set(rows, FEATURES).to_pandas()
    finally:
        client.close()
    return data.sort_values("ts", kind="stable").reset_index(drop=True)


@gyre.step(outputs=2)
def split(data, holdout_s: float, holdout_share: float):
    """Hold out a random share of the most recent payments: the gates judge a model on the
    kind of traffic it will serve next."""
    import numpy as np
    import pandas as pd

    recent = data["ts"] >= data["ts"].max() - pd.Timedelta(seconds=holdout_s)
    held = recent & (np.random.default_rng(0).random(len(data)) < holdout_share)
    return data[~held].reset_index(drop=True), data[held].reset_index(drop=True)


@gyre.step
def recent(data, window_s: float):
    """The payments of the last window_s seconds: the traffic a model should expect live, what
    drift monitoring compares the endpoint's traffic with (a day's data would hold the
    night's account takeovers, which daytime traffic does not look like)."""
    import pandas as pd

    return data[data["ts"] >= data["ts"].max() - pd.Timedelta(seconds=window_s)].reset_index(drop=True)


@gyre.step(outputs=2)
def train(data, half_life_s: float, rounds: int):
    """LightGBM on the labelled payments, recent ones weighing more (fraud changes); returns
    the model and a few rows of its input, which give it its signature."""
    import lightgbm as lgb

    x = data[INPUTS].astype(dict.fromkeys(CATEGORIES, "category"))  # LightGBM reads categoricals
    age_s = (data["ts"].max() - data["ts"]).dt.total_seconds()
    params = {
        "objective": "binary", "learning_rate": 0.05, "num_leaves": 15, "min_data_in_leaf": 20,
        "bagging_fraction": 0.8, "bagging_freq": 1, "feature_fraction": 0.8, "seed": 0,
        "deterministic": True, "num_threads": 1, "verbose": -1,
    }
    weight = 0.5 ** (age_s / half_life_s)
    label = data["is_fraud"].astype(bool)
    return lgb.train(params, lgb.Dataset(x, label, weight=weight), rounds), x.head(5)


@gyre.step
def evaluate(model, holdout):
    """The model's AUC on the held-out payments (the gates read it)."""
    import numpy as np

    y = holdout["is_fraud"].to_numpy(bool)
    score = model.predict(holdout[INPUTS].astype(dict.fromkeys(CATEGORIES, "category")))
    ranks = np.empty(len(score))
    ranks[np.argsort(score, kind="mergesort")] = np.arange(1, len(score) + 1)
    pos, neg = int(y.sum()), int((~y).sum())
    auc = (ranks[y].sum() - pos * (pos + 1) / 2) / (pos * neg) if pos and neg else float("nan")
    current_step().log_metrics({"holdout_rows": len(y), "holdout_frauds": pos})
    return {"auc": float(auc)}


@gyre.pipeline(
    register_as="fraud",
    label="is_fraud",
    gates=[
        DataCheck(min_rows=1000, min_label_fraction=0.005),
        MetricThreshold("auc", ">=", 0.8),
        BeatsChampion("auc", holdout="holdout"),
    ],
)
def train_fraud(
    window_s: float = $train_window,
    half_life_s: float = $half_life,
    holdout_s: float = $holdout_window,
    holdout_share: float = 0.3,
    reference_s: float = $reference_window,
    rounds: int = 150,
):
    """Train the fraud model on recent labelled payments; gates: enough data, AUC >= 0.8 on
    recent held-out payments, and better there than the champion."""
    data = labelled_payments(window_s)
    fit_on, holdout = split(data, holdout_s, holdout_share)
    model, example = train(fit_on, half_life_s, rounds)
    return {
        "model": model,
        "input_example": example,
        "train": fit_on,
        "holdout": holdout,
        "reference": recent(data, reference_s),
        "metrics": evaluate(model, holdout),
    }


# -- serving and monitoring ------------------------------------------------------------------

fraud = gyre.Endpoint(
    "fraud",
    model="fraud@champion",
    features=FEATURES,
    rollout=gyre.Rollout(
        "canary",
        steps=$canary_steps,
        interval=$canary_interval,
        on_challenger="auto",  # a new challenger rolls out by itself
        min_requests=$canary_min_requests,
        min_labels=$canary_min_labels,
        max_auc_drop=0.05,
        # A model retrained after drift is meant to score differently: report the shift, do
        # not refuse it for that.
        max_prediction_psi=None,
        # Judged loosely: both sides are the same kind of model, and on one laptop running the
        # whole platform (training included) one stalled batch is the p99 of a short step.
        max_latency_ratio=20,
    ),
)
fraud_monitor = gyre.Monitor(
    "fraud",
    window=$drift_window,
    numeric="psi",
    categorical="psi",
    min_count=200,  # fewer values than this: too noisy to call drift
    # Live traffic is always later in the day than the reference, and a window holds too
    # few payments per merchant to estimate their spread over hundreds of merchants.
    exclude=["hour", "merchant_id"],
    task="binary",
)
fraud_drift = gyre.AlertRule(
    "fraud_drift",
    endpoint="fraud",
    condition=DriftedFeatures(at_least=2, window=$drift_window),
    actions=["log", RunPipeline("train_fraud")],
    cooldown="1h",
    description="The traffic no longer looks like the training data: retrain on the new labels.",
)
fraud_auc = gyre.AlertRule(
    "fraud_auc",
    endpoint="fraud",
    condition=QualityBelow("auc", 0.75, window=$quality_window, min_labels=$quality_min_labels),
    actions=["log"],
    cooldown="1h",
    description="The live AUC, from the labels fed back, fell below 0.75.",
)
''')


def check_target(folder: Path) -> None:
    """Refuse a folder that exists and holds anything (nothing is touched).

    Raises:
        InvalidArgument: ``folder`` is a file.
        AlreadyExists: ``folder`` is a non-empty directory.
    """
    if folder.exists() and not folder.is_dir():
        raise InvalidArgument(f"{folder} is a file; give 'gyre demo --dir' a new or empty folder.")
    if folder.is_dir() and any(folder.iterdir()):
        raise AlreadyExists(
            f"{folder} is not empty; give 'gyre demo --dir' a new or empty folder (the demo writes a "
            "whole project there), or leave --dir out to use a fresh temporary one."
        )


def write_project(folder: Path, pace: Pace, name: str = "fraud-demo") -> None:
    """Write ``gyre.toml``, ``definitions.py`` and ``.gitignore`` into ``folder`` (created)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "gyre.toml").write_text(Template(GYRE_TOML).substitute(name=json.dumps(name)))
    (folder / "definitions.py").write_text(definitions_source(pace))
    (folder / ".gitignore").write_text("# Gyre's local stores\n.gyre/\n")


def definitions_source(pace: Pace) -> str:
    """The project's ``definitions.py`` for ``pace``."""
    return DEFINITIONS_PY.substitute(
        scale=f"{pace.scale:g}",
        hour=pace.story_seconds(timedelta(hours=1)),
        request=json.dumps(list(REQUEST_FIELDS)),
        train_window=pace.story_seconds(pace.train_window),
        half_life=pace.story_seconds(pace.half_life),
        holdout_window=pace.story_seconds(pace.holdout_window),
        reference_window=pace.story_seconds(pace.reference_window),
        canary_steps=repr([int(s) if float(s).is_integer() else s for s in pace.canary_steps]),
        canary_interval=f"{pace.canary_interval_s:g}",
        canary_min_requests=pace.canary_min_requests,
        canary_min_labels=pace.canary_min_labels,
        drift_window=f"{pace.drift_window_s:g}",
        quality_window=f"{pace.quality_window_s:g}",
        quality_min_labels=pace.quality_min_labels,
    )


def write_history(folder: Path, payments: pa.Table, labels: pa.Table) -> tuple[Path, Path]:
    """Write the history as Parquet files under ``data/``, as a user would bring it."""
    paths = folder / PAYMENTS_FILE, folder / LABELS_FILE
    paths[0].parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(payments, paths[0])
    pq.write_table(labels, paths[1])
    return paths
