"""gyre apply: plan, apply, idempotence, deletions, and the checks against the catalog."""

from __future__ import annotations

import pyarrow as pa
import pytest
from sqlalchemy import select

import gyre
from gyre.data import catalog
from gyre.definitions import Definitions
from gyre.errors import InvalidArgument
from gyre.meta import MetaStore
from gyre.meta.registry import get_registered, list_registered
from gyre.meta.schema import Event
from gyre.project import apply, plan


def _defs(window: str = "1h", with_view: bool = True) -> Definitions:
    payments = gyre.Dataset("payments", keys=["payment_id"], event_time="ts", description="card payments")
    user = gyre.Entity("user", join_keys=["user_id"])
    items: list = [payments, user]
    if with_view:
        items.append(
            gyre.FeatureView(
                "user_activity",
                entity=user,
                source=payments,
                ttl="30d",
                features=[gyre.Field("country"), gyre.Aggregate("amount", "sum", window=window)],
                owner="risk-team",
            )
        )
    return Definitions(items)


def _actions(p) -> list[tuple[str, str, str]]:  # type: ignore[no-untyped-def]
    return [(c.action, c.kind, c.name) for c in p.changes]


def test_apply_creates_then_changes_nothing(meta: MetaStore) -> None:
    first = plan(meta, _defs())
    assert _actions(first) == [
        ("create", "dataset", "payments"),
        ("create", "entity", "user"),
        ("create", "feature_view", "user_activity"),
    ]
    assert list_registered(meta) == []  # planning writes nothing
    apply(meta, _defs())
    assert [(r.kind, r.name, r.version) for r in list_registered(meta)] == [
        ("dataset", "payments", 1),
        ("entity", "user", 1),
        ("feature_view", "user_activity", 1),
    ]
    again = apply(meta, _defs())
    assert not again and len(again.unchanged) == 3
    # The declared dataset reached the catalog.
    info = catalog.get_dataset(meta, "payments")
    assert info.keys == ["payment_id"] and info.event_time == "ts" and info.description == "card payments"
    with meta.read() as s:
        types = [e.type for e in s.scalars(select(Event).order_by(Event.seq))]
    assert types.count("definition.created") == 3


def test_apply_updates_with_the_changed_fields_and_deletes_what_was_removed(meta: MetaStore) -> None:
    apply(meta, _defs())
    changed = plan(meta, _defs(window="2h"))
    assert _actions(changed) == [("update", "feature_view", "user_activity")]
    assert changed.changes[0].fields == ("features",)
    apply(meta, _defs(window="2h"), changed)
    reg = get_registered(meta, "feature_view", "user_activity")
    assert reg.version == 2 and reg.spec["features"][1]["name"] == "amount_sum_2h"

    removed = apply(meta, _defs(with_view=False))
    assert _actions(removed) == [("delete", "feature_view", "user_activity")]
    assert [r.name for r in list_registered(meta, "feature_view")] == []


def test_a_view_over_an_ingested_dataset_is_checked_against_its_columns(meta: MetaStore) -> None:
    schema = pa.schema([("payment_id", pa.string()), ("user_id", pa.int64()), ("ts", pa.timestamp("us"))])
    catalog.ensure_dataset(meta, "events", keys=["payment_id"], event_time="ts")
    columns, digest = catalog.describe_schema(schema)
    catalog.record_version(meta, "events", 0, rows=1, bytes=1, schema=columns, schema_hash=digest, source="t")
    user = gyre.Entity("user", join_keys=["user_id"])
    bad = gyre.FeatureView(
        "v", entity=user, source="events", features=[gyre.Field("amount"), gyre.Field("user_id")]
    )
    with pytest.raises(
        InvalidArgument, match="uses column\\(s\\) amount, which dataset 'events' does not have"
    ):
        apply(meta, Definitions([user, bad]))
    assert list_registered(meta) == []  # nothing applied

    good = gyre.FeatureView(
        "v", entity=user, source="events", features=[gyre.Field("user_id", column="user_id")]
    )
    apply(meta, Definitions([user, good]))
    spec = get_registered(meta, "feature_view", "v").spec
    assert spec["event_time"] == "ts"  # taken from the catalog
    assert spec["features"][0]["dtype"] == "int64"


def test_references_must_resolve(meta: MetaStore) -> None:
    user = gyre.Entity("user", join_keys=["user_id"])
    view = gyre.FeatureView("v", entity=user, source="nowhere", features=[gyre.Field("x")])
    with pytest.raises(InvalidArgument) as err:
        apply(meta, Definitions([view]))
    assert "refers to entity 'user'" in str(err.value) and "refers to dataset 'nowhere'" in str(err.value)

    payments = gyre.Dataset("payments", keys=["id"])  # no event time
    view = gyre.FeatureView("v", entity=user, source=payments, features=[gyre.Field("x")])
    with pytest.raises(InvalidArgument, match="declares no event-time column"):
        apply(meta, Definitions([user, payments, view]))


def test_on_demand_inputs_must_exist(meta: MetaStore) -> None:
    defs = _defs()

    @gyre.on_demand(view="risk", inputs=["amount", "user_activity:amount_sum_3h"], dtype="float64")
    def ratio(amount, total):  # type: ignore[no-untyped-def]
        return amount / total

    defs.add(ratio)
    with pytest.raises(InvalidArgument, match="does not define.*Did you mean 'amount_sum_1h'"):
        apply(meta, defs)
