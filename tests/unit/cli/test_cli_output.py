"""Formatting helpers of the CLI."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from gyre.cli.output import fmt_duration, fmt_float, fmt_size, fmt_time, jsonable, print_error, print_json


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (None, "-"), (math.nan, "NaN"), (math.inf, "inf"), (-math.inf, "-inf"), ("NaN", "NaN"),
        ("-Infinity", "-inf"), (0.123456789, "0.123457"), (100.0, "100"), (1.5e-7, "1.5e-07"),
    ],
)  # fmt: skip
def test_fmt_float(value: object, shown: str) -> None:
    assert fmt_float(value) == shown  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(None, "-"), (0.004, "0.00s"), (0.42, "0.42s"), (3.21, "3.2s"), (12.4, "12s"), (184, "3m04s"),
     (7500, "2h05m"), (3 * 86400 + 7200, "3d02h")],
)  # fmt: skip
def test_fmt_duration(seconds: float | None, shown: str) -> None:
    assert fmt_duration(seconds) == shown


def test_fmt_size() -> None:
    assert [fmt_size(n) for n in (None, 5, 2048, 5 * 1024**3)] == ["-", "5 B", "2.0 KB", "5.0 GB"]


def test_fmt_time_is_compact_this_year_and_dated_before() -> None:
    now = datetime(2026, 6, 15, 12, tzinfo=UTC)
    assert len(fmt_time(now - timedelta(days=1), now=now)) == len("06-14 12:00")
    assert fmt_time(datetime(2024, 1, 31, 12, tzinfo=UTC), now=now).startswith("2024-")
    assert fmt_time(None) == "-"


def test_jsonable_is_strict_json() -> None:
    @dataclass
    class Thing:
        at: datetime
        values: dict[str, float]

    data = jsonable([Thing(datetime(2026, 1, 2, tzinfo=UTC), {"a": math.nan, "b": -math.inf, "c": 1.5})])
    assert json.loads(json.dumps(data, allow_nan=False)) == [
        {"at": "2026-01-02T00:00:00+00:00", "values": {"a": "NaN", "b": "-Infinity", "c": 1.5}}
    ]


def test_print_json_and_print_error(capsys: pytest.CaptureFixture[str]) -> None:
    print_json({"x": math.inf})
    print_error("[backends] metadata is wrong\nsee docs " + "x" * 200)
    out, err = capsys.readouterr()
    assert json.loads(out) == {"x": "Infinity"}
    assert err.count("\n") == 1
    assert err.startswith("error: [backends] metadata is wrong see docs xxx")
