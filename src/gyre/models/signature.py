"""Model signatures: the named, typed columns a model takes and returns.

A signature is plain data (names and dtype strings such as ``"float64"``, ``"int64"``,
``"bool"``, ``"string"``, ``"category"``, ``"datetime64[ns]"``) so the control plane and the
serving layer can read it without numpy or pandas. :func:`infer_signature` derives one from
an example of the model's input (and optionally its output).
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gyre.errors import InvalidArgument

INPUT_KINDS = "a pandas DataFrame, a dict of column -> list/array, a list of row dicts, or a 2-D numpy array"


@dataclass(frozen=True)
class ColumnSpec:
    """One named column and its dtype string."""

    name: str
    dtype: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "dtype": self.dtype}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ColumnSpec:
        try:
            return cls(name=str(data["name"]), dtype=str(data["dtype"]))
        except (KeyError, TypeError) as exc:
            raise InvalidArgument(f"A signature column needs 'name' and 'dtype', got {data!r}.") from exc


@dataclass(frozen=True)
class Signature:
    """The columns a model reads (``inputs``, in the order it reads them) and returns (``outputs``)."""

    inputs: list[ColumnSpec]
    outputs: list[ColumnSpec] = field(default_factory=list)

    @property
    def input_names(self) -> list[str]:
        return [c.name for c in self.inputs]

    def to_dict(self) -> dict[str, list[dict[str, str]]]:
        return {
            "inputs": [c.to_dict() for c in self.inputs],
            "outputs": [c.to_dict() for c in self.outputs],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Signature:
        if not isinstance(data, Mapping) or "inputs" not in data:
            raise InvalidArgument(f"A signature is a dict with 'inputs' (and 'outputs'), got {data!r}.")
        return cls(
            inputs=[ColumnSpec.from_dict(c) for c in data["inputs"]],
            outputs=[ColumnSpec.from_dict(c) for c in data.get("outputs") or ()],
        )


def infer_signature(input_example: Any, output_example: Any = None) -> Signature:
    """Derive a signature from example data.

    Args:
        input_example: a pandas DataFrame, a dict of column -> list/array, a list of row
            dicts, or a 2-D numpy array (its columns are named ``f0`` .. ``fN-1``).
        output_example: optional model output: a 1-D array or list (one column,
            ``prediction``), a 2-D array (``prediction_0`` .. ``prediction_K-1``), a pandas
            Series, or any of the input kinds.

    Raises:
        InvalidArgument: the example is empty, ragged, or of an unsupported kind.
    """
    outputs = _infer_output_columns(output_example) if output_example is not None else []
    return Signature(inputs=infer_columns(input_example), outputs=outputs)


def infer_columns(data: Any) -> list[ColumnSpec]:
    """Column specs of tabular ``data`` (any of the input kinds :func:`infer_signature` takes)."""
    pd = sys.modules.get("pandas")  # a DataFrame can only exist if pandas is imported already
    if pd is not None and isinstance(data, pd.DataFrame):
        return _unique([ColumnSpec(str(name), pandas_dtype(column)) for name, column in data.items()])
    if isinstance(data, Mapping):
        if not data:
            raise InvalidArgument("The example dict has no columns.")
        lengths = set()
        specs = []
        for name, values in data.items():
            if isinstance(values, str | bytes) or not hasattr(values, "__len__"):
                raise InvalidArgument(
                    f"Column {name!r} of the example dict holds {type(values).__name__}, not a list or "
                    "array; pass a dict of column -> values, or a list of row dicts."
                )
            lengths.add(len(values))
            specs.append(ColumnSpec(str(name), values_dtype(values)))
        if len(lengths) > 1:
            raise InvalidArgument(f"The example dict's columns differ in length: {sorted(lengths)}.")
        return _unique(specs)
    if _is_ndarray(data):
        if data.ndim != 2:
            raise InvalidArgument(
                f"A numpy example must be 2-D (rows x features), got shape {data.shape}; "
                "reshape a single row with x.reshape(1, -1)."
            )
        dtype = _numpy_dtype(data.dtype, data.ravel())
        return [ColumnSpec(f"f{i}", dtype) for i in range(data.shape[1])]
    if isinstance(data, Sequence) and not isinstance(data, str | bytes):
        if not data:
            raise InvalidArgument("The example is an empty list; give at least one row.")
        if not all(isinstance(row, Mapping) for row in data):
            raise InvalidArgument(f"A list example must hold row dicts; expected {INPUT_KINDS}.")
        names: dict[str, None] = {}  # first-seen order across rows
        for row in data:
            names.update(dict.fromkeys(row))
        missing = object()
        return [
            ColumnSpec(str(n), values_dtype([v for r in data if (v := r.get(n, missing)) is not missing]))
            for n in names
        ]
    raise InvalidArgument(f"Cannot read columns from {type(data).__name__}; expected {INPUT_KINDS}.")


def pandas_dtype(column: Any) -> str:
    """Dtype string of one pandas Series."""
    dtype = column.dtype
    kind = getattr(dtype, "kind", "O")
    name = str(dtype)
    if name == "category":
        return "category"
    if name in ("string", "str") or name.startswith("string["):
        return "string"
    if kind in "iufb" or name.startswith("datetime64"):
        # nullable extension types (Int64, Float64, boolean) map to their numpy names
        return {"b": "bool"}.get(kind, name.lower())
    return values_dtype(column.tolist())


def values_dtype(values: Any) -> str:
    """Dtype string of a list or 1-D array of values; ``None`` entries are ignored."""
    if _is_ndarray(values) and values.dtype.kind != "O":
        return _numpy_dtype(values.dtype, values)
    present = [v for v in values if v is not None]
    if not present:
        return "object"
    if all(isinstance(v, bool) for v in present):
        return "bool"
    if all(isinstance(v, str) for v in present):
        return "string"
    if all(isinstance(v, dt.datetime) for v in present):
        return "datetime64[ns]"
    import numpy as np

    if all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in present):
        return "int64"
    if all(isinstance(v, int | float | np.number) and not isinstance(v, bool) for v in present):
        return "float64"
    return "object"


def _numpy_dtype(dtype: Any, values: Any) -> str:
    if dtype.kind == "b":
        return "bool"
    if dtype.kind in "US":
        return "string"
    if dtype.kind == "O":
        return values_dtype(values.tolist())
    return str(dtype)


def _infer_output_columns(data: Any) -> list[ColumnSpec]:
    pd = sys.modules.get("pandas")
    if pd is not None and isinstance(data, pd.Series):
        return [ColumnSpec(str(data.name) if data.name is not None else "prediction", pandas_dtype(data))]
    if _is_ndarray(data) and data.ndim == 1:
        return [ColumnSpec("prediction", values_dtype(data))]
    if _is_ndarray(data) and data.ndim == 2:
        dtype = _numpy_dtype(data.dtype, data.ravel())
        return [ColumnSpec(f"prediction_{i}", dtype) for i in range(data.shape[1])]
    if isinstance(data, list | tuple) and data and not isinstance(data[0], Mapping):
        return [ColumnSpec("prediction", values_dtype(list(data)))]
    return infer_columns(data)


def _unique(specs: list[ColumnSpec]) -> list[ColumnSpec]:
    seen: set[str] = set()
    dupes = []
    for s in specs:
        if s.name in seen:
            dupes.append(s.name)
        seen.add(s.name)
    if dupes:
        raise InvalidArgument(f"The example has duplicate column names: {sorted(set(dupes))}.")
    return specs


def _is_ndarray(data: Any) -> bool:
    np = sys.modules.get("numpy")
    return np is not None and isinstance(data, np.ndarray)
