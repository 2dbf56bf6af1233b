"""The pyfunc flavor: any object with a ``predict`` method, written with cloudpickle.

cloudpickle stores classes from importable modules by reference, so the user's own modules
must be importable where the model loads: pass them as ``code_paths`` when saving and the
package carries them in ``code/``. Tabular input reaches the object as a pandas DataFrame;
:meth:`LoadedModel.predict_numpy` hands it the array unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import cloudpickle
import numpy as np

from gyre.errors import InvalidArgument

if TYPE_CHECKING:
    from gyre.models.package import ModelMeta

NAME = "pyfunc"
LIBRARIES = ("cloudpickle", "numpy", "pandas")
MODEL_FILE = "model.pkl"


def predict_method(model: Any, requested: str | None) -> str:
    """``predict`` unless another method of ``model`` is named."""
    method = requested or "predict"
    if not callable(getattr(model, method, None)):
        raise InvalidArgument(
            f"A pyfunc model needs a callable {method!r} method; {type(model).__name__} has none."
        )
    return method


def options(model: Any) -> dict[str, Any]:
    return {"class": f"{type(model).__module__}.{type(model).__qualname__}"}


def save(model: Any, directory: Path) -> str:
    with open(directory / MODEL_FILE, "wb") as f:
        cloudpickle.dump(model, f)
    return MODEL_FILE


def load(directory: Path, meta: ModelMeta) -> PyfuncPredictor:
    with open(directory / meta.model_file, "rb") as f:
        model = cloudpickle.load(f)
    return PyfuncPredictor(model, meta.predict_method or "predict")


class PyfuncPredictor:
    """Calls the object's predict method and returns its output as a numpy array."""

    wants_frame = True
    feature_names: list[str] | None = None

    def __init__(self, model: Any, method: str) -> None:
        self.raw = model
        self._predict = getattr(model, method)

    def predict_numpy(self, x: np.ndarray) -> np.ndarray:
        return _as_array(self._predict(x))

    def predict_frame(self, frame: Any) -> np.ndarray:
        return _as_array(self._predict(frame))


def _as_array(out: Any) -> np.ndarray:
    out = np.asarray(out)
    return out.ravel() if out.ndim == 2 and out.shape[1] == 1 else out
