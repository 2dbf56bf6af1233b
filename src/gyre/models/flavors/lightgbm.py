"""The LightGBM flavor: native ``Booster`` text, whatever was saved.

``LGBMClassifier``/``LGBMRegressor`` are saved as their ``booster_`` and always loaded as a
``lightgbm.Booster``: on a single row the scikit-learn wrapper's ``predict_proba`` costs over
10x the native ``Booster.predict`` (~400 µs against ~25 µs for 100 trees). What the wrapper
would have added (the objective, the class labels) is recorded in the flavor options instead.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightgbm
import numpy as np

from gyre.errors import InvalidArgument
from gyre.models.flavors import argmax_labels, binary_labels, json_classes, text_as_category, threads_for

if TYPE_CHECKING:
    from gyre.models.package import ModelMeta

NAME = "lightgbm"
LIBRARIES = ("lightgbm", "numpy", "scipy")
MODEL_FILE = "model.txt"
PREDICT_METHODS = ("predict_proba", "predict")
_CLASSIFIER_OBJECTIVES = {"binary", "multiclass", "multiclassova"}
_DEFAULT_NAME = re.compile(r"Column_\d+")


def _booster(model: Any) -> lightgbm.Booster:
    if isinstance(model, lightgbm.Booster):
        return model
    if isinstance(model, lightgbm.LGBMModel):
        try:
            return model.booster_
        except lightgbm.compat.LGBMNotFittedError as exc:
            raise InvalidArgument(f"The {type(model).__name__} is not fitted; fit it before saving.") from exc
    raise InvalidArgument(
        f"The lightgbm flavor takes a lightgbm.Booster or an LGBMModel, got {type(model).__name__}."
    )


def _objective(booster: lightgbm.Booster) -> tuple[str, int]:
    # dump_model(num_iteration=1) is the public, cheap way to read the objective the model file
    # records ("binary sigmoid:1"), whatever alias or default was used in training.
    dumped = booster.dump_model(num_iteration=1)
    return str(dumped["objective"]).split(" ")[0], int(dumped["num_class"])


def predict_method(model: Any, requested: str | None) -> str:
    """Probabilities for classifier objectives, raw predictions otherwise."""
    objective, _ = _objective(_booster(model))
    is_classifier = objective in _CLASSIFIER_OBJECTIVES
    if requested is None:
        return "predict_proba" if is_classifier else "predict"
    if requested not in PREDICT_METHODS:
        raise InvalidArgument(
            f"LightGBM models predict with one of {', '.join(PREDICT_METHODS)}, not {requested!r}."
        )
    if requested == "predict_proba" and not is_classifier:
        raise InvalidArgument(f"predict_proba needs a classifier objective; this model's is {objective!r}.")
    return requested


def options(model: Any) -> dict[str, Any]:
    objective, num_class = _objective(_booster(model))
    return {"objective": objective, "num_class": num_class, "classes": json_classes(model)}


def save(model: Any, directory: Path) -> str:
    _booster(model).save_model(directory / MODEL_FILE)
    return MODEL_FILE


def load(directory: Path, meta: ModelMeta) -> LightGBMPredictor:
    booster = lightgbm.Booster(model_file=directory / meta.model_file)
    opts = meta.flavor_options
    return LightGBMPredictor(
        booster,
        labels=meta.predict_method == "predict" and opts.get("objective") in _CLASSIFIER_OBJECTIVES,
        classes=opts.get("classes"),
    )


class LightGBMPredictor:
    """Predicts through ``Booster.predict``: P(class 1) for binary, (n, k) for multiclass."""

    def __init__(self, booster: lightgbm.Booster, *, labels: bool, classes: list[Any] | None) -> None:
        self.raw = booster
        self._labels = labels
        self._classes = classes
        names = booster.feature_name()
        self.feature_names = None if all(_DEFAULT_NAME.fullmatch(n) for n in names) else names
        # a model trained on pandas categoricals maps categories to codes only from a DataFrame
        self.wants_frame = bool(booster.pandas_categorical)

    def predict_numpy(self, x: np.ndarray) -> np.ndarray:
        return self._finish(np.asarray(self.raw.predict(x, num_threads=threads_for(len(x)))))

    def predict_frame(self, frame: Any) -> np.ndarray:
        frame = text_as_category(frame)
        return self._finish(np.asarray(self.raw.predict(frame, num_threads=threads_for(len(frame)))))

    def _finish(self, out: np.ndarray) -> np.ndarray:
        if not self._labels:
            return out
        return argmax_labels(out, self._classes) if out.ndim == 2 else binary_labels(out, self._classes)
