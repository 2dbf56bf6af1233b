"""Trigger evaluation (cron, new data, alerts), concurrency policies, and parameter parsing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import gyre
from gyre.errors import InvalidArgument
from gyre.pipelines import AlertFired, DataVersion, NewData, Schedule, decide_concurrency
from gyre.pipelines.cron import parse_cron
from gyre.pipelines.params import parse_assignments
from gyre.pipelines.triggers import matching_triggers


def t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# -- cron ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "after", "expected"),
    [
        ("*/15 * * * *", "2026-01-31 12:07", "2026-01-31 12:15"),
        ("*/15 * * * *", "2026-01-31 12:15", "2026-01-31 12:30"),  # strictly after
        ("0 3 * * *", "2026-01-31 03:00", "2026-02-01 03:00"),
        ("0 0 * * 1-5", "2026-01-30 12:00", "2026-02-02 00:00"),  # Friday -> Monday
        ("30 9 1 * *", "2026-12-15 00:00", "2027-01-01 09:30"),  # over the year end
        ("0 12 29 2 *", "2026-03-01 00:00", "2028-02-29 12:00"),  # leap day
        ("0 0 13 * 5", "2026-02-01 00:00", "2026-02-06 00:00"),  # dom OR dow when both are set
        ("5,10-12/2 * * jan sun", "2026-01-04 07:11", "2026-01-04 07:12"),  # names, lists, ranges
        ("@monthly", "2026-01-31 12:00", "2026-02-01 00:00"),
        ("@hourly", "2026-01-31 12:00", "2026-01-31 13:00"),
        ("0 0 * * 7", "2026-01-31 12:00", "2026-02-01 00:00"),  # 7 is Sunday too
    ],
)
def test_cron_next_fire(expr: str, after: str, expected: str) -> None:
    assert parse_cron(expr).next_after(t(after)) == t(expected)


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("* * * *", "has 4 fields; it needs 5"),
        ("60 * * * *", "'60' is not a valid minute"),
        ("* 24 * * *", "is not a valid hour"),
        ("* * * 13 *", "is not a valid month"),
        ("*/0 * * * *", "is not a valid minute"),
        ("5-1 * * * *", "is not a valid minute"),
        ("@sometimes", "Unknown cron macro"),
        ("", "is empty"),
    ],
)
def test_cron_errors_name_the_field(expr: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse_cron(expr)


def test_cron_that_never_fires() -> None:
    with pytest.raises(InvalidArgument, match="never fires"):
        parse_cron("0 0 30 2 *").next_after(t("2026-01-01 00:00"))


def test_schedule_due_collapses_missed_slots() -> None:
    s = Schedule("0 * * * *")
    assert not s.due(t("2026-01-31 12:00"), t("2026-01-31 12:59")).fire
    later = s.due(t("2026-01-31 12:00"), t("2026-01-31 15:30"))  # 13:00, 14:00, 15:00 missed
    assert later.fire and later.scheduled_for == t("2026-01-31 13:00")
    assert later.next_check == t("2026-01-31 16:00")
    # never fired: only in a slot's minute
    assert s.due(None, t("2026-01-31 13:00")).fire
    waiting = s.due(None, t("2026-01-31 13:01"))
    assert not waiting.fire and waiting.next_check == t("2026-01-31 14:00")


# -- new data ------------------------------------------------------------------------------


def test_new_data_waits_for_enough_rows() -> None:
    trig = NewData("payments", min_new_rows=1000)
    now = t("2026-01-31 12:00")
    small = [DataVersion("payments", v, 300) for v in (4, 5, 6)]
    decision = trig.evaluate(small, None, now)
    assert (
        not decision.fire
        and "900 new row(s) of 'payments' in 3 version(s); waiting for 1000" in decision.reason
    )
    more = [*small, DataVersion("payments", 7, 200), DataVersion("other", 1, 10_000)]
    decision = trig.evaluate(more, None, now)
    assert decision.fire and decision.reason == "1100 new row(s) of 'payments' (v4-v7)"


def test_new_data_respects_the_minimum_interval() -> None:
    trig = NewData("payments", min_new_rows=10, min_interval="1h")
    versions = [DataVersion("payments", 9, 50)]
    too_soon = trig.evaluate(versions, t("2026-01-31 11:30"), t("2026-01-31 12:00"))
    assert not too_soon.fire and too_soon.next_check == t("2026-01-31 12:30")
    assert "less than 1h ago" in too_soon.reason
    assert trig.evaluate(versions, t("2026-01-31 11:00"), t("2026-01-31 12:00")).fire
    assert trig.evaluate(versions, None, t("2026-01-31 12:00")).fire


def test_new_data_from_an_event_and_matching() -> None:
    trig = NewData("payments")
    payload = {"dataset": "payments", "version": 3, "rows": 42, "source": "push"}
    assert trig.matches("dataset.version_created", payload)
    assert not trig.matches("dataset.version_created", {**payload, "dataset": "users"})
    assert not trig.matches("model.version_created", payload)
    assert DataVersion.from_event(payload) == DataVersion("payments", 3, 42)
    with pytest.raises(InvalidArgument, match="min_new_rows"):
        NewData("payments", min_new_rows=0)
    with pytest.raises(InvalidArgument, match="duration"):
        NewData("payments", min_interval="soon")


def test_alert_trigger_matches_its_rule_or_monitor() -> None:
    any_alert, drift = AlertFired(), AlertFired(rule="fraud_drift", monitor="fraud")
    # the payload the alert engine writes with alert.fired
    event = {"rule": "fraud_drift", "subject": "endpoint:fraud", "endpoint": "fraud", "alert_id": "01J"}
    assert any_alert.matches("alert.fired", {"rule": "x", "endpoint": None})
    assert drift.matches("alert.fired", event)
    assert not drift.matches("alert.fired", {**event, "rule": "latency"})
    assert not drift.matches("alert.fired", {**event, "endpoint": "other"})
    assert not drift.matches("alert.resolved", event)
    assert AlertFired(monitor="fraud").matches("alert.fired", {**event, "rule": "latency"})
    assert drift.references() == [("alert_rule", "fraud_drift")]
    triggers = [Schedule("@daily"), NewData("payments"), drift]
    assert matching_triggers(triggers, "alert.fired", event) == [drift]


# -- concurrency -----------------------------------------------------------------------------


def test_concurrency_policies() -> None:
    assert decide_concurrency("skip", []).action == "start"
    skip = decide_concurrency("skip", ["R1"])
    assert skip.action == "skip" and "R1 still running" in skip.reason
    assert decide_concurrency("queue", ["R1"]).action == "queue"
    cancel = decide_concurrency("cancel-previous", ["R1", "R2"])
    assert cancel.action == "cancel-and-start" and cancel.cancel == ("R1", "R2")
    with pytest.raises(InvalidArgument, match="not one of skip, queue, cancel-previous"):
        decide_concurrency("parallel", [])


# -- parameters ------------------------------------------------------------------------------


@gyre.step
def echo(value: object) -> object:
    return value


@gyre.pipeline
def typed(
    n: int = 3, lr: float = 0.1, name: str = "x", full: bool = False, limit: int | None = None, free=None
):
    return echo([n, lr, name, full, limit, free])


def test_params_from_text_are_parsed_to_their_types() -> None:
    values = typed.bind(
        {"n": "5", "lr": "1e-3", "full": "yes", "limit": "none", "free": "anything"}, from_text=True
    )
    assert values == {"n": 5, "lr": 0.001, "name": "x", "full": True, "limit": None, "free": "anything"}


def test_bad_params_are_all_listed_before_anything_runs() -> None:
    with pytest.raises(InvalidArgument) as err:
        typed.bind({"n": "five", "lr": "fast", "full": "maybe", "nn": "1"}, from_text=True)
    message = str(err.value)
    assert "parameter 'n' expects an integer, got 'five'" in message
    assert "parameter 'lr' expects a number, got 'fast'" in message
    assert "parameter 'full' is a boolean" in message
    assert "'nn' is not a parameter of pipeline 'typed'" in message and "Did you mean 'n'?" in message


def test_params_from_python_are_checked() -> None:
    assert typed.bind({"lr": 1})["lr"] == 1.0  # an int is a fine float
    with pytest.raises(InvalidArgument, match="parameter 'n' expects int, got str"):
        typed.bind({"n": "5"})
    with pytest.raises(InvalidArgument, match="expects int, got bool"):
        typed.bind({"n": True})


def test_required_params_and_assignments() -> None:
    @gyre.pipeline
    def needs(dataset: str):
        return echo(dataset)

    with pytest.raises(InvalidArgument, match="parameter 'dataset' of pipeline 'needs' is required"):
        needs.bind({})
    assert parse_assignments(["a=1", "b=x=y", "c="]) == {"a": "1", "b": "x=y", "c": ""}
    with pytest.raises(InvalidArgument, match="is not NAME=VALUE"):
        parse_assignments(["oops"])


def test_schedule_next_fire_is_public() -> None:
    assert Schedule("0 3 * * *").next_fire(t("2026-01-31 04:00")) == t("2026-02-01 03:00")
    assert Schedule("0 3 * * *").next_fire(t("2026-01-31 04:00") - timedelta(hours=2)) == t(
        "2026-01-31 03:00"
    )
