"""A loaded model package, ready to predict on any of the tabular input kinds.

Input columns are put in the order the model reads them: the signature's, else the names
the model was fitted with. A 2-D numpy array skips all of that and goes straight to the
native predictor, as does :meth:`LoadedModel.predict_numpy`, the hot path.
"""

from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gyre.errors import InvalidArgument
from gyre.models.signature import INPUT_KINDS

if TYPE_CHECKING:
    from gyre.models.flavors import Predictor
    from gyre.models.package import ModelMeta


class LoadedModel:
    """A model package in memory.

    Attributes:
        meta: the package's :class:`ModelMeta`.
        flavor: the flavor name (``sklearn``, ``lightgbm``, ``xgboost``, ``pyfunc``).
        signature: the package's :class:`Signature`, or None if it was saved without one.
        raw: the native model (``lightgbm.Booster``, ``xgboost.Booster``, the estimator, ...).
        input_names: the column order the model reads, or None if unknown.
        path: the package directory it was loaded from.
    """

    def __init__(self, meta: ModelMeta, predictor: Predictor, path: Path | None = None) -> None:
        self.meta = meta
        self.flavor = meta.flavor
        self.signature = meta.signature
        self.raw = predictor.raw
        self.path = path
        self._predictor = predictor
        inputs = self.signature.inputs if self.signature else []
        self.input_names: list[str] | None = [c.name for c in inputs] or predictor.feature_names
        self._categories = [c.name for c in inputs if c.dtype == "category"]
        self._numbers = [c.name for c in inputs if c.dtype.startswith(("float", "int", "uint", "bool"))]

    def __repr__(self) -> str:
        return f"<LoadedModel flavor={self.flavor} inputs={self.input_names} path={self.path}>"

    def predict_numpy(self, x: np.ndarray) -> np.ndarray:
        """Predict on a 2-D array whose columns are already in the model's order; no checks."""
        return self._predictor.predict_numpy(x)

    def predict(self, data: Any) -> np.ndarray:
        """Predict on a pandas DataFrame, a dict of column -> list/array, a list of row dicts, or a 2-D array.

        Returns:
            A 1-D array (regression, binary P(class 1), labels) or an (n, classes) array for
            multiclass probabilities.

        Raises:
            InvalidArgument: a column the model reads is missing, a value is not numeric where
                the model needs numbers, or ``data`` is not one of the accepted kinds.
        """
        if isinstance(data, np.ndarray):
            return self._predict_array(data)
        pd = sys.modules.get("pandas")  # a DataFrame can only exist if pandas is imported
        if pd is not None and isinstance(data, pd.DataFrame):
            table: _Table = _FrameTable(data)
        elif isinstance(data, Mapping):
            table = _ColumnsTable(data)
        elif isinstance(data, Sequence) and not isinstance(data, str | bytes):
            table = _RowsTable(data)
        else:
            raise InvalidArgument(f"Cannot predict on {type(data).__name__}; pass {INPUT_KINDS}.")
        if table.rows == 0:
            raise InvalidArgument("No rows to predict on.")
        names = self.input_names or table.names()
        missing = table.missing(names)
        if missing:
            raise InvalidArgument(
                f"Input is missing column{'s' if len(missing) > 1 else ''} "
                f"{', '.join(map(repr, missing))}; the model reads {names}."
            )
        if self._predictor.wants_frame:
            frame = table.frame(names)
            todo = [c for c in self._categories if str(frame[c].dtype) != "category"]
            # A numeric column of nulls only (a feature the store has no value for) comes out as
            # objects, which the predictor would take for text.
            nulls = [c for c in self._numbers if frame[c].dtype == object]
            if todo or nulls:
                frame = frame.astype({**dict.fromkeys(todo, "category"), **dict.fromkeys(nulls, "float64")})
            return self._predictor.predict_frame(frame)
        return self._predictor.predict_numpy(table.floats(names))

    def _predict_array(self, x: np.ndarray) -> np.ndarray:
        if x.ndim != 2:
            raise InvalidArgument(
                f"A numpy input must be 2-D (rows x columns), got shape {x.shape}; "
                "reshape a single row with x.reshape(1, -1)."
            )
        names = self.input_names
        if names is not None and x.shape[1] != len(names):
            raise InvalidArgument(
                f"The model reads {len(names)} columns {names}, got an array with {x.shape[1]}."
            )
        return self._predictor.predict_numpy(x)


class _Table(ABC):
    """One tabular input kind: column lookup, and conversion to what the predictor takes."""

    rows: int

    @abstractmethod
    def names(self) -> list[str]:
        """The input's own column order (used when the model's is unknown)."""

    @abstractmethod
    def missing(self, names: list[str]) -> list[str]:
        """Those of ``names`` the input lacks (in any row)."""

    @abstractmethod
    def frame(self, names: list[str]) -> Any:
        """A pandas DataFrame of exactly ``names``, in that order."""

    @abstractmethod
    def floats(self, names: list[str]) -> np.ndarray:
        """A float64 (rows, len(names)) array; None becomes NaN, text raises InvalidArgument."""


class _FrameTable(_Table):
    def __init__(self, df: Any) -> None:
        self.df = df
        self.rows = len(df)

    def names(self) -> list[str]:
        return list(self.df.columns)  # as they are, so non-text labels still index the frame

    def missing(self, names: list[str]) -> list[str]:
        return [n for n in names if n not in self.df.columns]

    def frame(self, names: list[str]) -> Any:
        return self.df if list(self.df.columns) == names else self.df[names]

    def floats(self, names: list[str]) -> np.ndarray:
        try:
            # C order, as the other kinds give: a BLAS product over a column-major copy can
            # differ in the last bit, and the same rows must predict the same in any form
            return np.ascontiguousarray(self.df[names].to_numpy(dtype=np.float64, na_value=np.nan))
        except (TypeError, ValueError):
            for name in names:  # find the column to blame
                _float_column(self.df[name].tolist(), name)
            raise


class _ColumnsTable(_Table):
    def __init__(self, data: Mapping[str, Any]) -> None:
        lengths = set()
        for name, values in data.items():
            if isinstance(values, str | bytes) or not hasattr(values, "__len__"):
                raise InvalidArgument(
                    f"Column {name!r} holds a {type(values).__name__}, not a list or array. "
                    "A dict input maps each column to its values; pass a single row as [row]."
                )
            lengths.add(len(values))
        if len(lengths) > 1:
            raise InvalidArgument(f"The input's columns differ in length: {sorted(lengths)}.")
        self.data = data
        self.rows = lengths.pop() if lengths else 0

    def names(self) -> list[str]:
        return list(self.data)

    def missing(self, names: list[str]) -> list[str]:
        return [n for n in names if n not in self.data]

    def frame(self, names: list[str]) -> Any:
        import pandas as pd

        return pd.DataFrame({n: self.data[n] for n in names})

    def floats(self, names: list[str]) -> np.ndarray:
        out = np.empty((self.rows, len(names)), dtype=np.float64)
        for j, name in enumerate(names):
            out[:, j] = _float_column(self.data[name], name)
        return out


class _RowsTable(_Table):
    def __init__(self, rows: Sequence[Any]) -> None:
        for i, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise InvalidArgument(f"Row {i} is a {type(row).__name__}, not a dict; pass {INPUT_KINDS}.")
        self.data = rows
        self.rows = len(rows)

    def names(self) -> list[str]:
        return list(self.data[0]) if self.data else []

    def missing(self, names: list[str]) -> list[str]:
        return [n for n in names if any(n not in row for row in self.data)]

    def frame(self, names: list[str]) -> Any:
        import pandas as pd

        return pd.DataFrame([[row[n] for n in names] for row in self.data], columns=names)

    def floats(self, names: list[str]) -> np.ndarray:
        try:
            return np.array([[row[n] for n in names] for row in self.data], dtype=np.float64)
        except (TypeError, ValueError):  # None or text somewhere: convert column by column
            out = np.empty((self.rows, len(names)), dtype=np.float64)
            for j, name in enumerate(names):
                out[:, j] = _float_column([row[name] for row in self.data], name)
            return out


def _float_column(values: Any, name: str) -> np.ndarray:
    """``values`` as float64, ``None`` as NaN; raises InvalidArgument naming the column otherwise."""
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        pass
    converted = []
    for v in values:
        try:
            converted.append(np.nan if v is None else float(v))
        except (TypeError, ValueError):
            raise InvalidArgument(
                f"Column {name!r} holds {v!r}, which is not a number; this model reads numeric columns."
            ) from None
    return np.asarray(converted, dtype=np.float64)
