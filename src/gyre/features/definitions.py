"""Feature definitions: entities, feature views over lake datasets, on-demand features.

One definition of each feature serves training (point-in-time retrieval) and serving (the
online store), so the two compute the same values. A feature is referred to as
``"view:feature"``, e.g. ``"user_activity:amount_sum_1h"``.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, ClassVar

from gyre.definitions import Definition, check_name, format_duration, parse_duration
from gyre.errors import InvalidArgument

AGGREGATIONS = ("count", "sum", "mean", "min", "max", "count_distinct")


class Entity(Definition):
    """What features describe (a user, a merchant), identified by its join key columns."""

    kind: ClassVar[str] = "entity"

    def __init__(self, name: str, *, join_keys: Iterable[str], description: str = "") -> None:
        self.name = check_name("Entity", name)
        self.join_keys = list(join_keys)
        if not self.join_keys or not all(isinstance(k, str) and k for k in self.join_keys):
            raise InvalidArgument(
                f"Entity '{name}' needs join_keys, a list of column names such as ['user_id']."
            )
        self.description = description

    def spec(self) -> dict[str, Any]:
        return {"join_keys": self.join_keys, "description": self.description}

    def __repr__(self) -> str:
        return f"Entity({self.name!r}, join_keys={self.join_keys})"


@dataclass(frozen=True)
class Field:
    """A column feature: the entity's latest value of ``column`` (default: ``name``)."""

    name: str
    dtype: str | None = None
    column: str | None = None
    description: str = ""

    def __post_init__(self) -> None:
        check_name("Feature", self.name)

    def spec(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": "column",
            "column": self.column or self.name,
            "dtype": self.dtype,
            "description": self.description,
        }


@dataclass(frozen=True)
class Aggregate:
    """A window aggregation per entity: ``function`` of ``column`` over the last ``window``.

    At time t a window of length w covers the event times in (t - w, t]. ``count`` counts
    rows (nulls included); the other functions skip nulls; ``count_distinct`` counts distinct
    non-null values; over an empty window ``count`` and ``count_distinct`` are 0 and the others
    null.
    """

    column: str
    function: str
    window: str | int | timedelta
    name: str | None = None
    description: str = ""
    window_s: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        if self.function not in AGGREGATIONS:
            raise InvalidArgument(
                f"Unknown aggregation {self.function!r} on '{self.column}': "
                f"use one of {', '.join(AGGREGATIONS)}."
            )
        window = parse_duration(self.window, f"window of {self.function}({self.column})")
        if window.total_seconds() != int(window.total_seconds()):
            raise InvalidArgument(f"Window {self.window!r} must be a whole number of seconds.")
        object.__setattr__(self, "window_s", int(window.total_seconds()))
        if self.name is None:
            object.__setattr__(self, "name", f"{self.column}_{self.function}_{format_duration(window)}")
        check_name("Feature", self.name)

    def spec(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": "aggregate",
            "column": self.column,
            "function": self.function,
            "window_s": self.window_s,
            "dtype": "int64" if self.function in ("count", "count_distinct") else None,
            "description": self.description,
        }


class FeatureView(Definition):
    """Features of one entity computed from one lake dataset.

    Args:
        name: the view's name, the first half of its features' references.
        entity: the entity the rows belong to; its join keys must be columns of ``source``.
        source: the dataset (a :class:`gyre.Dataset` or its name); its event-time column
            orders the rows.
        features: :class:`Field` and :class:`Aggregate` items.
        ttl: how long a column feature's value stays valid after its event time (None: forever).
        online: whether materialization keeps these features in the online store.
        max_lag: how far the newest materialized event may trail the clock before the view is
            reported stale (``gyre features show``, the ``gyre_feature_view_stale`` metric).
        description, owner, tags: shown by ``gyre features show``.
    """

    kind: ClassVar[str] = "feature_view"

    def __init__(
        self,
        name: str,
        *,
        entity: Entity,
        source: Any,
        features: Iterable[Field | Aggregate],
        ttl: str | int | timedelta | None = None,
        online: bool = True,
        max_lag: str | int | timedelta | None = None,
        description: str = "",
        owner: str = "",
        tags: Mapping[str, str] | None = None,
    ) -> None:
        self.name = check_name("Feature view", name)
        if not isinstance(entity, Entity):
            raise InvalidArgument(f"Feature view '{name}': entity must be a gyre.Entity, got {entity!r}.")
        self.entity = entity
        source_name = source if isinstance(source, str) else getattr(source, "name", None)
        if not isinstance(source_name, str):
            raise InvalidArgument(
                f"Feature view '{name}': source must be a gyre.Dataset or a dataset name, got {source!r}."
            )
        self.source: str = source_name
        self.source_event_time: str | None = getattr(source, "event_time", None)
        self.features = list(features)
        if not self.features:
            raise InvalidArgument(
                f"Feature view '{name}' has no features; add gyre.Field or gyre.Aggregate items."
            )
        names = [f.name for f in self.features]
        if dupes := sorted({n for n in names if n is not None and names.count(n) > 1}):
            raise InvalidArgument(f"Feature view '{name}' defines {', '.join(dupes)} more than once.")
        for f in self.features:
            if not isinstance(f, Field | Aggregate):
                raise InvalidArgument(f"Feature view '{name}': {f!r} is not a gyre.Field or gyre.Aggregate.")
        self.ttl = parse_duration(ttl, f"ttl of feature view '{name}'") if ttl is not None else None
        self.online = bool(online)
        self.max_lag = (
            parse_duration(max_lag, f"max_lag of feature view '{name}'") if max_lag is not None else None
        )
        self.description, self.owner = description, owner
        self.tags = {str(k): str(v) for k, v in (tags or {}).items()}

    def spec(self) -> dict[str, Any]:
        return {
            "entity": self.entity.name,
            "join_keys": self.entity.join_keys,
            "source": self.source,
            "event_time": self.source_event_time,
            "ttl_s": int(self.ttl.total_seconds()) if self.ttl else None,
            "features": [f.spec() for f in self.features],
            "online": self.online,
            "max_lag_s": int(self.max_lag.total_seconds()) if self.max_lag else None,
            "description": self.description,
            "owner": self.owner,
            "tags": self.tags,
        }

    def references(self) -> list[tuple[str, str]]:
        return [("entity", self.entity.name), ("dataset", self.source)]

    def __repr__(self) -> str:
        return f"FeatureView({self.name!r}, entity={self.entity.name!r}, source={self.source!r})"


class OnDemandFeature(Definition):
    """A feature computed per row from request values and other features, by one function
    that runs unchanged in training retrieval and in serving. Made by :func:`on_demand`."""

    kind: ClassVar[str] = "on_demand_feature"

    def __init__(
        self, fn: Callable[..., Any], *, view: str, inputs: Iterable[str], dtype: str, description: str = ""
    ) -> None:
        check_name("On-demand view", view)
        check_name("Feature", fn.__name__)
        self.name = f"{view}:{fn.__name__}"
        self.fn = fn
        self.inputs = list(inputs)
        params = list(inspect.signature(fn).parameters)
        if len(params) != len(self.inputs):
            raise InvalidArgument(
                f"On-demand feature '{self.name}' takes {len(params)} argument(s) "
                f"({', '.join(params)}) but declares {len(self.inputs)} input(s)."
            )
        self.dtype = dtype
        self.description = description or (inspect.getdoc(fn) or "").split("\n")[0]

    @property
    def request_inputs(self) -> list[str]:
        """Inputs that come with the request (names without a ``view:`` prefix)."""
        return [i for i in self.inputs if ":" not in i]

    @property
    def feature_inputs(self) -> list[str]:
        return [i for i in self.inputs if ":" in i]

    def code_hash(self) -> str:
        try:
            code = inspect.getsource(self.fn)
        except (OSError, TypeError):
            code = self.fn.__code__.co_code.hex()
        return hashlib.sha256(code.encode()).hexdigest()[:16]

    def __call__(self, *args: Any) -> Any:
        return self.fn(*args)

    def spec(self) -> dict[str, Any]:
        return {
            "inputs": self.inputs,
            "dtype": self.dtype,
            "code_hash": self.code_hash(),
            "description": self.description,
        }

    def references(self) -> list[tuple[str, str]]:
        return [("feature_view", i.split(":", 1)[0]) for i in self.feature_inputs]

    def __repr__(self) -> str:
        return f"OnDemandFeature({self.name!r}, inputs={self.inputs})"


def on_demand(
    *, view: str, inputs: Iterable[str], dtype: str, description: str = ""
) -> Callable[[Callable[..., Any]], OnDemandFeature]:
    """Declare an on-demand feature ``"view:function_name"``.

    The function gets one argument per input, in order (a request field's value, or a
    feature's value for inputs written ``"view:feature"``), and returns the feature's value.

    Example::

        @gyre.on_demand(
            view="payment_risk", inputs=["amount", "user_activity:amount_mean_7d"], dtype="float64"
        )
        def amount_vs_mean(amount, mean_7d):
            return amount / mean_7d if mean_7d else None
    """

    def wrap(fn: Callable[..., Any]) -> OnDemandFeature:
        return OnDemandFeature(fn, view=view, inputs=inputs, dtype=dtype, description=description)

    return wrap


def parse_ref(ref: str) -> tuple[str, str]:
    """``"view:feature"`` → ``("view", "feature")``."""
    if not isinstance(ref, str) or ref.count(":") != 1 or not all(ref.split(":")):
        raise InvalidArgument(f"Feature reference {ref!r} is not of the form 'view:feature'.")
    view, name = ref.split(":")
    return view, name
