"""Gates: what a produced model must pass before it is registered as ``challenger``.

Declared on the pipeline (``gates=[...]``), evaluated after every step succeeded, each with a
reason that is recorded on the pipeline run whichever way it goes:

- :class:`MetricThreshold` — a logged metric against a bound (``auc >= 0.8``);
- :class:`BeatsChampion` — the model against the current ``champion``, both scored on this
  run's holdout (or, without a holdout, against the champion's recorded metric);
- :class:`DataCheck` — training rows and label balance;
- :class:`DemographicParity`, :class:`EqualOpportunity` — fairness across a sensitive column.

Data outputs are the pipeline's named results (``"train"``, ``"holdout"`` by default): a
pandas DataFrame, a pyarrow Table, a training set or a dict of columns. The label column is
the gate's ``label``, else the pipeline's.

Why numpy and not fairlearn for the fairness gates: each is a difference of per-group rates,
a few lines here, while fairlearn would add scikit-learn, pandas and scipy as requirements of
every install for two functions.
"""

from __future__ import annotations

import math
import operator
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from gyre.errors import GyreError, InvalidArgument

if TYPE_CHECKING:
    from gyre.models.loaded import LoadedModel
    from gyre.models.registry import ModelVersionInfo

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
    "==": operator.eq,
    "!=": operator.ne,
}
LOWER_IS_BETTER = ("loss", "logloss", "rmse", "mse", "mae", "error")


class GateInputError(GyreError):
    """What a gate needs is not there (an output, a label column, the model); the gate fails."""


@dataclass
class GateResult:
    """One gate's verdict and why."""

    gate: str
    passed: bool
    reason: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"gate": self.gate, "passed": self.passed, "reason": self.reason, "details": self.details}


class GateContext:
    """What gates read: the run's named outputs and metrics, the candidate and the champion."""

    def __init__(
        self,
        *,
        outputs: Mapping[str, Any],
        metrics: Mapping[str, float],
        label: str | None = None,
        model_name: str | None = None,
        candidate: Callable[[], LoadedModel | None] = lambda: None,
        champion: Callable[[], tuple[ModelVersionInfo, LoadedModel] | None] = lambda: None,
    ) -> None:
        self.outputs = outputs
        self.metrics = metrics
        self.label = label
        self.model_name = model_name
        self._candidate = candidate
        self._champion = champion
        self._memo: dict[Any, Any] = {}

    def output(self, name: str) -> Any:
        if name not in self.outputs:
            raise GateInputError(
                f"the pipeline returned no output named '{name}' "
                f"(it returned: {', '.join(self.outputs) or 'none'})"
            )
        return self.outputs[name]

    def label_for(self, gate_label: str | None) -> str:
        label = gate_label or self.label
        if not label:
            raise GateInputError("no label column: pass label=... to the gate or to @gyre.pipeline")
        return label

    def candidate(self) -> LoadedModel:
        if "candidate" not in self._memo:
            self._memo["candidate"] = self._candidate()
        model = self._memo["candidate"]
        if model is None:
            raise GateInputError("the pipeline returned no 'model' output")
        return model

    def champion(self) -> tuple[ModelVersionInfo, LoadedModel] | None:
        if "champion" not in self._memo:
            self._memo["champion"] = self._champion()
        champion: tuple[ModelVersionInfo, LoadedModel] | None = self._memo["champion"]
        return champion

    def columns(self, data: str) -> dict[str, np.ndarray]:
        key = ("columns", data)
        if key not in self._memo:
            self._memo[key] = columns_of(self.output(data), data)
        columns: dict[str, np.ndarray] = self._memo[key]
        return columns

    def predict(self, model: LoadedModel, which: str, data: str, drop: Sequence[str]) -> np.ndarray:
        """``model``'s predictions on output ``data`` without the ``drop`` columns (memoized per model)."""
        key = ("predict", which, data, tuple(drop))
        if key not in self._memo:
            cols = {k: v for k, v in self.columns(data).items() if k not in drop}
            self._memo[key] = np.asarray(model.predict(cols))
        predictions: np.ndarray = self._memo[key]
        return predictions


class Gate(ABC):
    """A check a pipeline's model must pass. ``check`` must not raise for a failed check."""

    @abstractmethod
    def describe(self) -> str:
        """A short human-readable form, e.g. ``auc >= 0.8``."""

    @abstractmethod
    def spec(self) -> dict[str, Any]:
        """The gate as JSON, for the pipeline's registered spec."""

    @abstractmethod
    def check(self, ctx: GateContext) -> GateResult:
        """Decide; a missing input raises :class:`GateInputError` (the runner fails the gate)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()})"

    def evaluate(self, ctx: GateContext) -> GateResult:
        """:meth:`check`, with a missing input or an error turned into a failed result."""
        try:
            return self.check(ctx)
        except GateInputError as exc:
            return GateResult(self.describe(), False, f"cannot check: {exc.message}")
        except Exception as exc:
            return GateResult(self.describe(), False, f"the check raised {type(exc).__name__}: {exc}")


class MetricThreshold(Gate):
    """A metric the run logged compared with a bound: ``MetricThreshold("auc", ">=", 0.8)``.

    Metrics are those the steps logged (``current_step().log_metric``) and the ``"metrics"``
    output's, the latter winning.
    """

    def __init__(self, metric: str, op: str, value: float) -> None:
        if op not in OPERATORS:
            raise InvalidArgument(f"MetricThreshold operator {op!r} is not one of {', '.join(OPERATORS)}.")
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise InvalidArgument(f"MetricThreshold value must be a number, got {value!r}.")
        self.metric, self.op, self.value = metric, op, float(value)

    def describe(self) -> str:
        return f"{self.metric} {self.op} {self.value:g}"

    def spec(self) -> dict[str, Any]:
        return {"kind": "metric_threshold", "metric": self.metric, "op": self.op, "value": self.value}

    def check(self, ctx: GateContext) -> GateResult:
        if self.metric not in ctx.metrics:
            logged = ", ".join(sorted(ctx.metrics)) or "none"
            raise GateInputError(f"metric '{self.metric}' was not logged (logged: {logged})")
        actual = float(ctx.metrics[self.metric])
        passed = not math.isnan(actual) and OPERATORS[self.op](actual, self.value)
        verdict = "" if passed else f", needs {self.op} {self.value:g}"
        return GateResult(
            self.describe(), passed, f"{self.metric} = {actual:.6g}{verdict}", {"value": actual}
        )


class BeatsChampion(Gate):
    """The model must beat the current ``champion`` by ``margin`` on ``metric``.

    ``margin`` > 0 requires an improvement of at least that much; ``margin`` < 0 allows the
    model to be worse by at most ``-margin``. With ``holdout`` (an output name) both models
    are scored on those same rows; with ``holdout=None`` the run's metric is compared with
    the one recorded on the champion's version. No champion yet: the gate passes.

    Args:
        metric: ``auc``, ``accuracy``, ``f1``, ``precision``, ``recall``, ``logloss``, ``rmse``,
            ``mae``, ``r2``, or any name with ``metric_fn``.
        metric_fn: ``fn(y_true, y_pred) -> float`` for other metrics.
        higher_is_better: default from the name (loss, error, rmse, mae: lower is better).
        exclude: columns of the holdout that are not model inputs (the label always is excluded).
    """

    def __init__(
        self,
        metric: str,
        margin: float = 0.0,
        holdout: str | None = "holdout",
        *,
        label: str | None = None,
        metric_fn: Callable[[np.ndarray, np.ndarray], float] | None = None,
        higher_is_better: bool | None = None,
        exclude: Sequence[str] = (),
    ) -> None:
        if metric_fn is None and metric not in METRICS and holdout is not None:
            raise InvalidArgument(
                f"BeatsChampion cannot score '{metric}' on a holdout; use one of {', '.join(METRICS)} "
                "or pass metric_fn=."
            )
        self.metric, self.margin, self.holdout = metric, float(margin), holdout
        self.label, self.metric_fn, self.exclude = label, metric_fn, tuple(exclude)
        self.higher_is_better = (
            higher_is_better if higher_is_better is not None else not metric.lower().endswith(LOWER_IS_BETTER)
        )

    def describe(self) -> str:
        sign = "+" if self.margin >= 0 else "-"
        return f"{self.metric} beats champion {sign} {abs(self.margin):g}"

    def spec(self) -> dict[str, Any]:
        return {
            "kind": "beats_champion",
            "metric": self.metric,
            "margin": self.margin,
            "holdout": self.holdout,
            "label": self.label,
            "higher_is_better": self.higher_is_better,
            "metric_fn": getattr(self.metric_fn, "__qualname__", None),
        }

    def check(self, ctx: GateContext) -> GateResult:
        champion = ctx.champion()
        if champion is None:
            return GateResult(
                self.describe(), True, f"no champion of '{ctx.model_name}' yet: nothing to beat"
            )
        info, champ_model = champion
        if self.holdout is None:
            if self.metric not in ctx.metrics:
                raise GateInputError(f"metric '{self.metric}' was not logged")
            if self.metric not in info.metrics:
                raise GateInputError(f"champion version {info.version} has no recorded '{self.metric}'")
            mine, theirs = float(ctx.metrics[self.metric]), float(info.metrics[self.metric])
            how = "recorded metrics (not re-scored: pass holdout= to score both on the same rows)"
        else:
            label = ctx.label_for(self.label)
            cols = ctx.columns(self.holdout)
            if label not in cols:
                raise GateInputError(f"output '{self.holdout}' has no label column '{label}'")
            y = cols[label]
            drop = (label, *self.exclude)
            score = self.metric_fn or METRICS[self.metric]
            mine = float(score(y, ctx.predict(ctx.candidate(), "candidate", self.holdout, drop)))
            try:
                theirs = float(score(y, ctx.predict(champ_model, "champion", self.holdout, drop)))
            except GyreError as exc:
                raise GateInputError(
                    f"the champion (version {info.version}) cannot score '{self.holdout}': {exc}"
                ) from None
            how = f"both scored on '{self.holdout}' ({len(y)} rows)"
        diff = mine - theirs if self.higher_is_better else theirs - mine
        passed = diff >= self.margin - 1e-12
        need = (
            f"an improvement of at least {self.margin:g}"
            if self.margin >= 0
            else f"at most {-self.margin:g} worse"
        )
        reason = f"{self.metric} {mine:.6g} vs champion v{info.version} {theirs:.6g}, {how}; " + (
            "passes" if passed else f"needs {need}"
        )
        return GateResult(
            self.describe(),
            passed,
            reason,
            {"candidate": mine, "champion": theirs, "champion_version": info.version},
        )


class DataCheck(Gate):
    """The training data must be big and balanced enough.

    Args:
        min_rows: at least this many rows.
        min_label_fraction: the rarest label value must be at least this share of rows.
        max_missing_fraction: no column may have a larger share of missing values (None/NaN).
        data: the output holding the data (default ``"train"``).
        label: the label column (default: the pipeline's ``label``).
    """

    def __init__(
        self,
        min_rows: int | None = None,
        min_label_fraction: float | None = None,
        *,
        max_missing_fraction: float | None = None,
        data: str = "train",
        label: str | None = None,
    ) -> None:
        if min_rows is None and min_label_fraction is None and max_missing_fraction is None:
            raise InvalidArgument(
                "DataCheck checks nothing: pass min_rows, min_label_fraction or max_missing_fraction."
            )
        for name, v in (
            ("min_label_fraction", min_label_fraction),
            ("max_missing_fraction", max_missing_fraction),
        ):
            if v is not None and not 0 <= v <= 1:
                raise InvalidArgument(f"DataCheck {name} is a fraction between 0 and 1, got {v!r}.")
        self.min_rows, self.min_label_fraction = min_rows, min_label_fraction
        self.max_missing_fraction, self.data, self.label = max_missing_fraction, data, label

    def describe(self) -> str:
        parts = []
        if self.min_rows is not None:
            parts.append(f"rows >= {self.min_rows}")
        if self.min_label_fraction is not None:
            parts.append(f"rarest label >= {self.min_label_fraction:g}")
        if self.max_missing_fraction is not None:
            parts.append(f"missing <= {self.max_missing_fraction:g}")
        return f"data '{self.data}': " + ", ".join(parts)

    def spec(self) -> dict[str, Any]:
        return {
            "kind": "data_check",
            "min_rows": self.min_rows,
            "min_label_fraction": self.min_label_fraction,
            "max_missing_fraction": self.max_missing_fraction,
            "data": self.data,
            "label": self.label,
        }

    def check(self, ctx: GateContext) -> GateResult:
        cols = ctx.columns(self.data)
        rows = len(next(iter(cols.values()))) if cols else 0
        problems, found = [], [f"{rows} rows"]
        details: dict[str, Any] = {"rows": rows}
        if self.min_rows is not None and rows < self.min_rows:
            problems.append(f"{rows} rows, needs at least {self.min_rows}")
        if self.min_label_fraction is not None:
            label = ctx.label_for(self.label)
            if label not in cols:
                raise GateInputError(f"output '{self.data}' has no label column '{label}'")
            values, counts = np.unique(_present(cols[label]), return_counts=True)
            share = float(counts.min() / rows) if rows and len(values) > 1 else 0.0
            rarest = values[int(np.argmin(counts))].item() if len(values) else None
            details["rarest_label"], details["rarest_fraction"] = rarest, share
            found.append(f"rarest label {rarest!r} is {share:.3g} of rows")
            if share < self.min_label_fraction:
                problems.append(
                    f"label '{label}' rarest value {rarest!r} is {share:.3g} of rows, "
                    f"needs {self.min_label_fraction:g}"
                    if len(values) > 1
                    else f"label '{label}' has a single value {rarest!r}"
                )
        if self.max_missing_fraction is not None and rows:
            worst, share = max(((c, _missing_share(v)) for c, v in cols.items()), key=lambda kv: kv[1])
            details["most_missing"], details["missing_fraction"] = worst, share
            if share > self.max_missing_fraction:
                problems.append(
                    f"column '{worst}' is {share:.3g} missing, allows {self.max_missing_fraction:g}"
                )
        if problems:
            return GateResult(self.describe(), False, "; ".join(problems), details)
        return GateResult(self.describe(), True, ", ".join(found), details)


class _GroupGate(Gate):
    kind = ""
    rate_name = ""

    def __init__(
        self,
        column: str,
        max_diff: float,
        *,
        data: str = "holdout",
        label: str | None = None,
        threshold: float = 0.5,
        exclude: Sequence[str] = (),
    ) -> None:
        if not 0 <= max_diff <= 1:
            raise InvalidArgument(
                f"{type(self).__name__} max_diff is a rate difference in [0, 1], got {max_diff!r}."
            )
        self.column, self.max_diff, self.data = column, float(max_diff), data
        self.label, self.threshold, self.exclude = label, float(threshold), tuple(exclude)

    def describe(self) -> str:
        return f"{self.rate_name} difference across '{self.column}' <= {self.max_diff:g}"

    def spec(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "column": self.column,
            "max_diff": self.max_diff,
            "data": self.data,
            "label": self.label,
            "threshold": self.threshold,
        }

    @abstractmethod
    def rates(self, groups: np.ndarray, positive: np.ndarray, y: np.ndarray | None) -> dict[Any, float]: ...

    needs_label = False

    def check(self, ctx: GateContext) -> GateResult:
        cols = ctx.columns(self.data)
        if self.column not in cols:
            raise GateInputError(f"output '{self.data}' has no column '{self.column}'")
        label = ctx.label_for(self.label) if self.needs_label or (self.label or ctx.label) else None
        if self.needs_label and label not in cols:
            raise GateInputError(f"output '{self.data}' has no label column '{label}'")
        drop = tuple(c for c in (label, *self.exclude) if c)
        predictions = ctx.predict(ctx.candidate(), "candidate", self.data, drop)
        positive = _positive(predictions, self.threshold)
        y = _positive(cols[label], 0.5) if self.needs_label and label else None
        rates = self.rates(np.asarray(cols[self.column]), positive, y)
        if len(rates) < 2:
            return GateResult(
                self.describe(), True, f"only one group in '{self.column}': nothing to compare", {}
            )
        diff = max(rates.values()) - min(rates.values())
        shown = ", ".join(f"{k}={v:.3g}" for k, v in sorted(rates.items(), key=lambda kv: str(kv[0])))
        passed = diff <= self.max_diff + 1e-12
        reason = f"{self.rate_name} by '{self.column}': {shown}; difference {diff:.3g}" + (
            "" if passed else f" exceeds {self.max_diff:g}"
        )
        return GateResult(
            self.describe(),
            passed,
            reason,
            {"rates": {str(k): v for k, v in rates.items()}, "difference": diff},
        )


class DemographicParity(_GroupGate):
    """Positive-prediction rates across the groups of ``column`` may differ by at most ``max_diff``.

    A prediction counts as positive at or above ``threshold`` (probabilities) or when it is 1.
    """

    kind = "demographic_parity"
    rate_name = "positive rate"

    def rates(self, groups: np.ndarray, positive: np.ndarray, y: np.ndarray | None) -> dict[Any, float]:
        return {_key(g): float(positive[groups == g].mean()) for g in np.unique(_present(groups))}


class EqualOpportunity(_GroupGate):
    """True-positive rates (among rows labelled positive) across ``column`` differ by at most ``max_diff``."""

    kind = "equal_opportunity"
    rate_name = "true-positive rate"
    needs_label = True

    def rates(self, groups: np.ndarray, positive: np.ndarray, y: np.ndarray | None) -> dict[Any, float]:
        assert y is not None
        out = {}
        for g in np.unique(_present(groups)):
            mask = (groups == g) & y
            if mask.any():
                out[_key(g)] = float(positive[mask].mean())
        return out


# -- data ---------------------------------------------------------------------------------


def columns_of(data: Any, name: str = "data") -> dict[str, np.ndarray]:
    """A table as ``{column: 1-D array}``: pandas, pyarrow, a training set, or a dict of columns."""
    if hasattr(data, "table") and hasattr(data, "dataset_versions"):  # a TrainingSet
        data = data.table
    if hasattr(data, "to_numpy") and hasattr(data, "columns") and hasattr(data, "iloc"):  # pandas
        return {str(c): data[c].to_numpy() for c in data.columns}
    if hasattr(data, "column_names") and hasattr(data, "column"):  # pyarrow
        return {c: data.column(c).to_numpy(zero_copy_only=False) for c in data.column_names}
    if isinstance(data, Mapping):
        return {str(k): np.asarray(v) for k, v in data.items()}
    raise GateInputError(
        f"output '{name}' is a {type(data).__name__}; gates read a pandas DataFrame, a pyarrow Table, "
        "a training set or a dict of columns"
    )


def _present(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values)
    if values.dtype.kind == "f":
        return values[~np.isnan(values)]
    if values.dtype.kind == "O":
        return np.asarray([v for v in values if v is not None and v == v])
    return values


def _missing_share(values: np.ndarray) -> float:
    values = np.asarray(values)
    if len(values) == 0:
        return 0.0
    return 1.0 - len(_present(values)) / len(values)


def _positive(values: np.ndarray, threshold: float) -> np.ndarray:
    values = np.asarray(values)
    if values.ndim == 2:  # multiclass probabilities: class 1 is "positive" only for two columns
        values = values[:, -1]
    if values.dtype.kind == "b":
        return values
    return values.astype(float) >= threshold


def _key(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


# -- metrics ------------------------------------------------------------------------------


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties counted half); needs both classes."""
    y = _positive(y, 0.5)
    score = np.asarray(score, dtype=float)
    if score.ndim == 2:
        score = score[:, -1]
    n1 = int(y.sum())
    n0 = len(y) - n1
    if n1 == 0 or n0 == 0:
        raise GateInputError("AUC needs both classes among the labels")
    _, inverse, counts = np.unique(score, return_inverse=True, return_counts=True)
    average_rank = np.cumsum(counts) - (counts - 1) / 2.0
    ranks = average_rank[inverse]
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def _labels(y: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred)
    if pred.ndim == 2:
        return np.asarray(y), pred.argmax(axis=1)
    if pred.dtype.kind == "f" and np.all((pred >= 0) & (pred <= 1)) and set(np.unique(y).tolist()) <= {0, 1}:
        return np.asarray(y).astype(int), (pred >= 0.5).astype(int)
    return np.asarray(y), pred


def accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    t, p = _labels(y, pred)
    return float((t == p).mean())


def _confusion(y: np.ndarray, pred: np.ndarray) -> tuple[int, int, int]:
    t, p = _labels(y, pred)
    t, p = t.astype(bool), p.astype(bool)
    return int((t & p).sum()), int((~t & p).sum()), int((t & ~p).sum())


def precision(y: np.ndarray, pred: np.ndarray) -> float:
    tp, fp, _ = _confusion(y, pred)
    return tp / (tp + fp) if tp + fp else 0.0


def recall(y: np.ndarray, pred: np.ndarray) -> float:
    tp, _, fn = _confusion(y, pred)
    return tp / (tp + fn) if tp + fn else 0.0


def f1(y: np.ndarray, pred: np.ndarray) -> float:
    p, r = precision(y, pred), recall(y, pred)
    return 2 * p * r / (p + r) if p + r else 0.0


def logloss(y: np.ndarray, pred: np.ndarray) -> float:
    p = np.clip(np.asarray(pred, dtype=float), 1e-15, 1 - 1e-15)
    t = np.asarray(y, dtype=float)
    return float(-(t * np.log(p) + (1 - t) * np.log(1 - p)).mean())


def rmse(y: np.ndarray, pred: np.ndarray) -> float:
    return float(np.sqrt(((np.asarray(y, float) - np.asarray(pred, float)) ** 2).mean()))


def mae(y: np.ndarray, pred: np.ndarray) -> float:
    return float(np.abs(np.asarray(y, float) - np.asarray(pred, float)).mean())


def r2(y: np.ndarray, pred: np.ndarray) -> float:
    t, p = np.asarray(y, float), np.asarray(pred, float)
    total = ((t - t.mean()) ** 2).sum()
    return float(1 - ((t - p) ** 2).sum() / total) if total else 0.0


METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "auc": roc_auc,
    "accuracy": accuracy,
    "f1": f1,
    "precision": precision,
    "recall": recall,
    "logloss": logloss,
    "rmse": rmse,
    "mae": mae,
    "r2": r2,
}
