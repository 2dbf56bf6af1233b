"""When a pipeline runs by itself: schedules, new data, fired alerts; and what to do if it is running.

Everything here is a pure function of its arguments (the clock is passed in), so the
controller decides and records, and tests need no waiting:

- :meth:`Schedule.due` — is a cron schedule due, given when it last fired?
- :meth:`NewData.evaluate` — enough new rows, and long enough since the last run?
- :meth:`NewData.matches` / :meth:`AlertFired.matches` — does an outbox event concern this trigger?
- :func:`decide_concurrency` — start, skip, queue, or cancel the running ones first.

A run by hand (``gyre run PIPELINE``) needs no trigger.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Literal

from gyre.definitions import format_duration, parse_duration
from gyre.errors import InvalidArgument
from gyre.pipelines.cron import Cron, parse_cron

CONCURRENCY = ("skip", "queue", "cancel-previous")
DATASET_VERSION_CREATED = "dataset.version_created"
ALERT_FIRED = "alert.fired"


@dataclass(frozen=True)
class TriggerDecision:
    """Whether to start a run now, and why (the reason is recorded on the run)."""

    fire: bool
    reason: str
    scheduled_for: datetime | None = None  # schedules: the slot this run stands for
    next_check: datetime | None = None  # when the answer may change, if known


class Trigger:
    """Base of the triggers a pipeline declares (``triggers=[...]``)."""

    kind: ClassVar[str]

    def spec(self) -> dict[str, Any]:
        raise NotImplementedError

    def references(self) -> list[tuple[str, str]]:
        return []

    def matches(self, event_type: str, payload: Mapping[str, Any]) -> bool:
        """Whether an outbox event concerns this trigger (schedules match none)."""
        return False


@dataclass(frozen=True)
class Schedule(Trigger):
    """Run on a cron schedule, in UTC: ``Schedule("0 3 * * *")`` (see :mod:`gyre.pipelines.cron`)."""

    kind: ClassVar[str] = "schedule"
    cron: str
    _parsed: Cron = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_parsed", parse_cron(self.cron))

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "cron": self.cron}

    def next_fire(self, after: datetime) -> datetime:
        """The first slot strictly after ``after``."""
        return self._parsed.next_after(after)

    def due(self, last_fired: datetime | None, now: datetime) -> TriggerDecision:
        """Fire if a slot passed since ``last_fired`` (or, never fired, if ``now`` is in a slot's minute).

        Missed slots (the controller was down) collapse into one run: record ``now`` as the
        new ``last_fired``, not ``scheduled_for``, or each missed slot would fire in turn.
        """
        now = _utc(now)
        since = _utc(last_fired) if last_fired is not None else now - timedelta(minutes=1)
        slot = self._parsed.next_after(since)
        if slot <= now:
            return TriggerDecision(
                True, f"schedule '{self.cron}' (slot {slot:%Y-%m-%d %H:%M} UTC)", slot, self.next_fire(now)
            )
        return TriggerDecision(
            False, f"schedule '{self.cron}': next slot {slot:%Y-%m-%d %H:%M} UTC", None, slot
        )


@dataclass(frozen=True)
class DataVersion:
    """A dataset version as the new-data trigger counts it (from a ``dataset.version_created`` event)."""

    dataset: str
    version: int
    rows: int
    created_at: datetime | None = None

    @classmethod
    def from_event(cls, payload: Mapping[str, Any], created_at: datetime | None = None) -> DataVersion:
        return cls(
            str(payload["dataset"]), int(payload["version"]), int(payload.get("rows") or 0), created_at
        )


@dataclass(frozen=True)
class NewData(Trigger):
    """Run when ``dataset`` has gained at least ``min_new_rows`` rows since the last run.

    ``min_interval`` (``"1h"``, seconds, a timedelta) is the least time between two runs this
    trigger starts, so a stream of small versions does not retrain every minute: rows keep
    adding up until both thresholds are met.
    """

    kind: ClassVar[str] = "new_data"
    dataset: str
    min_new_rows: int = 1
    min_interval: str | int | float | timedelta | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.dataset, str) or not self.dataset:
            raise InvalidArgument("NewData needs the dataset's name: NewData('payments', min_new_rows=1000).")
        if (
            not isinstance(self.min_new_rows, int)
            or isinstance(self.min_new_rows, bool)
            or self.min_new_rows < 1
        ):
            raise InvalidArgument(f"NewData min_new_rows must be an integer >= 1, got {self.min_new_rows!r}.")
        if self.min_interval is not None:
            parse_duration(self.min_interval, "NewData min_interval")

    @property
    def interval(self) -> timedelta:
        if self.min_interval is None:
            return timedelta(0)
        return parse_duration(self.min_interval, "NewData min_interval")

    def spec(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "dataset": self.dataset,
            "min_new_rows": self.min_new_rows,
            "min_interval": format_duration(self.interval) if self.min_interval is not None else None,
        }

    def references(self) -> list[tuple[str, str]]:
        return [("dataset", self.dataset)]

    def matches(self, event_type: str, payload: Mapping[str, Any]) -> bool:
        return event_type == DATASET_VERSION_CREATED and payload.get("dataset") == self.dataset

    def evaluate(
        self, new_versions: Sequence[DataVersion], last_fired: datetime | None, now: datetime
    ) -> TriggerDecision:
        """Decide on the versions committed since the last run this trigger started.

        Args:
            new_versions: versions of any dataset since then (others are ignored).
            last_fired: when this trigger last started a run (None: never).
            now: the current time.
        """
        mine = sorted((v for v in new_versions if v.dataset == self.dataset), key=lambda v: v.version)
        rows = sum(v.rows for v in mine)
        span = f"v{mine[0].version}" + (f"-v{mine[-1].version}" if len(mine) > 1 else "") if mine else ""
        if rows < self.min_new_rows:
            return TriggerDecision(
                False,
                f"{rows} new row(s) of '{self.dataset}' in {len(mine)} version(s); waiting for "
                f"{self.min_new_rows}",
            )
        if last_fired is not None and self.min_interval is not None:
            earliest = _utc(last_fired) + self.interval
            if _utc(now) < earliest:
                return TriggerDecision(
                    False,
                    f"{rows} new row(s) of '{self.dataset}', but the last run started less than "
                    f"{format_duration(self.interval)} ago",
                    next_check=earliest,
                )
        return TriggerDecision(True, f"{rows} new row(s) of '{self.dataset}' ({span})")


@dataclass(frozen=True)
class AlertFired(Trigger):
    """Run when a monitoring alert fires (``alert.fired``): any, or only those of one alert
    rule (``rule="fraud_drift"``) or on one endpoint's monitor (``monitor="fraud"``)."""

    kind: ClassVar[str] = "alert"
    rule: str | None = None
    monitor: str | None = None

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "rule": self.rule, "monitor": self.monitor}

    def references(self) -> list[tuple[str, str]]:
        return [("alert_rule", self.rule)] if self.rule else []

    def matches(self, event_type: str, payload: Mapping[str, Any]) -> bool:
        if event_type != ALERT_FIRED:
            return False
        if self.rule is not None and payload.get("rule") != self.rule:
            return False
        # A monitor is named after the endpoint it watches; the event names that endpoint.
        return self.monitor is None or payload.get("endpoint") == self.monitor


@dataclass(frozen=True)
class ConcurrencyDecision:
    """What to do with a triggered run given the pipeline's running ones."""

    action: Literal["start", "skip", "queue", "cancel-and-start"]
    reason: str
    cancel: tuple[str, ...] = ()


def decide_concurrency(policy: str, running: Sequence[str]) -> ConcurrencyDecision:
    """Apply a pipeline's concurrency policy to a new run.

    Args:
        policy: ``skip`` (drop the new run), ``queue`` (start it when the running ones end) or
            ``cancel-previous`` (cancel the running ones, then start it).
        running: ids of the pipeline's runs still RUNNING.
    """
    check_concurrency(policy)
    if not running:
        return ConcurrencyDecision("start", "no run of this pipeline is running")
    ids = ", ".join(running)
    if policy == "skip":
        return ConcurrencyDecision("skip", f"skipped: run(s) {ids} still running (concurrency 'skip')")
    if policy == "queue":
        return ConcurrencyDecision("queue", f"queued behind run(s) {ids} (concurrency 'queue')")
    return ConcurrencyDecision(
        "cancel-and-start", f"cancels run(s) {ids} (concurrency 'cancel-previous')", tuple(running)
    )


def check_concurrency(policy: Any) -> str:
    if policy not in CONCURRENCY:
        raise InvalidArgument(f"Concurrency policy {policy!r} is not one of {', '.join(CONCURRENCY)}.")
    return str(policy)


def matching_triggers(
    triggers: Sequence[Trigger], event_type: str, payload: Mapping[str, Any]
) -> list[Trigger]:
    """The triggers an outbox event concerns."""
    return [t for t in triggers if t.matches(event_type, payload)]


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
