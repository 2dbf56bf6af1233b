"""Definitions as code: names, durations, and loading them from the project's modules."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

import gyre
from gyre.definitions import format_duration, load_definitions, parse_duration, spec_hash
from gyre.errors import InvalidArgument, NotFound


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("10m", 600), ("1h", 3600), ("7d", 604800), ("2w", 1209600), (90, 90)]
)
def test_parse_duration(text: str | int, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("bad", ["", "1y", "h", "-1h", 0, "1.5h", True, None])
def test_parse_duration_refuses(bad: object) -> None:
    with pytest.raises(InvalidArgument, match="duration|positive"):
        parse_duration(bad)  # type: ignore[arg-type]


def test_format_duration_round_trips() -> None:
    for text in ["30s", "10m", "1h", "7d", "14d", "90s", "25h"]:
        assert format_duration(parse_duration(text)) == text


def test_spec_hash_ignores_key_order() -> None:
    assert spec_hash({"a": 1, "b": [1, 2]}) == spec_hash({"b": [1, 2], "a": 1})
    assert spec_hash({"a": 1}) != spec_hash({"a": 2})


def test_feature_definitions_validate_their_arguments() -> None:
    user = gyre.Entity("user", join_keys=["user_id"])
    with pytest.raises(InvalidArgument, match="join_keys"):
        gyre.Entity("user", join_keys=[])
    with pytest.raises(InvalidArgument, match="Unknown aggregation 'median'"):
        gyre.Aggregate("amount", "median", window="1h")
    with pytest.raises(InvalidArgument, match="not a duration"):
        gyre.Aggregate("amount", "sum", window="an hour")
    with pytest.raises(InvalidArgument, match="more than once"):
        gyre.FeatureView("v", entity=user, source="payments", features=[gyre.Field("a"), gyre.Field("a")])
    with pytest.raises(InvalidArgument, match="no features"):
        gyre.FeatureView("v", entity=user, source="payments", features=[])
    with pytest.raises(InvalidArgument, match="source must be"):
        gyre.FeatureView("v", entity=user, source=42, features=[gyre.Field("a")])
    with pytest.raises(InvalidArgument, match="name"):
        gyre.Entity("bad name!", join_keys=["k"])
    assert gyre.Aggregate("amount", "sum", window="1h").name == "amount_sum_1h"
    assert gyre.Aggregate("payment_id", "count", window=86400).name == "payment_id_count_1d"


def test_on_demand_checks_its_inputs_match_the_function() -> None:
    with pytest.raises(InvalidArgument, match="takes 1 argument"):

        @gyre.on_demand(view="risk", inputs=["amount", "user:x"], dtype="float64")
        def one(amount):  # type: ignore[no-untyped-def]
            return amount

    @gyre.on_demand(view="risk", inputs=["amount", "user_activity:amount_sum_1h"], dtype="float64")
    def ratio(amount, total):  # type: ignore[no-untyped-def]
        """Amount over the hour's total."""
        return amount / total if total else None

    assert ratio.name == "risk:ratio"
    assert ratio.request_inputs == ["amount"] and ratio.feature_inputs == ["user_activity:amount_sum_1h"]
    assert ratio(2.0, 4.0) == 0.5
    assert ratio.spec()["description"] == "Amount over the hour's total."
    assert ratio.references() == [("feature_view", "user_activity")]


def test_dataset_schema_becomes_expectations() -> None:
    ds = gyre.Dataset("payments", keys=["id"], event_time="ts", schema={"id": "string", "ts": "timestamp"})
    with pytest.raises(InvalidArgument, match="Unknown column type .int."):
        gyre.Dataset("payments", schema={"id": "int"})
    spec = ds.spec()
    kinds = [e["kind"] for e in spec["expectations"]]
    assert kinds == ["column_type", "column_type", "no_extra_columns"]
    with pytest.raises(InvalidArgument, match="not in its declared schema"):
        gyre.Dataset("payments", keys=["nope"], schema={"id": "string"})


MODULE = """
import gyre

payments = gyre.Dataset("payments", keys=["payment_id"], event_time="ts")
user = gyre.Entity("user", join_keys=["user_id"])
views = [
    gyre.FeatureView("user_activity", entity=user, source=payments,
                     features=[gyre.Aggregate("amount", "sum", window="1h")]),
]
not_a_definition = 42
"""


def test_load_definitions_collects_module_level_objects(tmp_path: Path) -> None:
    (tmp_path / "defs.py").write_text(MODULE)
    found = load_definitions(tmp_path, ["defs.py"])
    assert sorted((d.kind, d.name) for d in found) == [
        ("dataset", "payments"),
        ("entity", "user"),
        ("feature_view", "user_activity"),
    ]
    assert found.get("entity", "user").spec()["join_keys"] == ["user_id"]
    with pytest.raises(NotFound, match="Did you mean 'user'"):
        found.get("entity", "users")


def test_load_definitions_errors_name_the_module(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="does not exist"):
        load_definitions(tmp_path, ["missing.py"])
    with pytest.raises(InvalidArgument, match="outside the project"):
        load_definitions(tmp_path, ["../elsewhere.py"])
    (tmp_path / "broken.py").write_text("raise RuntimeError('boom')\n")
    with pytest.raises(InvalidArgument, match="broken.py failed: RuntimeError: boom"):
        load_definitions(tmp_path, ["broken.py"])
    (tmp_path / "twice.py").write_text(
        "import gyre\na = gyre.Entity('user', join_keys=['a'])\nb = gyre.Entity('user', join_keys=['b'])\n"
    )
    with pytest.raises(InvalidArgument, match="Two different entity definitions are named 'user'"):
        load_definitions(tmp_path, ["twice.py"])
