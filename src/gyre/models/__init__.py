"""Models: the package format (a directory with the model in its flavor's native format and
``gyre-model.json``), flavors for scikit-learn, LightGBM, XGBoost and any object with a
``predict`` method (pyfunc), signatures, and loading a package for fast prediction. Names
load on first use, so importing ``gyre.models`` stays cheap for code that only needs the
registry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gyre._lazy import lazy_exports

# public name -> module that defines it
_EXPORTS = {
    "LoadedModel": "gyre.models.loaded",
    "ModelMeta": "gyre.models.package",
    "Signature": "gyre.models.signature",
    "infer_signature": "gyre.models.signature",
    "load_model_package": "gyre.models.package",
    "save_model_package": "gyre.models.package",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from gyre.models.loaded import LoadedModel as LoadedModel
    from gyre.models.package import ModelMeta as ModelMeta
    from gyre.models.package import load_model_package as load_model_package
    from gyre.models.package import save_model_package as save_model_package
    from gyre.models.signature import Signature as Signature
    from gyre.models.signature import infer_signature as infer_signature


__getattr__, __dir__ = lazy_exports("gyre.models", globals(), _EXPORTS)
