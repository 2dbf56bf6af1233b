"""The demo payments generator: determinism, schema, labels, stream, drift, and the ML story."""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from gyre.demo import LABELS_SCHEMA, PAYMENTS_SCHEMA, DriftConfig, PaymentsConfig, PaymentsGenerator
from gyre.errors import InvalidArgument

START = datetime(2024, 1, 1, tzinfo=UTC)


def day(n: float) -> datetime:
    return START + timedelta(days=n)


def ipc_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    grid = np.sort(np.concatenate([a, b]))
    cdf_a = np.searchsorted(np.sort(a), grid, side="right") / len(a)
    cdf_b = np.searchsorted(np.sort(b), grid, side="right") / len(b)
    return float(np.abs(cdf_a - cdf_b).max())


@pytest.fixture(scope="module")
def gen() -> PaymentsGenerator:
    return PaymentsGenerator(PaymentsConfig(seed=7))


@pytest.fixture(scope="module")
def week(gen: PaymentsGenerator) -> pa.Table:
    return gen.history(START, day(7))


# -- determinism and schema -------------------------------------------------------------------


def test_same_seed_gives_identical_bytes_and_another_seed_differs() -> None:
    a = PaymentsGenerator(PaymentsConfig(seed=3)).history(day(1), day(4), drift_at=day(2.5))
    b = PaymentsGenerator(PaymentsConfig(seed=3)).history(day(1), day(4), drift_at=day(2.5))
    c = PaymentsGenerator(PaymentsConfig(seed=4)).history(day(1), day(4), drift_at=day(2.5))
    assert ipc_bytes(a) == ipc_bytes(b)
    assert not a.equals(c)


def test_schema_dtypes_and_domains(week: pa.Table) -> None:
    assert week.schema == PAYMENTS_SCHEMA
    assert week.num_rows > 40_000  # 300 an hour for a week
    assert all(re.fullmatch(r"m-\d+", m) for m in pc.unique(week["merchant_id"]).to_pylist())
    assert all(re.fullmatch(r"[A-Z]{2}", c) for c in pc.unique(week["country"]).to_pylist())
    assert set(pc.unique(week["device"]).to_pylist()) <= {"ios", "android", "web"}
    assert set(pc.unique(week["currency"]).to_pylist()) <= {"USD", "GBP", "EUR", "CAD", "AUD"}
    assert pc.min(week["amount"]).as_py() > 0
    assert pc.min(week["user_id"]).as_py() >= 1
    assert pc.max(week["user_id"]).as_py() <= 2_000
    ts = week["ts"]
    assert pc.min(ts).as_py() >= START and pc.max(ts).as_py() < day(7)


def test_payment_ids_unique_and_ranges_compose(gen: PaymentsGenerator, week: pa.Table) -> None:
    assert pc.count_distinct(week["payment_id"]).as_py() == week.num_rows
    assert all(re.fullmatch(r"p-\d{14}", p) for p in week["payment_id"].slice(0, 1000).to_pylist())
    # Any split of a range gives the same rows: bursts that cross a day boundary included.
    cuts = [START, day(1) - timedelta(minutes=30), day(3.3), day(7)]
    parts = [gen.history(a, b) for a, b in itertools.pairwise(cuts)]
    assert pa.concat_tables(parts).equals(week)


@pytest.mark.parametrize("fraud_rate", [0.01, 0.04])
def test_fraud_rate_near_config(fraud_rate: float) -> None:
    cfg = PaymentsConfig(seed=11, fraud_rate=fraud_rate, payments_per_hour=2_000)
    table = PaymentsGenerator(cfg).history(START, day(5))  # whole days: fraud keeps night hours
    assert table.num_rows >= 200_000
    rate = pc.mean(table["is_fraud"].cast(pa.float64())).as_py()
    assert abs(rate - fraud_rate) < 0.003


def test_old_fraud_comes_in_bursts_at_night(week: pa.Table) -> None:
    fraud = week.filter(week["is_fraud"])
    legit = week.filter(pc.invert(week["is_fraud"]))
    night = lambda t: pc.mean(pc.less(pc.hour(t["ts"]), 6).cast(pa.float64())).as_py()  # noqa: E731
    assert night(fraud) > 2 * night(legit)
    assert pc.approximate_median(fraud["amount"]).as_py() > 3 * pc.approximate_median(legit["amount"]).as_py()
    # Several fraudulent payments per victim user.
    assert fraud.num_rows > 2.5 * pc.count_distinct(fraud["user_id"]).as_py()


# -- labels -------------------------------------------------------------------------------------


def test_labels_arrive_late_and_accumulate(gen: PaymentsGenerator, week: pa.Table) -> None:
    everything = gen.labels(week, day(30))
    assert everything.schema == LABELS_SCHEMA
    assert everything.num_rows == week.num_rows  # the default delay is capped at two days
    joined = everything.join(week.select(["payment_id", "ts", "is_fraud"]), "payment_id", right_suffix="_p")
    assert joined.num_rows == week.num_rows
    assert pc.all(pc.equal(joined["is_fraud"], joined["is_fraud_p"])).as_py()
    delay = pc.subtract(joined["label_ts"], joined["ts"]).cast(pa.int64()).to_numpy() / 3.6e9  # hours
    assert delay.min() >= 0
    assert 0.5 < np.median(delay) < 2  # half within about an hour...
    assert np.quantile(delay, 0.9) < 8  # ...and most within hours
    assert delay.max() <= 48

    previous: set[str] = set()
    for as_of in [day(0.5), day(1), day(3), day(6.99), day(7), day(9)]:
        got = gen.labels(week, as_of)
        assert pc.max(got["label_ts"]).as_py() <= as_of
        ids = set(got["payment_id"].to_pylist())
        assert previous <= ids
        previous = ids
    assert gen.labels(week, START).num_rows == 0
    # Arrival order, and the same answer every time (the delay is a function of the payment).
    ts = got["label_ts"].cast(pa.int64()).to_numpy()
    assert (np.diff(ts) >= 0).all()
    assert gen.labels(week, day(3)).equals(gen.labels(week.slice(0, week.num_rows), day(3)))


def test_labels_need_the_label_column(gen: PaymentsGenerator, week: pa.Table) -> None:
    with pytest.raises(InvalidArgument, match="is_fraud"):
        gen.labels(week.drop_columns(["is_fraud"]), day(1))
    with pytest.raises(InvalidArgument, match="timezone-aware"):
        gen.labels(week, datetime(2024, 1, 2))


# -- stream -------------------------------------------------------------------------------------


def test_stream_is_in_time_order_and_matches_history(gen: PaymentsGenerator) -> None:
    start, end = day(2) + timedelta(minutes=7), day(2) + timedelta(hours=30)
    batches = list(gen.stream(start, end=end, every=timedelta(minutes=10)))
    assert len(batches) == 180  # the last one is cut short at end
    assert all(b.schema == PAYMENTS_SCHEMA for b in batches)
    streamed = pa.Table.from_batches(batches)
    ts = streamed["ts"].cast(pa.int64()).to_numpy()
    assert (np.diff(ts) >= 0).all()
    for i, b in enumerate(batches[:20]):
        if b.num_rows:
            lo = start + i * timedelta(minutes=10)
            assert lo <= pc.min(b["ts"]).as_py() and pc.max(b["ts"]).as_py() < lo + timedelta(minutes=10)
    assert streamed.equals(gen.history(start, end))
    # Without an end it goes on; the first batches are the same.
    endless = gen.stream(start, every=timedelta(minutes=10))
    assert [next(endless).equals(b) for b in batches[:3]] == [True] * 3
    # With drift too, and labels work on a batch as well as on a table.
    drift_at = start + timedelta(hours=11, seconds=1)
    drifted = pa.Table.from_batches(gen.stream(start, end=end, drift_at=drift_at, every=timedelta(hours=1)))
    assert drifted.equals(gen.history(start, end, drift_at=drift_at))
    assert gen.labels(batches[40], end).num_rows == batches[40].num_rows > 0


def test_rejects_bad_arguments(gen: PaymentsGenerator) -> None:
    with pytest.raises(InvalidArgument, match="config.start"):
        gen.history(START - timedelta(hours=1), day(1))
    with pytest.raises(InvalidArgument, match="timezone-aware"):
        gen.history(datetime(2024, 1, 1), day(1))
    with pytest.raises(InvalidArgument, match="before start"):
        gen.history(day(2), day(1))
    with pytest.raises(InvalidArgument, match="fraud_rate"):
        PaymentsConfig(fraud_rate=0.0)
    with pytest.raises(InvalidArgument, match="new_countries"):
        PaymentsConfig(drift=DriftConfig(new_countries=("US",)))
    with pytest.raises(InvalidArgument, match="timezone-aware"):
        PaymentsConfig(start=datetime(2024, 1, 1))


# -- drift --------------------------------------------------------------------------------------


def test_drift_changes_domains_and_amounts_after_drift_at_only(gen: PaymentsGenerator) -> None:
    drift_at = day(4) + timedelta(hours=5, minutes=17)  # mid-chunk, on purpose
    plain = gen.history(START, day(8))
    drifted = gen.history(START, day(8), drift_at=drift_at)
    before = pc.less(drifted["ts"], pa.scalar(drift_at, pa.timestamp("us", tz="UTC")))
    pre, post = drifted.filter(before), drifted.filter(pc.invert(before))
    assert pre.equals(plain.filter(pc.less(plain["ts"], pa.scalar(drift_at, pa.timestamp("us", tz="UTC")))))

    old_countries = set(pc.unique(plain["country"]).to_pylist())
    new_countries = set(pc.unique(post["country"]).to_pylist()) - old_countries
    assert new_countries == {"BR", "MX", "NG", "PH"}
    old_merchants = set(pc.unique(plain["merchant_id"]).to_pylist())
    new_merchants = set(pc.unique(post["merchant_id"]).to_pylist()) - old_merchants
    assert len(new_merchants) >= 30
    assert all(int(m[2:]) >= 300 for m in new_merchants)
    assert pc.max(post["user_id"]).as_py() > 2_000  # new-market users
    share_new = pc.mean(pc.is_in(post["country"], pa.array(sorted(new_countries))).cast(pa.float64())).as_py()
    assert 0.2 < share_new < 0.3

    # Amounts: two pre-drift windows look alike, pre vs post does not.
    amounts = lambda t: t["amount"].to_numpy()  # noqa: E731
    half = pre.num_rows // 2
    same = ks_statistic(amounts(pre.slice(0, half)), amounts(pre.slice(half)))
    shifted = ks_statistic(amounts(pre), amounts(post))
    assert shifted > 0.08
    assert shifted > 3 * same

    # The fraud rate stays about the same; most of it is the new pattern.
    rate = pc.mean(post["is_fraud"].cast(pa.float64())).as_py()
    assert 0.006 < rate < 0.014
    post_fraud = post.filter(post["is_fraud"])
    ring = pc.is_in(post_fraud["merchant_id"], pa.array([f"m-{i}" for i in range(300, 308)]))
    assert 0.5 < pc.mean(ring.cast(pa.float64())).as_py() < 0.9


# -- the ML story -------------------------------------------------------------------------------

FEATURES = ["amount", "hour", "count_1h", "count_1d", "amount_sum_1h", "amount_sum_1d"]
CATEGORIES = ["merchant_id", "country", "device"]


@pytest.mark.slow
def test_story_old_model_fails_after_drift_and_retraining_recovers() -> None:
    """What ``gyre demo`` shows: train, drift, AUC falls, retrain on new labels, AUC recovers."""
    pd = pytest.importorskip("pandas")
    lgb = pytest.importorskip("lightgbm")
    metrics = pytest.importorskip("sklearn.metrics")

    drift_at = day(14)
    df = PaymentsGenerator(PaymentsConfig(seed=1)).history(START, day(28), drift_at=drift_at).to_pandas()

    # Per-user window features over strictly earlier payments, as the feature store serves them.
    by_user = df.assign(row=np.arange(len(df))).sort_values(["user_id", "ts"], kind="stable")
    rolled = by_user.set_index("ts").groupby("user_id")["amount"]
    feats = pd.DataFrame(index=by_user["row"].to_numpy())
    for window, label in [("1h", "1h"), ("1D", "1d")]:
        r = rolled.rolling(window, closed="left")
        feats[f"count_{label}"] = r.count().to_numpy()
        feats[f"amount_sum_{label}"] = r.sum().to_numpy()
    df = df.join(feats.sort_index().fillna(0.0))
    df["hour"] = df["ts"].dt.hour

    def frame(part: pd.DataFrame, domains: dict[str, list[str]]) -> pd.DataFrame:
        x = part[FEATURES].copy()
        for col in CATEGORIES:  # categories seen in training; anything new is missing
            x[col] = pd.Categorical(part[col].where(part[col].isin(domains[col])), categories=domains[col])
        return x

    def fit(part: pd.DataFrame) -> tuple[object, dict[str, list[str]]]:
        domains = {col: sorted(part[col].unique()) for col in CATEGORIES}
        model = lgb.LGBMClassifier(
            n_estimators=150,
            learning_rate=0.05,
            num_leaves=15,
            min_child_samples=40,
            subsample=0.8,
            subsample_freq=1,
            colsample_bytree=0.8,
            num_threads=1,
            deterministic=True,
            random_state=0,
            verbose=-1,
        )
        model.fit(frame(part, domains), part["is_fraud"])
        return model, domains

    def auc(fitted: tuple[object, dict[str, list[str]]], part: pd.DataFrame) -> float:
        model, domains = fitted
        return metrics.roc_auc_score(part["is_fraud"], model.predict_proba(frame(part, domains))[:, 1])

    ts = df["ts"]
    first = fit(df[ts < day(10)])
    pre_auc = auc(first, df[(ts >= day(10)) & (ts < drift_at)])
    test_post = df[ts >= day(21)]
    post_auc = auc(first, test_post)
    retrained = fit(df[(ts >= day(4)) & (ts < day(21))])  # includes a week of post-drift labels
    recovered_auc = auc(retrained, test_post)
    print(
        f"AUC first model pre-drift {pre_auc:.3f}, post-drift {post_auc:.3f}; retrained {recovered_auc:.3f}"
    )

    assert pre_auc >= 0.85
    assert post_auc <= pre_auc - 0.1
    assert recovered_auc >= 0.8
    assert recovered_auc > post_auc + 0.1
