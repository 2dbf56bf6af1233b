"""The model package: a directory holding a model in its flavor's native format plus ``gyre-model.json``.

Layout::

    model/
      gyre-model.json     # ModelMeta: flavor, model file, signature, requirements, lineage
      model.joblib        # or model.txt (LightGBM), model.ubj (XGBoost), model.pkl (pyfunc)
      code/               # the user's modules from code_paths, put on sys.path at load

A package is written to a sibling temporary directory and renamed into place, so a failed
save leaves nothing behind and a reader never sees half a package.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from gyre.errors import AlreadyExists, CorruptArtifact, GyreError, InvalidArgument, NotFound
from gyre.ids import new_id, utcnow
from gyre.jsonsafe import encode_float
from gyre.models.flavors import detect_flavor, get_flavor
from gyre.models.loaded import LoadedModel
from gyre.models.signature import Signature, infer_signature

MODEL_META_FILE = "gyre-model.json"
CODE_DIR = "code"
FORMAT_VERSION = 1


@dataclass
class ModelMeta:
    """What ``gyre-model.json`` records about a package."""

    flavor: str
    model_file: str
    signature: Signature | None = None
    predict_method: str | None = None
    requirements: list[str] = field(default_factory=list)
    feature_refs: list[str] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    run_id: str | None = None
    dataset_versions: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""
    flavor_options: dict[str, Any] = field(default_factory=dict)
    code_dir: str | None = None
    python_version: str = ""
    gyre_version: str = ""
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "flavor": self.flavor,
            "model_file": self.model_file,
            "signature": self.signature.to_dict() if self.signature else None,
            "predict_method": self.predict_method,
            "requirements": list(self.requirements),
            "feature_refs": list(self.feature_refs),
            # JSON has no NaN/inf: "NaN"/"Infinity" strings, as everywhere in Gyre
            "metrics": {k: encode_float(v) for k, v in self.metrics.items()},
            "run_id": self.run_id,
            "dataset_versions": dict(self.dataset_versions),
            "created_at": self.created_at,
            "flavor_options": dict(self.flavor_options),
            "code_dir": self.code_dir,
            "python_version": self.python_version,
            "gyre_version": self.gyre_version,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelMeta:
        """Read a ``gyre-model.json`` document.

        Raises:
            GyreError: the package was written by a newer Gyre (format version too high).
            InvalidArgument: a required key is missing or malformed.
        """
        version = data.get("format_version", FORMAT_VERSION)
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise GyreError(
                f"This model package has format version {version!r}; this Gyre reads up to "
                f"{FORMAT_VERSION}. Upgrade with `pip install -U gyre-ml`."
            )
        missing = [k for k in ("flavor", "model_file") if not isinstance(data.get(k), str)]
        if missing:
            raise InvalidArgument(f"Model metadata lacks {', '.join(missing)}.")
        signature = data.get("signature")
        return cls(
            flavor=data["flavor"],
            model_file=data["model_file"],
            signature=Signature.from_dict(signature) if signature else None,
            predict_method=data.get("predict_method"),
            requirements=list(data.get("requirements") or ()),
            feature_refs=list(data.get("feature_refs") or ()),
            metrics={k: float(v) for k, v in (data.get("metrics") or {}).items()},
            run_id=data.get("run_id"),
            dataset_versions=dict(data.get("dataset_versions") or {}),
            created_at=data.get("created_at", ""),
            flavor_options=dict(data.get("flavor_options") or {}),
            code_dir=data.get("code_dir"),
            python_version=data.get("python_version", ""),
            gyre_version=data.get("gyre_version", ""),
            format_version=version,
        )


def save_model_package(
    model: Any,
    path: str | os.PathLike[str],
    *,
    flavor: str | None = None,
    signature: Signature | Mapping[str, Any] | None = None,
    input_example: Any = None,
    code_paths: Sequence[str | os.PathLike[str]] = (),
    requirements: Sequence[str] | None = None,
    feature_refs: Sequence[str] = (),
    metrics: Mapping[str, float] | None = None,
    run_id: str | None = None,
    dataset_versions: Mapping[str, Any] | None = None,
    predict_method: str | None = None,
) -> ModelMeta:
    """Write ``model`` as a package directory at ``path`` (which must not exist, or be empty).

    Args:
        model: a fitted scikit-learn estimator, LightGBM or XGBoost model, or any object
            with a ``predict`` method (pyfunc).
        path: the package directory to create.
        flavor: ``sklearn``, ``lightgbm``, ``xgboost`` or ``pyfunc``; detected when omitted.
        signature: the model's input/output columns; inferred from ``input_example`` if omitted.
        input_example: a few rows of model input (see :func:`infer_signature` for the kinds).
            When given, the written package is loaded and run on it before ``save`` returns,
            so a package that cannot predict is never written; its output fills in the
            signature's outputs if they are unknown.
        code_paths: files or package directories of the user's code; copied into ``code/``
            and importable when the package loads (pass a package directory or a module
            file, not a source root).
        requirements: pip requirement lines; default: pinned versions of the flavor's
            libraries installed here (e.g. ``scikit-learn==1.5.1``).
        feature_refs: feature references the model reads, e.g. ``"user_activity:amount_sum_1h"``.
        metrics: metric values to record (e.g. the training run's latest).
        run_id: the tracking run that produced the model.
        dataset_versions: dataset name -> version the model was trained on.
        predict_method: ``"predict"`` to make classifiers return labels instead of
            probabilities; for sklearn and pyfunc, any method name of the model.

    Returns:
        The :class:`ModelMeta` written to ``gyre-model.json``.

    Raises:
        AlreadyExists: ``path`` holds something already.
        InvalidArgument: a bad flavor, predict method, code path, example or metadata value.
    """
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise AlreadyExists(f"Cannot save a model package to {path}: it exists and is not empty.")
    flavor_name = flavor or detect_flavor(model)
    module = get_flavor(flavor_name)
    meta = ModelMeta(
        flavor=flavor_name,
        model_file="",
        signature=_as_signature(signature, input_example),
        predict_method=module.predict_method(model, predict_method),
        requirements=_requirements(requirements, module.LIBRARIES),
        feature_refs=_strings(feature_refs, "feature_refs"),
        metrics=_metrics(metrics),
        run_id=run_id,
        dataset_versions=dict(dataset_versions or {}),
        created_at=utcnow().isoformat(),
        flavor_options=module.options(model),
        python_version=platform.python_version(),
        gyre_version=_gyre_version(),
    )
    sources = _code_sources(code_paths)
    _to_json(meta)  # fail on unserializable metadata before writing anything

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{new_id()}.partial"
    tmp.mkdir()
    try:
        meta.model_file = module.save(model, tmp)
        if sources:
            _copy_code(sources, tmp / CODE_DIR)
            meta.code_dir = CODE_DIR
        _write_meta(tmp, meta)
        if input_example is not None:
            _check_example(tmp, meta, input_example)
        if path.exists():
            path.rmdir()  # empty, checked above; rename cannot replace a directory everywhere
        tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta


def read_model_meta(path: str | os.PathLike[str]) -> ModelMeta:
    """Read ``gyre-model.json`` from the package directory at ``path``.

    Raises:
        NotFound: no directory at ``path``, or it holds no ``gyre-model.json``.
        CorruptArtifact: the file is not valid package metadata.
    """
    path = Path(path)
    if not path.is_dir():
        what = "is a file, not a package directory" if path.exists() else "does not exist"
        raise NotFound(f"No model package at {path}: the path {what}.")
    meta_path = path / MODEL_META_FILE
    if not meta_path.is_file():
        raise NotFound(f"{path} is not a Gyre model package: it has no {MODEL_META_FILE}.")
    try:
        data = json.loads(meta_path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise InvalidArgument(f"expected a JSON object, got {type(data).__name__}")
        return ModelMeta.from_dict(data)
    except (ValueError, TypeError) as exc:  # JSONDecodeError and InvalidArgument are ValueErrors
        raise CorruptArtifact(f"{meta_path} is not valid model metadata: {exc}") from exc


def load_model_package(path: str | os.PathLike[str]) -> LoadedModel:
    """Load the package at ``path`` for prediction.

    Raises:
        NotFound: no package at ``path``.
        CorruptArtifact: its metadata or model file is missing or unreadable.
        GyreError: the flavor's library, or a module the model needs, is not installed.
    """
    return _load(Path(path), import_code=True)


def _load(path: Path, meta: ModelMeta | None = None, *, import_code: bool) -> LoadedModel:
    meta = meta or read_model_meta(path)
    module = get_flavor(meta.flavor)
    model_path = path / meta.model_file
    if not model_path.exists():
        raise CorruptArtifact(f"The model package at {path} is incomplete: {meta.model_file} is missing.")
    if import_code and meta.code_dir:
        code = str((path / meta.code_dir).resolve())
        if code not in sys.path:
            sys.path.insert(0, code)  # first, so the package's code wins over stale copies
            importlib.invalidate_caches()
    try:
        predictor = module.load(path, meta)
    except GyreError:
        raise
    except ModuleNotFoundError as exc:
        raise GyreError(
            f"Cannot load the model at {path}: it needs module {exc.name!r}, which is not importable. "
            "Install it, or save the model with code_paths=[...] holding that module."
        ) from exc
    except Exception as exc:
        python = f" (written by Python {meta.python_version})" if meta.python_version else ""
        raise CorruptArtifact(f"Cannot read {model_path}{python}: {type(exc).__name__}: {exc}") from exc
    return LoadedModel(meta, predictor, path)


def _check_example(directory: Path, meta: ModelMeta, example: Any) -> None:
    # The saving process already has the user's modules imported, so no sys.path change.
    loaded = _load(directory, meta, import_code=False)
    try:
        output = loaded.predict(example)
    except Exception as exc:
        why = str(exc) if isinstance(exc, GyreError) else f"{type(exc).__name__}: {exc}"
        raise InvalidArgument(f"The saved model failed to predict on input_example: {why}") from exc
    if meta.signature is not None and not meta.signature.outputs:
        outputs = infer_signature(example, output).outputs
        meta.signature = Signature(inputs=meta.signature.inputs, outputs=outputs)
        _write_meta(directory, meta)


def _as_signature(signature: Signature | Mapping[str, Any] | None, example: Any) -> Signature | None:
    if isinstance(signature, Signature):
        return signature
    if signature is not None:
        return Signature.from_dict(signature)
    return infer_signature(example) if example is not None else None


def _requirements(given: Sequence[str] | None, libraries: Sequence[str]) -> list[str]:
    if given is not None:
        return _strings(given, "requirements")
    pins = []
    for dist in libraries:
        try:
            pins.append(f"{dist}=={metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            continue  # optional for this flavor (e.g. pandas), and not installed
    return pins


def _strings(values: Sequence[str], what: str) -> list[str]:
    if isinstance(values, str) or not all(isinstance(v, str) and v for v in values):
        raise InvalidArgument(f"{what} must be a list of non-empty strings, got {values!r}.")
    return list(values)


def _metrics(metrics: Mapping[str, float] | None) -> dict[str, float]:
    try:
        return {str(k): float(v) for k, v in (metrics or {}).items()}
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"metrics must map names to numbers: {exc}") from exc


def _code_sources(code_paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    if isinstance(code_paths, str | os.PathLike):
        code_paths = [code_paths]
    sources = [Path(p) for p in code_paths]
    for src in sources:
        if not src.exists():
            raise InvalidArgument(f"code_paths entry {src} does not exist.")
    names = [s.resolve().name for s in sources]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InvalidArgument(f"code_paths entries share a name ({', '.join(dupes)}); each lands in code/.")
    return sources


def _copy_code(sources: list[Path], dest: Path) -> None:
    dest.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for src in sources:
        target = dest / src.resolve().name
        if src.is_dir():
            shutil.copytree(src, target, ignore=ignore)
        else:
            shutil.copy2(src, target)


def _to_json(meta: ModelMeta) -> str:
    try:
        return json.dumps(meta.to_dict(), indent=2, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"Model metadata must be JSON-serializable: {exc}") from exc


def _write_meta(directory: Path, meta: ModelMeta) -> None:
    (directory / MODEL_META_FILE).write_text(_to_json(meta) + "\n", encoding="utf-8")


def _gyre_version() -> str:
    try:
        return metadata.version("gyre-ml")
    except metadata.PackageNotFoundError:  # running from a source tree
        return ""
