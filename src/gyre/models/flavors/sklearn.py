"""The scikit-learn flavor: any estimator or pipeline, written with joblib.

An estimator fitted on a DataFrame (it has ``feature_names_in_``) is always given a
DataFrame, because pipelines select columns by name and plain estimators warn on arrays.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import joblib
import numpy as np
from sklearn.base import is_classifier

from gyre.errors import InvalidArgument
from gyre.models.flavors import json_classes

if TYPE_CHECKING:
    from gyre.models.package import ModelMeta

NAME = "sklearn"
LIBRARIES = ("scikit-learn", "numpy", "scipy", "pandas")
MODEL_FILE = "model.joblib"


def predict_method(model: Any, requested: str | None) -> str:
    """``predict_proba`` for classifiers that have it, else ``predict``; any method name if asked."""
    if requested is None:
        return "predict_proba" if is_classifier(model) and hasattr(model, "predict_proba") else "predict"
    if not callable(getattr(model, requested, None)):
        raise InvalidArgument(
            f"{type(model).__name__} has no method {requested!r} to predict with; "
            "use 'predict', or 'predict_proba' for a classifier that has it."
        )
    return requested


def options(model: Any) -> dict[str, Any]:
    classes = json_classes(model)
    return {"classes": classes} if classes is not None else {}


def save(model: Any, directory: Path) -> str:
    if not callable(getattr(model, "predict", None)):
        raise InvalidArgument(
            f"The sklearn flavor needs an estimator with predict, got {type(model).__name__}."
        )
    joblib.dump(model, directory / MODEL_FILE)
    return MODEL_FILE


def load(directory: Path, meta: ModelMeta) -> SklearnPredictor:
    model = joblib.load(directory / meta.model_file)
    return SklearnPredictor(model, meta.predict_method or "predict", meta.flavor_options.get("classes"))


class SklearnPredictor:
    """Calls the package's predict method; binary ``predict_proba`` is cut to P(class 1)."""

    def __init__(self, model: Any, method: str, classes: list[Any] | None) -> None:
        self.raw = model
        self._predict = getattr(model, method)
        self._binary_proba = method == "predict_proba" and classes is not None and len(classes) == 2
        names = getattr(model, "feature_names_in_", None)
        self.feature_names: list[str] | None = None if names is None else [str(n) for n in names]
        self.wants_frame = self.feature_names is not None
        if self.wants_frame:
            import pandas as pd

            self._frame = pd.DataFrame

    def predict_numpy(self, x: np.ndarray) -> np.ndarray:
        if self.wants_frame:
            x = self._frame(x, columns=self.feature_names)
        return self._finish(self._predict(x))

    def predict_frame(self, frame: Any) -> np.ndarray:
        return self._finish(self._predict(frame))

    def _finish(self, out: Any) -> np.ndarray:
        out = np.asarray(out)
        return out[:, 1] if self._binary_proba else out
