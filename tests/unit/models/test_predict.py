"""LoadedModel.predict: every input kind, column order, and clear errors on bad input."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression

from gyre.errors import InvalidArgument
from gyre.models import LoadedModel, load_model_package, save_model_package
from gyre.models.flavors.lightgbm import SingleRow

COLUMNS = ["amount", "age", "score", "hour"]


@pytest.fixture(scope="module")
def models(data, tmp_path_factory) -> dict[str, LoadedModel]:
    """Binary classifiers whose signature reads COLUMNS, one per way of feeding the model."""
    root = tmp_path_factory.mktemp("packages")
    example = pd.DataFrame(data.x[:5], columns=COLUMNS)
    fitted = {
        "array-fitted sklearn": LogisticRegression().fit(data.x, data.y),
        "frame-fitted sklearn": LogisticRegression().fit(pd.DataFrame(data.x, columns=COLUMNS), data.y),
        "lightgbm": lgb.LGBMClassifier(n_estimators=10, num_threads=1, verbose=-1).fit(data.x, data.y),
    }
    loaded = {}
    for name, model in fitted.items():
        path = root / name.replace(" ", "-")
        save_model_package(model, path, input_example=example)
        loaded[name] = load_model_package(path)
    return loaded


@pytest.fixture(params=["array-fitted sklearn", "frame-fitted sklearn", "lightgbm"])
def model(request, models) -> LoadedModel:
    return models[request.param]


def test_every_input_kind_gives_the_same_predictions(model, data):
    x = data.x[:6]
    expected = model.predict_numpy(x)
    frame = pd.DataFrame(x, columns=COLUMNS)

    np.testing.assert_array_equal(model.predict(x), expected)
    np.testing.assert_array_equal(model.predict(frame), expected)
    np.testing.assert_array_equal(model.predict({c: frame[c].tolist() for c in COLUMNS}), expected)
    np.testing.assert_array_equal(model.predict({c: frame[c].to_numpy() for c in COLUMNS}), expected)
    np.testing.assert_array_equal(model.predict(frame.to_dict("records")), expected)
    assert expected.shape == (6,)


def test_columns_are_put_in_signature_order_and_extras_ignored(model, data):
    x = data.x[:4]
    shuffled = pd.DataFrame(x, columns=COLUMNS)[["hour", "score", "amount", "age"]].assign(user_id=7)

    np.testing.assert_array_equal(model.predict(shuffled), model.predict_numpy(x))
    rows = [{"user_id": 7, **dict(zip(reversed(COLUMNS), reversed(r), strict=True))} for r in x.tolist()]
    np.testing.assert_array_equal(model.predict(rows), model.predict_numpy(x))


def test_a_missing_column_is_named_with_the_expected_ones(model):
    row = {"amount": 1.0, "age": 2.0, "hour": 3.0}
    expected = r"missing column 'score'; the model reads \['amount', 'age', 'score', 'hour'\]"
    with pytest.raises(InvalidArgument, match=expected):
        model.predict([row])
    with pytest.raises(InvalidArgument, match=expected):
        model.predict(pd.DataFrame([row]))
    with pytest.raises(InvalidArgument, match=r"missing columns 'amount', 'hour'"):
        model.predict({"age": [1.0], "score": [2.0]})


def test_a_column_missing_from_a_later_row_is_caught(models):
    rows = [dict.fromkeys(COLUMNS, 1.0), {"amount": 1.0, "age": 1.0, "score": 1.0}]
    with pytest.raises(InvalidArgument, match="missing column 'hour'"):
        models["lightgbm"].predict(rows)


def test_text_where_numbers_are_needed_names_the_column(models):
    row = {**dict.fromkeys(COLUMNS, 1.0), "score": "high"}
    for kind in ("array-fitted sklearn", "lightgbm"):
        with pytest.raises(InvalidArgument, match="Column 'score' holds 'high'"):
            models[kind].predict([row])
        with pytest.raises(InvalidArgument, match="Column 'score' holds 'high'"):
            models[kind].predict({k: [v] for k, v in row.items()})
        with pytest.raises(InvalidArgument, match="Column 'score' holds 'high'"):
            models[kind].predict(pd.DataFrame([row]))


def test_none_is_a_missing_value_for_boosters(models):
    row = {**dict.fromkeys(COLUMNS, 0.5), "age": None}
    out = models["lightgbm"].predict([row])
    expected = models["lightgbm"].predict_numpy(np.array([[0.5, np.nan, 0.5, 0.5]]))
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.zeros(4), "must be 2-D.*reshape"),
        (np.zeros((1, 3)), "reads 4 columns"),
        ("amount=1", "Cannot predict on str"),
        (42, "Cannot predict on int"),
        ([1.0, 2.0], "Row 0 is a float"),
        ({"amount": 1.0}, "pass a single row as \\[row\\]"),
        ({"amount": [1.0], "age": [1.0, 2.0]}, "differ in length"),
        ([], "No rows"),
    ],
)
def test_bad_inputs_are_refused(models, bad, message):
    with pytest.raises(InvalidArgument, match=message):
        models["lightgbm"].predict(bad)


def test_without_a_signature_the_fitted_names_order_the_columns(data, tmp_path):
    frame = pd.DataFrame(data.x, columns=COLUMNS)
    model = LogisticRegression().fit(frame, data.y)
    save_model_package(model, tmp_path / "m")
    loaded = load_model_package(tmp_path / "m")

    assert loaded.signature is None
    assert loaded.input_names == COLUMNS
    np.testing.assert_array_equal(loaded.predict(frame[COLUMNS[::-1]]), model.predict_proba(frame)[:, 1])


def test_without_any_names_columns_are_taken_as_given(data, tmp_path):
    model = lgb.LGBMRegressor(n_estimators=5, num_threads=1, verbose=-1).fit(data.x, data.x[:, 0])
    save_model_package(model, tmp_path / "m")
    loaded = load_model_package(tmp_path / "m")

    assert loaded.input_names is None
    given = {"p": data.x[:3, 0], "q": data.x[:3, 1], "r": data.x[:3, 2], "s": data.x[:3, 3]}
    np.testing.assert_array_equal(loaded.predict(given), model.predict(data.x[:3]))


@pytest.fixture(scope="module")
def boosters(data) -> dict[str, lgb.Booster]:
    """Boosters of each output shape, one whose best iteration is not its last."""
    x, y = data.x, data.y
    params = {"num_threads": 1, "verbose": -1}
    early = lgb.train({**params, "objective": "binary"}, lgb.Dataset(x, y), num_boost_round=20)
    early.best_iteration = 7  # as early stopping leaves it: predictions use 7 of 20 trees
    return {
        "binary": lgb.train({**params, "objective": "binary"}, lgb.Dataset(x, y), num_boost_round=20),
        "multiclass": lgb.train(
            {**params, "objective": "multiclass", "num_class": 3}, lgb.Dataset(x, data.y3), num_boost_round=10
        ),
        "regression": lgb.train(
            {**params, "objective": "regression"}, lgb.Dataset(x, x[:, 2]), num_boost_round=10
        ),
        "stopped early": early,
    }


@settings(max_examples=60, deadline=None)
@given(
    kind=st.sampled_from(["binary", "multiclass", "regression", "stopped early"]),
    row=st.lists(st.floats(allow_nan=True, allow_infinity=False, width=64), min_size=4, max_size=4),
)
def test_one_row_through_lightgbms_single_row_entry_predicts_what_booster_predict_does(
    boosters: dict[str, lgb.Booster], kind: str, row: list[float]
) -> None:
    booster = boosters[kind]
    x = np.array([row], dtype=np.float64)
    got = SingleRow(booster)(x)
    want = booster.predict(x)
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)
