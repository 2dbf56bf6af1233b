"""Flavors: how each kind of model is written to, and read back from, a package directory.

A flavor is a module, imported only when a model of its kind is saved or loaded (so
``import gyre`` never pays for LightGBM), that defines:

- ``NAME``: the flavor's name, as recorded in ``gyre-model.json``;
- ``LIBRARIES``: distributions pinned as the package's default requirements;
- ``predict_method(model, requested) -> str``: the method predictions use, checked against
  ``model`` (``requested=None`` picks the default: probabilities for classifiers);
- ``options(model) -> dict``: JSON-able facts the loader needs (objective, classes, ...);
- ``save(model, directory) -> str``: write the model file(s), return the main file's name;
- ``load(directory, meta) -> Predictor``: read them back as a :class:`Predictor`.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any, Protocol

import numpy as np

from gyre.errors import GyreError, InvalidArgument, did_you_mean

# flavor name -> (module, install hint when its library is missing)
FLAVORS: dict[str, tuple[str, str]] = {
    "lightgbm": ("gyre.models.flavors.lightgbm", "LightGBM models need `pip install 'gyre-ml[lightgbm]'`."),
    "pyfunc": ("gyre.models.flavors.pyfunc", "pyfunc models need `pip install cloudpickle pandas`."),
    "sklearn": ("gyre.models.flavors.sklearn", "scikit-learn models need `pip install 'gyre-ml[sklearn]'`."),
    "xgboost": ("gyre.models.flavors.xgboost", "XGBoost models need `pip install 'gyre-ml[xgboost]'`."),
}

# top-level module of a model's class (or a base class) -> flavor; checked without importing it
_FLAVOR_BY_MODULE = {"lightgbm": "lightgbm", "xgboost": "xgboost", "sklearn": "sklearn"}

# Below this many rows the boosters predict on one thread: waking an OpenMP pool costs more
# than it saves on a handful of rows, and far more on a busy serving host.
SINGLE_THREAD_MAX_ROWS = 32


class Predictor(Protocol):
    """A loaded model, adapted to Gyre's prediction convention.

    Classifiers return probabilities unless the package's ``predict_method`` says
    ``"predict"``: a 1-D array of P(class 1) for binary, an (n, classes) array for multiclass.
    """

    raw: Any
    """The native object (``lightgbm.Booster``, ``xgboost.Booster``, the estimator, ...)."""
    feature_names: list[str] | None
    """Column order the model was fitted with, when it recorded real names."""
    wants_frame: bool
    """True if tabular input must reach the model as a pandas DataFrame (named or typed columns)."""

    def predict_numpy(self, x: np.ndarray) -> np.ndarray: ...

    def predict_frame(self, frame: Any) -> np.ndarray: ...


def get_flavor(name: str) -> ModuleType:
    """Import and return the flavor module called ``name``.

    Raises:
        InvalidArgument: no such flavor (the message lists the supported ones).
        GyreError: the flavor's library is not installed (the message says what to install).
    """
    try:
        module, hint = FLAVORS[name]
    except KeyError:
        raise InvalidArgument(
            f"Unknown model flavor {name!r}.{did_you_mean(name, FLAVORS)} "
            f"Supported flavors: {', '.join(sorted(FLAVORS))}."
        ) from None
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if exc.name is None or exc.name.startswith("gyre."):
            raise
        raise GyreError(f"Cannot use the {name} flavor: {exc.name} is not installed. {hint}") from exc


def detect_flavor(model: Any) -> str:
    """Name the flavor for ``model`` from the modules of its class and base classes.

    Only class metadata is read, so LightGBM, XGBoost and scikit-learn stay unimported for a
    model that is not theirs. Anything else with a ``predict`` method is ``pyfunc``.

    Raises:
        InvalidArgument: ``model`` is of no known kind and has no ``predict`` method.
    """
    for cls in type(model).__mro__:
        flavor = _FLAVOR_BY_MODULE.get(cls.__module__.partition(".")[0])
        if flavor is not None:
            return flavor
    if callable(getattr(model, "predict", None)):
        return "pyfunc"
    raise InvalidArgument(
        f"Cannot package a {type(model).__module__}.{type(model).__qualname__}: it is not a "
        "scikit-learn, LightGBM or XGBoost model and has no predict method. Give it a predict "
        f"method, or pass flavor= one of: {', '.join(sorted(FLAVORS))}."
    )


def threads_for(rows: int) -> int:
    """Threads a booster should predict ``rows`` rows with (0 means the library's default)."""
    return 1 if rows <= SINGLE_THREAD_MAX_ROWS else 0


def binary_labels(p: np.ndarray, classes: list[Any] | None) -> np.ndarray:
    """Labels from P(class 1), the way scikit-learn wrappers do it (class 1 when p > 0.5)."""
    idx = (p > 0.5).astype(np.intp)
    return np.asarray(classes)[idx] if classes else idx


def argmax_labels(proba: np.ndarray, classes: list[Any] | None) -> np.ndarray:
    """Labels from an (n, classes) probability matrix."""
    idx = proba.argmax(axis=1)
    return np.asarray(classes)[idx] if classes else idx


def text_as_category(frame: Any) -> Any:
    """``frame`` with its text columns as pandas categoricals (boosters read categories only so)."""
    text = [c for c, t in frame.dtypes.items() if str(t) in ("object", "string", "str")]
    return frame.astype(dict.fromkeys(text, "category")) if text else frame


def json_classes(model: Any) -> list[Any] | None:
    """A fitted classifier's ``classes_`` as JSON-able values, or None."""
    classes = getattr(model, "classes_", None)
    return None if classes is None else np.asarray(classes).tolist()
