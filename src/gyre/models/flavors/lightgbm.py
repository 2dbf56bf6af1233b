"""The LightGBM flavor: native ``Booster`` text, whatever was saved.

``LGBMClassifier``/``LGBMRegressor`` are saved as their ``booster_`` and always loaded as a
``lightgbm.Booster``: on a single row the scikit-learn wrapper's ``predict_proba`` costs over
10x the native ``Booster.predict`` (~400 µs against ~25 µs for 100 trees). What the wrapper
would have added (the objective, the class labels) is recorded in the flavor options instead.
"""

from __future__ import annotations

import ctypes
import re
import threading
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


class SingleRow:
    """LightGBM's single-row C entry point (``LGBM_BoosterPredictForMatSingleRowFast``), set up
    once: ``Booster.predict`` builds a predictor and its parameters on every call, ~25 µs of
    Python for one row of a 200-tree model, where this takes ~8 µs. Same numbers as
    ``Booster.predict`` with its defaults (normal predictions of the best iteration's trees).

    ``lightgbm.basic._LIB`` is the library handle the package itself calls through; the C
    functions used here are part of LightGBM's stable C API.
    """

    _PREDICT_NORMAL, _FLOAT64 = 0, 1  # C_API_PREDICT_NORMAL, C_API_DTYPE_FLOAT64

    def __init__(self, booster: lightgbm.Booster) -> None:
        from lightgbm.basic import _LIB, _c_str, _safe_call

        self._booster, self._lib, self._check = booster, _LIB, _safe_call
        self.num_features = booster.num_feature()
        iterations = booster.best_iteration if booster.best_iteration > 0 else -1
        handle = ctypes.c_void_p()
        _safe_call(
            _LIB.LGBM_BoosterPredictForMatSingleRowFastInit(
                booster._handle,
                ctypes.c_int(self._PREDICT_NORMAL),
                ctypes.c_int(0),  # start iteration
                ctypes.c_int(iterations),
                ctypes.c_int(self._FLOAT64),
                ctypes.c_int32(self.num_features),
                _c_str("num_threads=1"),
                ctypes.byref(handle),
            )
        )
        self._handle = handle
        width = ctypes.c_int64()
        _safe_call(
            _LIB.LGBM_BoosterCalcNumPredict(
                booster._handle,
                ctypes.c_int(1),
                ctypes.c_int(self._PREDICT_NORMAL),
                ctypes.c_int(0),
                ctypes.c_int(iterations),
                ctypes.byref(width),
            )
        )
        self._width = width.value
        self._written = ctypes.c_int64()
        self._lock = threading.Lock()  # one call at a time per set-up (its buffers are shared)

    def __call__(self, row: np.ndarray) -> np.ndarray:
        """Predictions for ``row``, a C-contiguous float64 array of one row, shaped like
        ``Booster.predict``'s: ``(1,)``, or ``(1, classes)`` for multiclass."""
        out = np.empty(self._width, dtype=np.float64)
        with self._lock:
            self._check(
                self._lib.LGBM_BoosterPredictForMatSingleRowFast(
                    self._handle,
                    ctypes.c_void_p(row.ctypes.data),
                    ctypes.byref(self._written),
                    ctypes.c_void_p(out.ctypes.data),
                )
            )
        return out if self._width == 1 else out.reshape(1, self._width)

    def __del__(self) -> None:
        handle = getattr(self, "_handle", None)
        if handle is not None and handle.value is not None:
            self._lib.LGBM_FastConfigFree(handle)


class LightGBMPredictor:
    """Predicts through ``Booster.predict`` (one row: :class:`SingleRow`): P(class 1) for
    binary, (n, k) for multiclass."""

    def __init__(self, booster: lightgbm.Booster, *, labels: bool, classes: list[Any] | None) -> None:
        self.raw = booster
        self._labels = labels
        self._classes = classes
        names = booster.feature_name()
        self.feature_names = None if all(_DEFAULT_NAME.fullmatch(n) for n in names) else names
        # a model trained on pandas categoricals maps categories to codes only from a DataFrame
        self.wants_frame = bool(booster.pandas_categorical)
        self._single_row = SingleRow(booster)

    def predict_numpy(self, x: np.ndarray) -> np.ndarray:
        if x.shape == (1, self._single_row.num_features) and x.dtype == np.float64 and x.flags.c_contiguous:
            return self._finish(self._single_row(x))
        return self._finish(np.asarray(self.raw.predict(x, num_threads=threads_for(len(x)))))

    def predict_frame(self, frame: Any) -> np.ndarray:
        frame = text_as_category(frame)
        return self._finish(np.asarray(self.raw.predict(frame, num_threads=threads_for(len(frame)))))

    def _finish(self, out: np.ndarray) -> np.ndarray:
        if not self._labels:
            return out
        return argmax_labels(out, self._classes) if out.ndim == 2 else binary_labels(out, self._classes)
