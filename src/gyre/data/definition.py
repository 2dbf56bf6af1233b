"""``gyre.Dataset``: a dataset declared in the project's definitions."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from gyre.data.lake import check_dataset_name
from gyre.data.records import arrow_type
from gyre.data.validation import ColumnType, Expectation, Expectations, NoExtraColumns
from gyre.definitions import Definition
from gyre.errors import InvalidArgument


class Dataset(Definition):
    """A lake dataset: its keys, event-time column, and optionally its schema and expectations.

    Declaring one is optional (a first ingest creates the dataset), but a declared dataset is
    held to what it says from its first batch on: a declared ``schema`` becomes type
    expectations plus "no extra columns" (errors), and declared ``expectations`` replace the
    ones Gyre would otherwise infer from the first version.

    Args:
        name: the dataset's name in the lake and the catalog.
        keys: the columns that identify a record (used to deduplicate streams, and as join keys).
        event_time: the column holding when each record happened (for time travel and features).
        schema: column name → type as ``gyre datasets show`` prints them (``int64``,
            ``double``, ``string``, ``bool``, ``timestamp``, ``timestamp[tz=UTC]``, ``date32``…).
            Records pushed or streamed before the first version take these types.
        expectations: checks every new batch must pass (see ``gyre.data.validation``).
        description: free text shown by ``gyre datasets show``.
    """

    kind: ClassVar[str] = "dataset"

    def __init__(
        self,
        name: str,
        *,
        keys: Iterable[str] = (),
        event_time: str | None = None,
        schema: Mapping[str, str] | None = None,
        expectations: Iterable[Expectation] = (),
        description: str = "",
    ) -> None:
        self.name = check_dataset_name(name)
        self.keys = [_column(name, "key", k) for k in keys]
        self.event_time = _column(name, "event_time", event_time) if event_time is not None else None
        self.schema = {_column(name, "schema", c): str(t) for c, t in (schema or {}).items()}
        for t in self.schema.values():
            arrow_type(t)  # an unknown type name fails here, naming the valid ones
        self.expectations = list(expectations)
        for e in self.expectations:
            if not isinstance(e, Expectation):
                raise InvalidArgument(
                    f"Dataset '{name}': expectations must be Expectation objects such as "
                    f"ValueRange('amount', min=0), got {e!r}."
                )
        self.description = description
        for col in [*self.keys, *([self.event_time] if self.event_time else [])]:
            if self.schema and col not in self.schema:
                raise InvalidArgument(f"Dataset '{name}': column '{col}' is not in its declared schema.")

    def all_expectations(self) -> Expectations | None:
        """Declared expectations with the schema's, or None when nothing is declared."""
        out = Expectations(ColumnType(c, t) for c, t in self.schema.items())
        if self.schema:
            out.append(NoExtraColumns(tuple(self.schema)))
        out.extend(self.expectations)
        return out or None

    def spec(self) -> dict[str, Any]:
        expectations = self.all_expectations()
        return {
            "keys": self.keys,
            "event_time": self.event_time,
            "schema": self.schema,
            "expectations": expectations.to_list() if expectations else [],
            "description": self.description,
        }

    def __repr__(self) -> str:
        return f"Dataset({self.name!r}, keys={self.keys}, event_time={self.event_time!r})"


def _column(dataset: str, what: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidArgument(
            f"Dataset '{dataset}': {what} column must be a non-empty string, got {value!r}."
        )
    return value
