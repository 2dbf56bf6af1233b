"""A registered feature view as plain data: what retrieval and materialization work from.

Retrieval and serving never need the user's modules for column and window features: the
registry's spec says everything. (On-demand features need their function, so they do.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ColumnFeature:
    """The latest value of ``column`` per entity (within the view's TTL)."""

    name: str
    column: str
    dtype: str | None = None


@dataclass(frozen=True)
class WindowFeature:
    """``function`` over ``column`` across the event times in (t - window_s, t]."""

    name: str
    column: str
    function: str
    window_s: int


@dataclass(frozen=True)
class ViewSpec:
    """One feature view, resolved: the dataset it reads, its keys, time column and features."""

    name: str
    entity: str
    join_keys: tuple[str, ...]
    source: str
    event_time: str
    ttl_s: int | None
    columns: tuple[ColumnFeature, ...]
    windows: tuple[WindowFeature, ...]
    online: bool = True

    @classmethod
    def from_spec(cls, name: str, spec: dict[str, Any], event_time: str | None = None) -> ViewSpec:
        """Build from a registered spec; ``event_time`` fills in one the spec leaves to the dataset."""
        columns, windows = [], []
        for f in spec["features"]:
            if f["kind"] == "column":
                columns.append(ColumnFeature(f["name"], f["column"], f.get("dtype")))
            else:
                windows.append(WindowFeature(f["name"], f["column"], f["function"], int(f["window_s"])))
        time_column = spec.get("event_time") or event_time
        if not time_column:
            from gyre.errors import InvalidArgument

            raise InvalidArgument(
                f"Feature view '{name}' reads dataset '{spec['source']}', which has no event-time column; "
                "declare it: gyre.Dataset(..., event_time='ts')."
            )
        return cls(
            name=name,
            entity=spec["entity"],
            join_keys=tuple(spec["join_keys"]),
            source=spec["source"],
            event_time=time_column,
            ttl_s=spec.get("ttl_s"),
            columns=tuple(columns),
            windows=tuple(windows),
            online=spec.get("online", True),
        )

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.columns] + [f.name for f in self.windows]

    def select(self, names: list[str]) -> ViewSpec:
        """The same view with only the features ``names`` (in the view's order)."""
        wanted = set(names)
        return ViewSpec(
            name=self.name,
            entity=self.entity,
            join_keys=self.join_keys,
            source=self.source,
            event_time=self.event_time,
            ttl_s=self.ttl_s,
            columns=tuple(f for f in self.columns if f.name in wanted),
            windows=tuple(f for f in self.windows if f.name in wanted),
            online=self.online,
        )

    @property
    def max_window_s(self) -> int:
        return max((w.window_s for w in self.windows), default=0)
