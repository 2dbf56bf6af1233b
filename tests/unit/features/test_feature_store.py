"""The feature store end to end on a project: apply, ingest, training set, materialize, serve.

The same definitions give the same values offline (point in time) and online, and the
controller's reaction keeps the online store fresh when new data lands.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from gyre.client.client import Client
from gyre.controller import Controller
from gyre.controller.builtin import default_reactions
from gyre.demo import PaymentsConfig, PaymentsGenerator
from gyre.errors import Conflict, InvalidArgument, NotFound

T0 = datetime(2024, 1, 1, tzinfo=UTC)

DEFINITIONS = """
import gyre

payments = gyre.Dataset("payments", keys=["payment_id"], event_time="ts")
user = gyre.Entity("user", join_keys=["user_id"])

user_activity = gyre.FeatureView(
    "user_activity", entity=user, source=payments, ttl="1d",
    features=[
        gyre.Field("country"),
        gyre.Field("last_amount", column="amount"),
        gyre.Aggregate("amount", "sum", window="1h"),
        gyre.Aggregate("amount", "mean", window="1d"),
        gyre.Aggregate("payment_id", "count", window="1h", name="payments_1h"),
        gyre.Aggregate("merchant_id", "count_distinct", window="1d", name="merchants_1d"),
    ],
)


@gyre.on_demand(view="risk", inputs=["amount", "user_activity:amount_mean_1d"], dtype="double")
def amount_vs_mean(amount, mean_1d):
    return amount / mean_1d if mean_1d else None
"""

FEATURES = [
    "user_activity:country",
    "user_activity:last_amount",
    "user_activity:amount_sum_1h",
    "user_activity:amount_mean_1d",
    "user_activity:payments_1h",
    "user_activity:merchants_1d",
]


@pytest.fixture
def fs_client(define: Callable[[str], Client]) -> Client:
    return define(DEFINITIONS)


def _same(offline: list[dict], online: list[dict], names: list[str]) -> None:
    for off, on in zip(offline, online, strict=True):
        for name in names:
            if isinstance(off[name], float):
                assert on[name] == pytest.approx(off[name]), (off, name)
            else:
                assert on[name] == off[name], (off, name)


def test_offline_and_online_agree_and_lineage_is_recorded(
    fs_client: Client, project: Path, ingest_table: Callable[..., int]
) -> None:
    client = fs_client
    gen = PaymentsGenerator(PaymentsConfig(seed=3, n_users=30, payments_per_hour=60))
    at = T0 + timedelta(hours=11, minutes=7)
    # The online store answers "now": here, the end of the data.
    ingest_table(gen.history(T0, at), "day1")
    users = list(range(30))
    entity_df = pa.table({"user_id": users, "event_timestamp": [at] * len(users)})
    with client.start_run("features") as run:
        train = client.get_training_set(entity_df, FEATURES)
    assert train.dataset_versions == {"payments": 0}
    assert client.runs.get(run.id).tags["gyre.dataset.payments"] == "0"
    assert len(train) == 30 and train.table.column_names[:2] == ["user_id", "event_timestamp"]

    result = client.features.materialize(now=at)
    assert result["user_activity"].version == 0
    online = client.get_online_features([{"user_id": u} for u in users], FEATURES, at=at)
    _same(train.table.to_pylist(), online, [f.split(":")[1] for f in FEATURES])
    assert any(row["payments_1h"] > 0 for row in online)


def test_on_demand_features_run_the_same_code_offline_and_online(
    fs_client: Client, project: Path, ingest_table: Callable[..., int]
) -> None:
    client = fs_client
    gen = PaymentsGenerator(PaymentsConfig(seed=4, n_users=10, payments_per_hour=40))
    at = T0 + timedelta(hours=5)
    history = gen.history(T0, at)
    ingest_table(history, "day1")
    client.features.materialize(now=at)
    refs = ["risk:amount_vs_mean", "user_activity:amount_mean_1d"]
    users = sorted(set(history["user_id"].to_pylist()))[:3]
    amounts = [10.0, 20.0, 30.0]
    entity_df = pa.table({"user_id": users, "event_timestamp": [at] * 3, "amount": amounts})
    train = client.get_training_set(entity_df, refs)
    online = client.get_online_features(
        [{"user_id": u, "amount": a} for u, a in zip(users, amounts, strict=True)], refs, at=at
    )
    _same(train.table.to_pylist(), online, ["amount_vs_mean", "amount_mean_1d"])
    for row in train.table.to_pylist():
        assert row["amount_vs_mean"] == pytest.approx(row["amount"] / row["amount_mean_1d"])

    # Changing the function without applying it is refused, so serving cannot drift from training.
    (project / "definitions.py").write_text(DEFINITIONS.replace("amount / mean_1d", "amount * 2 / mean_1d"))
    sys.modules.pop("gyre_project.definitions", None)
    with pytest.raises(Conflict, match="run 'gyre apply'"):
        client.get_training_set(entity_df, ["risk:amount_vs_mean"])


def test_unknown_features_and_bad_entity_frames(fs_client: Client) -> None:
    client = fs_client
    with pytest.raises(NotFound, match="Did you mean 'user_activity'"):
        client.get_online_features([{"user_id": 1}], ["user_activty:country"])
    with pytest.raises(NotFound, match="has no feature 'county'"):
        client.get_online_features([{"user_id": 1}], ["user_activity:county"])
    with pytest.raises(InvalidArgument, match="view:feature"):
        client.get_online_features([{"user_id": 1}], ["country"])
    with pytest.raises(InvalidArgument, match="pyarrow Table or a pandas DataFrame"):
        client.get_training_set({"user_id": [1]}, ["user_activity:country"])


def test_the_controller_materializes_new_versions(
    fs_client: Client, project: Path, ingest_table: Callable[..., int]
) -> None:
    client = fs_client
    gen = PaymentsGenerator(PaymentsConfig(seed=5, n_users=5, payments_per_hour=30))
    import pyarrow.compute as pc

    noon = T0 + timedelta(hours=12)  # the generator follows the day: few payments at night
    history = gen.history(noon, noon + timedelta(hours=3))
    split = pc.less(history["ts"], pa.scalar(noon + timedelta(hours=2), pa.timestamp("us", "UTC")))
    ingest_table(history.filter(split), "a")
    meta = client.backend.meta  # type: ignore[attr-defined]
    controller = Controller(meta, default_reactions(client.features), poll_interval=0.05)
    assert controller.run_once() >= 1
    assert client.features.online.get_watermark("user_activity") == 0
    stop = threading.Event()
    thread = threading.Thread(target=controller.run_forever, args=(stop,))
    thread.start()
    try:
        version = ingest_table(history.filter(pc.invert(split)), "b")
        deadline = datetime.now(UTC) + timedelta(seconds=10)
        while client.features.online.get_watermark("user_activity") != version:
            assert datetime.now(UTC) < deadline, "the controller did not materialize the new version"
            stop.wait(0.05)
    finally:
        stop.set()
        thread.join()
