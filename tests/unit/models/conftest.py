"""Small seeded data sets and models for the model-package tests.

Models are fitted single-threaded and deterministic, so results do not depend on the host.
"""

from __future__ import annotations

import importlib
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest

USER_MODEL_SOURCE = '''\
import numpy as np


class WeightedSum:
    """A user's model class that lives in the user's own package."""

    def __init__(self, weights):
        self.weights = np.asarray(weights, dtype=float)

    def predict(self, data):
        return np.asarray(data, dtype=float) @ self.weights
'''


@dataclass(frozen=True)
class Data:
    x: np.ndarray  # (200, 4) float64
    y: np.ndarray  # binary 0/1
    y3: np.ndarray  # three classes 0/1/2
    frame: pd.DataFrame  # numeric a, b, c and text column s
    y_frame: np.ndarray  # binary target for frame


@pytest.fixture(scope="session")
def data() -> Data:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(200, 4))
    y = (x[:, 0] + 0.5 * x[:, 1] + rng.normal(scale=0.3, size=200) > 0).astype(int)
    y3 = np.digitize(x[:, 0] + x[:, 2], [-0.5, 0.5])
    frame = pd.DataFrame(
        {
            "a": rng.normal(size=200),
            "b": rng.integers(0, 10, size=200),
            "c": rng.normal(size=200),
            "s": rng.choice(["red", "green", "blue"], size=200),
        }
    )
    y_frame = ((frame["a"] > 0) ^ (frame["s"] == "red")).astype(int).to_numpy()
    return Data(x=x, y=y, y3=y3, frame=frame, y_frame=y_frame)


@dataclass
class UserCode:
    """A user package on disk, imported as ``module`` from ``root``."""

    root: Path
    package_dir: Path
    module: ModuleType

    def forget(self) -> None:
        """Make the package unimportable from where the user had it, as in a fresh process."""
        sys.path.remove(str(self.root))
        sys.modules.pop(self.module.__name__, None)
        importlib.invalidate_caches()


@pytest.fixture
def user_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[UserCode]:
    """A uniquely named user package holding ``WeightedSum``, importable for the test's duration."""
    name = f"gyre_test_user_{uuid.uuid4().hex[:10]}"
    root = tmp_path / "user_src"
    package_dir = root / name
    package_dir.mkdir(parents=True)
    (package_dir / "__init__.py").write_text(USER_MODEL_SOURCE)
    monkeypatch.setattr(sys, "path", [str(root), *sys.path])  # restored, with anything a load added
    importlib.invalidate_caches()
    yield UserCode(root=root, package_dir=package_dir, module=importlib.import_module(name))
    sys.modules.pop(name, None)
