"""The demo's world on the wall clock: the generator's story, compressed, with real timestamps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from gyre.demo import PaymentsConfig, PaymentsGenerator
from gyre.demo.world import LABELS, PAYMENTS, World
from gyre.errors import InvalidArgument

STORY = datetime(2024, 1, 3, 11, tzinfo=UTC)
REAL = datetime(2026, 5, 1, 9, 30, tzinfo=UTC)
CONFIG = PaymentsConfig(
    seed=3, payments_per_hour=3600, fraud_rate=0.1, start=datetime(2024, 1, 1, tzinfo=UTC)
)


@pytest.fixture(scope="module")
def world() -> World:
    return World.create(CONFIG, scale=120, story_now=STORY, real_now=REAL)


def test_clocks_map_both_ways(world: World) -> None:
    assert world.story(REAL) == STORY
    assert world.story(REAL + timedelta(seconds=30)) == STORY + timedelta(hours=1)
    assert world.real(STORY - timedelta(days=1)) == REAL - timedelta(seconds=720)
    assert world.real_seconds(timedelta(hours=1)) == 30
    with pytest.raises(InvalidArgument, match="scale"):
        World.create(CONFIG, scale=0, story_now=STORY, real_now=REAL)


def test_payments_are_the_story_on_real_time(world: World) -> None:
    start, end = REAL, REAL + timedelta(seconds=60)  # two story hours
    table = world.payments(start, end)
    assert table.schema.remove(table.schema.get_field_index("is_fraud")) == PAYMENTS
    story = PaymentsGenerator(CONFIG).history(STORY, STORY + timedelta(hours=2))
    assert table["payment_id"].to_pylist() == story["payment_id"].to_pylist()
    assert table["is_fraud"].to_pylist() == story["is_fraud"].to_pylist()
    ts = table["ts"].cast(pa.int64()).to_numpy()
    assert (np.diff(ts) >= 0).all()
    assert pc.min(table["ts"]).as_py() >= start and pc.max(table["ts"]).as_py() < end
    assert set(table["hour"].to_pylist()) == {11, 12}  # the story's hour of day
    assert world.payments(end, start).num_rows == 0


def test_drift_switches_on_at_a_real_instant(world: World) -> None:
    drift_at = REAL + timedelta(seconds=30)
    table = world.payments(REAL, REAL + timedelta(seconds=60), drift_at=drift_at)
    before = table.filter(pc.less(table["ts"], pa.scalar(drift_at)))
    after = table.filter(pc.greater_equal(table["ts"], pa.scalar(drift_at)))
    new_market = pa.array(["BR", "MX", "NG", "PH"])
    assert not pc.any(pc.is_in(before["country"], new_market)).as_py()
    share = pc.mean(pc.is_in(after["country"], new_market).cast(pa.float64())).as_py()
    assert 0.15 < share < 0.35


def test_labels_arrive_late_in_real_time(world: World) -> None:
    table = world.payments(REAL, REAL + timedelta(seconds=20))
    at = world.label_times(table)
    delay = pc.subtract(at, table["ts"]).cast(pa.int64()).to_numpy() / 1e6
    # The generator's default delay (median one story hour) is 30 real seconds here.
    assert delay.min() >= 0 and 15 < np.median(delay) < 60
    as_of = REAL + timedelta(seconds=40)
    labels = world.labels(table, as_of)
    assert labels.schema == LABELS
    assert pc.max(labels["label_ts"]).as_py() <= as_of
    assert labels.num_rows == int(pc.sum(pc.less_equal(at, pa.scalar(as_of))).as_py())
    assert (np.diff(labels["label_ts"].cast(pa.int64()).to_numpy()) >= 0).all()
    truth = dict(zip(table["payment_id"].to_pylist(), table["is_fraud"].to_pylist(), strict=True))
    assert all(
        truth[p] == f
        for p, f in zip(labels["payment_id"].to_pylist(), labels["is_fraud"].to_pylist(), strict=True)
    )
