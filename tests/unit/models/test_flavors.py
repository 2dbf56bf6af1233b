"""The flavor registry: detection, lazy imports, and the errors for unknown or missing flavors."""

from __future__ import annotations

import importlib
import subprocess
import sys

import lightgbm as lgb
import pytest
import xgboost as xgb
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from gyre.errors import GyreError, InvalidArgument
from gyre.models import flavors
from gyre.models.flavors import detect_flavor, get_flavor


class MyClassifier(lgb.LGBMClassifier):
    """A user's subclass still belongs to its library's flavor."""


class Rule:
    def predict(self, data):
        return data


@pytest.mark.parametrize(
    ("model", "flavor"),
    [
        (LinearRegression(), "sklearn"),
        (make_pipeline(StandardScaler(), LinearRegression()), "sklearn"),
        (lgb.LGBMRegressor(), "lightgbm"),
        (MyClassifier(), "lightgbm"),
        (xgb.XGBClassifier(), "xgboost"),
        (xgb.Booster(), "xgboost"),
        (Rule(), "pyfunc"),
    ],
)
def test_detect_flavor(model, flavor):
    assert detect_flavor(model) == flavor


def test_a_model_without_predict_is_refused():
    with pytest.raises(InvalidArgument, match="no predict method.*lightgbm, pyfunc, sklearn, xgboost"):
        detect_flavor(object())


def test_unknown_flavor_suggests_the_nearest():
    with pytest.raises(InvalidArgument, match="'lightgmb'.*Did you mean 'lightgbm'.*Supported flavors"):
        get_flavor("lightgmb")


def test_a_missing_library_gives_the_install_hint(monkeypatch):
    def no_lightgbm(name: str):
        raise ModuleNotFoundError("No module named 'lightgbm'", name="lightgbm")

    monkeypatch.setattr(flavors.importlib, "import_module", no_lightgbm)
    with pytest.raises(GyreError, match=r"lightgbm is not installed.*pip install 'gyre-ml\[lightgbm\]'"):
        get_flavor("lightgbm")


def test_flavor_modules_follow_the_contract():
    modules = {name: get_flavor(name) for name in flavors.FLAVORS}

    assert {name: m.NAME for name, m in modules.items()} == {name: name for name in flavors.FLAVORS}
    for name, module in modules.items():
        assert module.LIBRARIES, name
        for function in ("predict_method", "options", "save", "load"):
            assert callable(getattr(module, function)), f"{name}.{function}"
    assert importlib.import_module("gyre.models.flavors.sklearn") is modules["sklearn"]


def test_detection_and_packaging_of_a_pyfunc_import_no_ml_library(tmp_path):
    code = (
        "import sys\n"
        "import gyre.models\n"
        "from gyre.models import save_model_package, load_model_package\n"
        "class Double:\n"
        "    def predict(self, x):\n"
        "        return x * 2\n"
        f"save_model_package(Double(), {str(tmp_path / 'm')!r})\n"
        "import numpy as np\n"
        f"assert load_model_package({str(tmp_path / 'm')!r}).predict_numpy(np.ones((1, 1)))[0] == 2\n"
        "heavy = {'lightgbm', 'xgboost', 'sklearn', 'pandas'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_importing_gyre_models_is_light():
    code = "import sys, gyre.models\nassert 'numpy' not in sys.modules, 'numpy was imported'\n"
    subprocess.run([sys.executable, "-c", code], check=True)
