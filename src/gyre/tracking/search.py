"""The run filter and ordering grammar, compiled to SQL.

A filter is clauses joined by ``and``::

    metrics.auc > 0.9 and params.model = 'lgbm' and tags.team != "risk" and status = 'FINISHED'

- left side: ``metrics.KEY``, ``params.KEY``, ``tags.KEY`` or a run attribute (``status``,
  ``name``, ``user``, ``start_time``, ``end_time``, ``parent_run_id``); a key with spaces or
  dots goes in backticks: ``metrics.`val loss```;
- operators: ``=``, ``!=``, ``<``, ``<=``, ``>``, ``>=``; ``like`` for strings (``%`` wildcard);
- values: numbers, or strings in single or double quotes. Metrics compare as numbers
  against their latest value; params and tags compare as strings.

Ordering: a list such as ``["metrics.auc DESC", "start_time"]`` (default ascending).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, select
from sqlalchemy.sql import Select

from gyre.errors import InvalidArgument, did_you_mean
from gyre.meta.schema import LatestMetric, Param, Run, RunTag

ATTRIBUTES = ("status", "name", "user", "start_time", "end_time", "parent_run_id", "id")
OPERATORS = ("<=", ">=", "!=", "=", "<", ">", "like")
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<ident>(?:metrics|params|tags|attributes)\.(?:`[^`]+`|[\w\-/:]+)|[A-Za-z_]\w*)
      | (?P<op><=|>=|!=|=|<|>)
      | (?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
      | '(?P<sq>[^']*)'
      | "(?P<dq>[^"]*)"
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class Clause:
    kind: str  # metrics | params | tags | attributes
    key: str
    op: str
    value: Any


def parse_filter(text: str | None) -> list[Clause]:
    """Parse a filter string into clauses; an error points at the offending part."""
    if not text or not text.strip():
        return []
    tokens = _tokenize(text)
    clauses: list[Clause] = []
    i = 0
    while i < len(tokens):
        if clauses:
            if tokens[i][0] != "ident" or tokens[i][1].lower() != "and":
                raise InvalidArgument(f"Filter {text!r}: expected 'and' before {tokens[i][1]!r}.")
            i += 1
        if i + 3 > len(tokens):
            raise InvalidArgument(f"Filter {text!r} is incomplete: each clause reads like metrics.auc > 0.9.")
        (k1, left), (k2, op), (k3, value) = tokens[i : i + 3]
        if k2 == "ident" and op.lower() == "like":
            k2, op = "op", "like"
        if k1 != "ident" or k2 != "op" or k3 not in {"num", "str"}:
            raise InvalidArgument(
                f"Filter {text!r}: cannot read {left} {op} {value}; write clauses like "
                "metrics.auc > 0.9 or params.model = 'lgbm'."
            )
        clauses.append(_clause(left, op, value, k3, text))
        i += 3
    return clauses


def _tokenize(text: str) -> list[tuple[str, str]]:
    pos, out = 0, []
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise InvalidArgument(f"Filter {text!r}: cannot read from {text[pos:].strip()!r}.")
        kind = m.lastgroup or ""
        if kind in {"sq", "dq"}:
            out.append(("str", m.group(kind)))
        else:
            out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def _clause(left: str, op: str, value: str, value_kind: str, text: str) -> Clause:
    if "." in left:
        kind, key = left.split(".", 1)
        key = key.strip("`")
    else:
        kind, key = "attributes", left
    if kind == "attributes" and key not in ATTRIBUTES:
        raise InvalidArgument(
            f"Filter {text!r}: unknown run attribute {key!r}; use one of {', '.join(ATTRIBUTES)}, "
            "or metrics.KEY, params.KEY, tags.KEY." + did_you_mean(key, ATTRIBUTES)
        )
    if kind == "metrics":
        if value_kind != "num":
            raise InvalidArgument(f"Filter {text!r}: metrics.{key} compares with a number, not {value!r}.")
        if op == "like":
            raise InvalidArgument(f"Filter {text!r}: 'like' works on params, tags and names, not metrics.")
        return Clause(kind, key, op, float(value))
    if kind == "attributes" and key in {"start_time", "end_time"}:
        try:
            return Clause(kind, key, op, datetime.fromisoformat(value))
        except ValueError:
            raise InvalidArgument(
                f"Filter {text!r}: {key} compares with an ISO time like '2026-01-31T12:00:00+00:00'."
            ) from None
    return Clause(kind, key, op, value)


def _compare(column: Any, op: str, value: Any) -> ColumnElement[bool]:
    if op == "like":
        return column.like(value)
    return {
        "=": column == value,
        "!=": column != value,
        "<": column < value,
        "<=": column <= value,
        ">": column > value,
        ">=": column >= value,
    }[op]


_KEYED: dict[str, Any] = {"metrics": LatestMetric, "params": Param, "tags": RunTag}


def apply_filter(query: Select[Any], clauses: list[Clause]) -> Select[Any]:
    """Add each clause to a ``select`` over ``runs``.

    A keyed clause becomes ``runs.id IN (SELECT run_id … WHERE key = ? AND value > ?)``: the
    planner then uses the (key, value) index once, where a correlated EXISTS probes per run
    (measured ~4x slower on 1,000 runs).
    """
    conditions = []
    for c in clauses:
        if c.kind == "attributes":
            conditions.append(_compare(getattr(Run, c.key), c.op, c.value))
            continue
        table = _KEYED[c.kind]
        matching = select(table.run_id).where(table.key == c.key, _compare(table.value, c.op, c.value))
        conditions.append(Run.id.in_(matching))
    return query.where(and_(*conditions)) if conditions else query


def apply_order(query: Select[Any], order_by: list[str] | None) -> Select[Any]:
    """Order runs; metric/param/tag orderings sort runs without that key last."""
    if not order_by:
        return query.order_by(Run.start_time.desc(), Run.id.desc())
    for spec in order_by:
        parts = spec.strip().split()
        if not parts or len(parts) > 2 or (len(parts) == 2 and parts[1].upper() not in {"ASC", "DESC"}):
            raise InvalidArgument(f"Cannot order by {spec!r}; write e.g. 'metrics.auc DESC' or 'start_time'.")
        left = parts[0]
        desc = len(parts) == 2 and parts[1].upper() == "DESC"
        if "." in left:
            kind, key = left.split(".", 1)
            key = key.strip("`")
            if kind not in _KEYED:
                raise InvalidArgument(f"Cannot order by {spec!r}: use metrics.KEY, params.KEY, tags.KEY.")
            table = _KEYED[kind]
            column = select(table.value).where(table.run_id == Run.id, table.key == key).scalar_subquery()
        else:
            if left not in ATTRIBUTES:
                raise InvalidArgument(
                    f"Cannot order by {left!r}; use one of {', '.join(ATTRIBUTES)}."
                    + did_you_mean(left, ATTRIBUTES)
                )
            column = getattr(Run, left)
        query = query.order_by(column.desc().nulls_last() if desc else column.asc().nulls_last())
    return query.order_by(Run.id.desc())
