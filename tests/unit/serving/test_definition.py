"""gyre.Endpoint: what it accepts, how it is registered by gyre apply, and what it refuses."""

from __future__ import annotations

import pytest

import gyre
from gyre.definitions import Definitions
from gyre.errors import InvalidArgument
from gyre.meta import MetaStore
from gyre.meta.registry import get_registered
from gyre.project import apply, plan


@gyre.on_demand(view="risk", inputs=["amount"], dtype="double")
def doubled(amount):  # type: ignore[no-untyped-def]
    return amount * 2


def test_defaults_and_spec() -> None:
    e = gyre.Endpoint("fraud", model="fraud@champion", features=["user_activity:amount_sum_1h"])
    assert e.kind == "endpoint"
    assert e.spec() == {
        "model": "fraud@champion",
        "features": ["user_activity:amount_sum_1h"],
        "max_batch_size": 64,
        "max_wait_ms": 2.0,
        "extra_fields": "reject",
        "unknown_entity": "defaults",
        "defaults": {},
        "description": "",
        "rollout": {
            "strategy": "canary",
            "steps": [5.0, 25.0, 50.0, 100.0],
            "interval_s": 300.0,
            "on_challenger": "manual",
            "checks": {
                "min_requests": 50,
                "max_error_rate_increase": 0.01,
                "max_latency_ratio": 1.5,
                "max_prediction_psi": 0.5,
                "max_auc_drop": 0.02,
                "min_labels": 50,
            },
        },
    }
    assert gyre.Endpoint("a", model="models:/fraud/3").model == "fraud/3"
    # An on-demand feature object is referenced, so gyre apply checks it exists.
    assert gyre.Endpoint("b", model="m@c", features=[doubled]).references() == [
        ("on_demand_feature", "risk:doubled")
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"model": "fraud"}, r"names no alias or version; write 'fraud@champion'"),
        ({"model": "fraud/latest"}, r"pin a version \('fraud/3'\) or follow an alias"),
        ({"model": 3}, r"model must be 'NAME@ALIAS' or 'NAME/VERSION'"),
        ({"model": "m@c", "features": ["no_colon"]}, r"not of the form 'view:feature'"),
        ({"model": "m@c", "features": ["a:x", "b:x"]}, r"a:x, b:x share a name"),
        ({"model": "m@c", "features": ["a:x", "a:x"]}, r"lists a:x more than once"),
        ({"model": "m@c", "max_batch_size": 0}, r"max_batch_size must be between 1 and 10,000"),
        ({"model": "m@c", "max_wait_ms": -1}, r"max_wait_ms must be between 0 and 1000"),
        ({"model": "m@c", "extra_fields": "drop"}, r"extra_fields must be one of 'reject', 'ignore'"),
        ({"model": "m@c", "unknown_entity": "404"}, r"unknown_entity must be one of 'defaults', 'error'"),
        ({"model": "m@c", "features": ["a:x"], "defaults": {"y": 0}}, r"defaults names y"),
    ],
)
def test_bad_options_are_refused_with_what_to_write(kwargs: dict, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        gyre.Endpoint("fraud", **kwargs)


def test_gyre_apply_registers_endpoints_last_and_idempotently(meta: MetaStore) -> None:
    defs = Definitions([gyre.Endpoint("fraud", model="fraud@champion", max_batch_size=8)])
    first = plan(meta, defs)
    assert [(c.action, c.kind, c.name) for c in first.changes] == [("create", "endpoint", "fraud")]
    apply(meta, defs)
    assert get_registered(meta, "endpoint", "fraud").spec["max_batch_size"] == 8
    assert not apply(meta, defs)
    changed = plan(meta, Definitions([gyre.Endpoint("fraud", model="fraud/2", max_batch_size=8)]))
    assert changed.changes[0].fields == ("model",)


def test_an_undeclared_on_demand_feature_is_caught_by_apply(meta: MetaStore) -> None:
    with pytest.raises(InvalidArgument, match="refers to on demand feature 'risk:doubled'"):
        plan(meta, Definitions([gyre.Endpoint("fraud", model="m@c", features=[doubled])]))
