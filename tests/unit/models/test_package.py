"""Model packages: round trips per flavor, metadata, and the errors of broken packages."""

from __future__ import annotations

import json
from datetime import datetime
from importlib import metadata
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest
import xgboost as xgb
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from gyre.errors import AlreadyExists, CorruptArtifact, GyreError, InvalidArgument, NotFound
from gyre.models import LoadedModel, ModelMeta, Signature, load_model_package, save_model_package
from gyre.models.package import MODEL_META_FILE, read_model_meta

LGBM = {"n_estimators": 15, "num_leaves": 7, "num_threads": 1, "deterministic": True, "verbose": -1}
XGB = {"n_estimators": 15, "max_depth": 3, "n_jobs": 1}


def round_trip(model: object, path: Path, **kwargs: object) -> LoadedModel:
    save_model_package(model, path, **kwargs)
    return load_model_package(path)


# -- round trips -------------------------------------------------------------------------------


def test_sklearn_logistic_regression(data, tmp_path):
    model = LogisticRegression().fit(data.x, data.y)
    loaded = round_trip(model, tmp_path / "m", input_example=data.x[:5])

    assert loaded.flavor == "sklearn"
    assert loaded.meta.predict_method == "predict_proba"
    assert loaded.input_names == ["f0", "f1", "f2", "f3"]
    np.testing.assert_array_equal(loaded.predict(data.x), model.predict_proba(data.x)[:, 1])
    np.testing.assert_array_equal(loaded.predict_numpy(data.x), model.predict_proba(data.x)[:, 1])
    assert type(loaded.raw) is LogisticRegression


def test_sklearn_pipeline_on_a_dataframe_with_a_text_column(data, tmp_path):
    pipe = Pipeline(
        [
            (
                "prep",
                ColumnTransformer(
                    [("num", StandardScaler(), ["a", "b", "c"]), ("cat", OneHotEncoder(), ["s"])]
                ),
            ),
            ("clf", LogisticRegression()),
        ]
    ).fit(data.frame, data.y_frame)
    loaded = round_trip(pipe, tmp_path / "m", input_example=data.frame.head())

    assert [(c.name, c.dtype) for c in loaded.signature.inputs] == [
        ("a", "float64"),
        ("b", "int64"),
        ("c", "float64"),
        ("s", "string"),
    ]
    assert [c.name for c in loaded.signature.outputs] == ["prediction"]
    expected = pipe.predict_proba(data.frame)[:, 1]
    np.testing.assert_array_equal(loaded.predict(data.frame), expected)
    rows = data.frame.head(3).to_dict("records")
    np.testing.assert_array_equal(loaded.predict(rows), expected[:3])


def test_sklearn_multiclass_gives_a_probability_matrix_and_labels_on_request(data, tmp_path):
    model = LogisticRegression().fit(data.x, data.y3)
    proba = round_trip(model, tmp_path / "p")
    labels = round_trip(model, tmp_path / "l", predict_method="predict")

    np.testing.assert_array_equal(proba.predict(data.x), model.predict_proba(data.x))
    np.testing.assert_array_equal(labels.predict(data.x), model.predict(data.x))


def test_lgbm_classifier_loads_as_a_native_booster(data, tmp_path):
    model = lgb.LGBMClassifier(**LGBM).fit(data.x, data.y)
    loaded = round_trip(model, tmp_path / "m", input_example=data.x[:3])

    assert isinstance(loaded.raw, lgb.Booster)
    assert loaded.meta.flavor_options == {"objective": "binary", "num_class": 1, "classes": [0, 1]}
    np.testing.assert_array_equal(loaded.predict(data.x), model.predict_proba(data.x)[:, 1])
    np.testing.assert_array_equal(loaded.predict_numpy(data.x[:1]), model.predict_proba(data.x[:1])[:, 1])


def test_lgbm_classifier_with_text_labels_predicts_labels_on_request(data, tmp_path):
    names = np.array(["ham", "spam", "eggs"])[data.y3]
    model = lgb.LGBMClassifier(**LGBM).fit(data.x, names)
    loaded = round_trip(model, tmp_path / "m", predict_method="predict")

    np.testing.assert_array_equal(loaded.predict(data.x), model.predict(data.x))


def test_lgbm_native_booster_multiclass(data, tmp_path):
    params = {
        "objective": "multiclass",
        "num_class": 3,
        "num_threads": 1,
        "deterministic": True,
        "verbose": -1,
    }
    booster = lgb.train(params, lgb.Dataset(data.x, data.y3), num_boost_round=10)
    loaded = round_trip(booster, tmp_path / "m")

    assert loaded.meta.flavor_options["objective"] == "multiclass"
    assert loaded.meta.predict_method == "predict_proba"
    out = loaded.predict(data.x)
    assert out.shape == (200, 3)
    np.testing.assert_array_equal(out, booster.predict(data.x))


def test_lgbm_regressor_on_pandas_categoricals(data, tmp_path):
    frame = data.frame.astype({"s": "category"})
    model = lgb.LGBMRegressor(**LGBM, min_child_samples=5).fit(frame, frame["a"] * 2 + frame["b"])
    loaded = round_trip(model, tmp_path / "m", input_example=frame.head())

    assert loaded.meta.predict_method == "predict"
    assert loaded.signature.inputs[3].dtype == "category"
    np.testing.assert_array_equal(loaded.predict(frame), model.predict(frame))
    # plain rows: text becomes categories mapped to the training codes
    np.testing.assert_array_equal(
        loaded.predict(frame.head(4).to_dict("records")), model.predict(frame.head(4))
    )


def test_xgb_classifier(data, tmp_path):
    model = xgb.XGBClassifier(**XGB).fit(data.x, data.y)
    loaded = round_trip(model, tmp_path / "m", input_example=data.x[:3])

    assert isinstance(loaded.raw, xgb.Booster)
    assert loaded.meta.flavor_options["objective"] == "binary:logistic"
    np.testing.assert_array_equal(loaded.predict(data.x), model.predict_proba(data.x)[:, 1])
    np.testing.assert_array_equal(loaded.predict_numpy(data.x[:1]), model.predict_proba(data.x[:1])[:, 1])


def test_xgb_multiclass_and_labels(data, tmp_path):
    model = xgb.XGBClassifier(**XGB).fit(data.x, data.y3)
    proba = round_trip(model, tmp_path / "p")
    labels = round_trip(model, tmp_path / "l", predict_method="predict")

    np.testing.assert_array_equal(proba.predict(data.x), model.predict_proba(data.x))
    np.testing.assert_array_equal(labels.predict(data.x), model.predict(data.x))


def test_xgb_regressor_keeps_its_early_stopping_iteration(data, tmp_path):
    model = xgb.XGBRegressor(n_estimators=200, n_jobs=1, early_stopping_rounds=3)
    model.fit(data.x[:150], data.y[:150], eval_set=[(data.x[150:], data.y[150:])], verbose=False)
    assert model.best_iteration < 199
    loaded = round_trip(model, tmp_path / "m")

    assert loaded.meta.flavor_options["best_iteration"] == model.best_iteration
    np.testing.assert_array_equal(loaded.predict(data.x), model.predict(data.x))


def test_xgb_batches_above_the_single_thread_limit_match(data, tmp_path):
    model = xgb.XGBClassifier(**XGB).fit(data.x, data.y)
    loaded = round_trip(model, tmp_path / "m")
    big = np.repeat(data.x, 3, axis=0)

    np.testing.assert_array_equal(loaded.predict(big), model.predict_proba(big)[:, 1])


def test_pyfunc_brings_the_users_code(user_code, tmp_path):
    model = user_code.module.WeightedSum([1.0, -2.0, 0.5])
    x = np.arange(12, dtype=float).reshape(4, 3)
    save_model_package(model, tmp_path / "m", code_paths=[user_code.package_dir], input_example=x)
    user_code.forget()

    loaded = load_model_package(tmp_path / "m")

    assert loaded.flavor == "pyfunc"
    assert (tmp_path / "m" / "code" / user_code.package_dir.name / "__init__.py").is_file()
    assert type(loaded.raw).__module__ == user_code.module.__name__
    assert Path(type(loaded.raw).__init__.__code__.co_filename).is_relative_to(tmp_path / "m" / "code")
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    np.testing.assert_array_equal(loaded.predict({"f0": [1.0], "f1": [1.0], "f2": [2.0]}), [0.0])


def test_pyfunc_without_its_code_names_the_module_and_code_paths(user_code, tmp_path):
    save_model_package(user_code.module.WeightedSum([1.0]), tmp_path / "m")
    user_code.forget()

    with pytest.raises(GyreError, match=rf"{user_code.module.__name__}.*code_paths"):
        load_model_package(tmp_path / "m")


# -- metadata ------------------------------------------------------------------------------------


def test_metadata_round_trips_through_gyre_model_json(data, tmp_path):
    model = LogisticRegression().fit(data.x, data.y)
    meta = save_model_package(
        model,
        tmp_path / "m",
        feature_refs=["user_activity:amount_sum_1h"],
        metrics={"auc": 0.91, "loss": float("nan")},
        run_id="01J0RUN",
        dataset_versions={"payments": 3},
    )
    on_disk = json.loads((tmp_path / "m" / MODEL_META_FILE).read_text())
    read = read_model_meta(tmp_path / "m")

    assert on_disk["format_version"] == 1
    assert on_disk["model_file"] == "model.joblib"
    assert on_disk["metrics"] == {"auc": 0.91, "loss": "NaN"}  # valid JSON, no bare NaN
    assert read.to_dict() == meta.to_dict()
    assert ModelMeta.from_dict(meta.to_dict()).to_dict() == meta.to_dict()
    assert read.feature_refs == ["user_activity:amount_sum_1h"]
    assert np.isnan(read.metrics["loss"])
    assert (read.run_id, read.dataset_versions) == ("01J0RUN", {"payments": 3})
    assert datetime.fromisoformat(read.created_at).utcoffset().total_seconds() == 0
    assert read.signature is None


def test_default_requirements_pin_the_installed_libraries(data, tmp_path):
    sk = save_model_package(LogisticRegression().fit(data.x, data.y), tmp_path / "sk")
    lg = save_model_package(lgb.LGBMClassifier(**LGBM).fit(data.x, data.y), tmp_path / "lg")
    own = save_model_package(
        LogisticRegression().fit(data.x, data.y), tmp_path / "own", requirements=["scikit-learn>=1.4"]
    )

    assert f"scikit-learn=={metadata.version('scikit-learn')}" in sk.requirements
    assert f"numpy=={metadata.version('numpy')}" in sk.requirements
    assert f"lightgbm=={metadata.version('lightgbm')}" in lg.requirements
    assert not any(r.startswith("scikit-learn") for r in lg.requirements)
    assert own.requirements == ["scikit-learn>=1.4"]


def test_a_given_signature_is_kept_and_outputs_filled_from_the_example(data, tmp_path):
    model = LogisticRegression().fit(data.x, data.y)
    sig = {"inputs": [{"name": n, "dtype": "float64"} for n in ("w", "x", "y", "z")]}
    meta = save_model_package(model, tmp_path / "m", signature=sig, input_example=data.x[:2])

    assert meta.signature.input_names == ["w", "x", "y", "z"]
    assert [(c.name, c.dtype) for c in meta.signature.outputs] == [("prediction", "float64")]
    assert read_model_meta(tmp_path / "m").signature == meta.signature


def test_saving_into_an_empty_directory_is_allowed(data, tmp_path):
    (tmp_path / "m").mkdir()
    save_model_package(LogisticRegression().fit(data.x, data.y), tmp_path / "m")
    assert (tmp_path / "m" / MODEL_META_FILE).is_file()


# -- errors ---------------------------------------------------------------------------------------


def test_unknown_flavor_lists_the_supported_ones(data, tmp_path):
    with pytest.raises(
        InvalidArgument, match=r"'xgbost'.*Did you mean 'xgboost'.*lightgbm, pyfunc, sklearn, xgboost"
    ):
        save_model_package(LogisticRegression().fit(data.x, data.y), tmp_path / "m", flavor="xgbost")
    assert not (tmp_path / "m").exists()


def test_a_package_of_an_unknown_flavor_fails_to_load_with_the_list(data, tmp_path):
    save_model_package(LogisticRegression().fit(data.x, data.y), tmp_path / "m")
    meta_file = tmp_path / "m" / MODEL_META_FILE
    meta_file.write_text(meta_file.read_text().replace('"sklearn"', '"onnx"'))

    with pytest.raises(
        InvalidArgument, match=r"'onnx'.*Supported flavors: lightgbm, pyfunc, sklearn, xgboost"
    ):
        load_model_package(tmp_path / "m")


def test_saving_over_a_non_empty_directory_is_refused(data, tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "keep.txt").write_text("mine")
    with pytest.raises(AlreadyExists, match="not empty"):
        save_model_package(LogisticRegression().fit(data.x, data.y), tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["keep.txt"]


def test_a_failed_save_leaves_nothing_behind(data, tmp_path):
    model = LogisticRegression().fit(data.x, data.y)
    with pytest.raises(InvalidArgument, match="failed to predict on input_example"):
        save_model_package(model, tmp_path / "m", input_example={"a": ["x"], "b": ["y"]})
    with pytest.raises(InvalidArgument, match="JSON-serializable"):
        save_model_package(model, tmp_path / "m", dataset_versions={"payments": object()})
    with pytest.raises(InvalidArgument, match="does not exist"):
        save_model_package(model, tmp_path / "m", code_paths=[tmp_path / "nope.py"])
    assert list(tmp_path.iterdir()) == []


def test_a_predict_method_the_model_lacks_is_refused(data, tmp_path):
    with pytest.raises(InvalidArgument, match="no method 'predict_log_odds'"):
        save_model_package(
            LogisticRegression().fit(data.x, data.y), tmp_path / "m", predict_method="predict_log_odds"
        )
    regressor = lgb.LGBMRegressor(**LGBM).fit(data.x, data.x[:, 0])
    with pytest.raises(InvalidArgument, match="classifier objective"):
        save_model_package(regressor, tmp_path / "r", predict_method="predict_proba")


def test_an_unfitted_booster_wrapper_is_refused(tmp_path):
    with pytest.raises(InvalidArgument, match="not fitted"):
        save_model_package(lgb.LGBMClassifier(), tmp_path / "m")
    with pytest.raises(InvalidArgument, match="not fitted"):
        save_model_package(xgb.XGBClassifier(), tmp_path / "x")


def test_missing_package_errors_name_the_path(tmp_path):
    with pytest.raises(NotFound, match=rf"{tmp_path / 'absent'}.*does not exist"):
        load_model_package(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(
        NotFound, match=rf"{tmp_path / 'empty'} is not a Gyre model package.*{MODEL_META_FILE}"
    ):
        load_model_package(tmp_path / "empty")


def test_corrupt_metadata_is_reported(data, tmp_path):
    save_model_package(LogisticRegression().fit(data.x, data.y), tmp_path / "m")
    meta_file = tmp_path / "m" / MODEL_META_FILE

    meta_file.write_text("{not json")
    with pytest.raises(CorruptArtifact, match=rf"{MODEL_META_FILE} is not valid model metadata"):
        load_model_package(tmp_path / "m")
    meta_file.write_text('{"format_version": 1, "flavor": "sklearn"}')
    with pytest.raises(CorruptArtifact, match="lacks model_file"):
        read_model_meta(tmp_path / "m")
    meta_file.write_text('{"format_version": 99, "flavor": "sklearn", "model_file": "model.joblib"}')
    with pytest.raises(GyreError, match="format version 99.*pip install -U gyre-ml"):
        read_model_meta(tmp_path / "m")


def test_a_missing_or_damaged_model_file_is_reported(data, tmp_path):
    save_model_package(lgb.LGBMClassifier(**LGBM).fit(data.x, data.y), tmp_path / "m")
    model_file = tmp_path / "m" / "model.txt"

    model_file.write_text("tree\nversion=v4\nthis is not a model\n")
    with pytest.raises(CorruptArtifact, match=r"model\.txt"):
        load_model_package(tmp_path / "m")
    model_file.unlink()
    with pytest.raises(CorruptArtifact, match=rf"{tmp_path / 'm'} is incomplete: model\.txt is missing"):
        load_model_package(tmp_path / "m")


def test_a_truncated_pickle_is_reported(data, tmp_path):
    save_model_package(LogisticRegression().fit(data.x, data.y), tmp_path / "m")
    model_file = tmp_path / "m" / "model.joblib"
    model_file.write_bytes(model_file.read_bytes()[:40])

    with pytest.raises(CorruptArtifact, match=r"model\.joblib"):
        load_model_package(tmp_path / "m")


def test_signature_objects_survive_a_round_trip(data, tmp_path):
    sig = Signature.from_dict({"inputs": [{"name": f"f{i}", "dtype": "float64"} for i in range(4)]})
    save_model_package(LogisticRegression().fit(data.x, data.y), tmp_path / "m", signature=sig)
    assert read_model_meta(tmp_path / "m").signature == sig
