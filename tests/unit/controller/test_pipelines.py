"""The controller starts pipelines: new dataset versions, cron slots, alerts, run requests.

A real controller over a real metadata store (SQLite, and PostgreSQL where the outbox's
exactly-once matters), real ingests and a real alert engine; the pipelines run on the local
executor in worker processes.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from sqlalchemy import select

from gyre.client.client import Client, connect
from gyre.config import load_settings
from gyre.controller import Controller
from gyre.controller.builtin import default_reactions, default_schedules
from gyre.controller.pipelines import (
    ALERT_TAG,
    RUN_SKIPPED,
    TRIGGERED,
    PipelineLauncher,
    pipeline_reaction,
    pipelines_schedule,
)
from gyre.ids import utcnow
from gyre.meta.schema import Event
from gyre.monitoring.engine import AlertEngine
from gyre.project import apply, project_definitions

DEFINITIONS = """
import time
from pathlib import Path

import gyre
from gyre.monitoring.alerts import FeatureViewStale, RunPipeline
from gyre.pipelines import AlertFired, NewData

payments = gyre.Dataset("payments", keys=["payment_id"], event_time="ts")
user = gyre.Entity("user", join_keys=["user_id"])
user_activity = gyre.FeatureView(
    "user_activity", entity=user, source=payments, max_lag="1h",
    features=[gyre.Aggregate("amount", "sum", window="1h")],
)
stale = gyre.AlertRule(
    "features_stale",
    condition=FeatureViewStale(),
    actions=["log", RunPipeline("on_alert"), RunPipeline("on_request", params={"label": "asked"})],
)


@gyre.step(cache=False)
def note(label: str) -> str:
    return label


@gyre.pipeline(triggers=[NewData("payments", min_new_rows=10)])
def on_data(label: str = "data"):
    return note(label)


@gyre.pipeline(schedule="0 3 * * *")
def nightly(label: str = "night"):
    return note(label)


@gyre.pipeline(triggers=[AlertFired(rule="features_stale")])
def on_alert(label: str = "alert"):
    return note(label)


@gyre.pipeline
def on_request(label: str = "manual"):
    return note(label)


@gyre.step(cache=False)
def hold(folder: str, tag: str) -> str:
    root = Path(folder)
    (root / f"started-{tag}").write_text("")
    deadline = time.monotonic() + 60
    while not (root / f"release-{tag}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    (root / f"done-{tag}").write_text("")
    return tag


@gyre.pipeline(concurrency="skip")
def hold_skip(folder: str = "", tag: str = ""):
    return hold(folder, tag)


@gyre.pipeline(concurrency="cancel-previous")
def hold_cancel(folder: str = "", tag: str = ""):
    return hold(folder, tag)


@gyre.step(cache=False)
def boom() -> None:
    raise RuntimeError("the training data is corrupt")


@gyre.pipeline
def broken():
    return boom()
"""

SQLITE_ONLY = pytest.mark.parametrize("meta_url", ["sqlite"], indirect=True)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, meta_url: str) -> Path:
    """A project on the parametrized metadata store (SQLite or PostgreSQL), with the pipelines above."""
    (tmp_path / "gyre.toml").write_text(
        f'[project]\nname = "loop"\n\n[backends]\nmetadata = "{meta_url}"\nstore = "file://.gyre/store"\n'
    )
    (tmp_path / "definitions.py").write_text(DEFINITIONS)
    (tmp_path / "flags").mkdir()
    monkeypatch.chdir(tmp_path)
    sys.modules.pop("gyre_project.definitions", None)
    return tmp_path


@pytest.fixture
def client(project: Path) -> Iterator[Client]:
    c = connect(settings=load_settings(project))
    apply(c.backend.meta, project_definitions(c.settings))  # type: ignore[attr-defined]
    yield c
    c.close()


class Clock:
    """The wall clock shifted by hand (run records keep real times; back-off compares with them)."""

    def __init__(self, start: datetime | None = None) -> None:
        self.offset = timedelta(0) if start is None else start - utcnow()

    def __call__(self) -> datetime:
        return utcnow() + self.offset

    def advance(self, delta: timedelta) -> None:
        self.offset += delta


@pytest.fixture
def launchers(project: Path) -> Iterator[Callable[..., PipelineLauncher]]:
    made: list[PipelineLauncher] = []

    def make(**options: Any) -> PipelineLauncher:
        launcher = PipelineLauncher.from_settings(load_settings(project), poll_s=0.2, **options)
        made.append(launcher)
        return launcher

    yield make
    for launcher in made:
        launcher.close(timeout=60)


def _controller(
    client: Client, launcher: PipelineLauncher, clock: Callable[[], datetime] = utcnow
) -> Controller:
    return Controller(
        client.backend.meta,  # type: ignore[attr-defined]
        [pipeline_reaction(launcher)],
        schedules=[pipelines_schedule()],
        clock=clock,
    )


def _payments(folder: Path, rows: int) -> pa.Table:
    """``rows`` new payments, their ids following those of the batches already written."""
    start = len(list(folder.glob("batch-*.parquet"))) * 1000
    return pa.table(
        {
            "payment_id": [f"p{start + i}" for i in range(rows)],
            "user_id": [i % 5 for i in range(rows)],
            "amount": [float(i) for i in range(rows)],
            "ts": pa.array([datetime(2026, 1, 1, tzinfo=UTC)] * rows, pa.timestamp("us", tz="UTC")),
        }
    )


def _runs(client: Client, pipeline: str) -> list[Any]:
    return client.runs.list(filter=f"tags.`gyre.pipeline` = '{pipeline}'", order_by=["start_time ASC"])


def _events(client: Client, event_type: str) -> list[Event]:
    with client.backend.meta.read() as s:  # type: ignore[attr-defined]
        return list(s.scalars(select(Event).where(Event.type == event_type).order_by(Event.seq)))


def _request(client: Client, pipeline: str, **params: Any) -> None:
    """A run request, as an alert's RunPipeline action writes it."""
    with client.backend.meta.write() as uow:  # type: ignore[attr-defined]
        uow.record(
            "pipeline.run_requested",
            f"pipeline:{pipeline}",
            {"pipeline": pipeline, "params": params, "reason": "asked by the test"},
        )


def _wait_for(path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.05)


# -- new data ----------------------------------------------------------------------------------


def test_a_new_dataset_version_runs_the_pipeline_once(
    project: Path,
    client: Client,
    launchers: Callable[..., PipelineLauncher],
    ingest_table: Callable[..., int],
) -> None:
    launcher = launchers()
    controller = _controller(client, launcher)
    controller.run_once()  # the reaction starts from now
    ingest_table(_payments(project, 20), "batch-a")
    controller.run_once()
    assert launcher.wait_idle(120)
    controller.run_once()  # nothing new: the same version does not start it again
    assert launcher.wait_idle(120)
    runs = _runs(client, "on_data")
    assert len(runs) == 1 and runs[0].status == "FINISHED"
    tags = runs[0].tags
    assert tags["gyre.pipeline.trigger"] == "new_data"
    assert tags["gyre.pipeline.reason"] == "20 new row(s) of 'payments' (v0)"
    created = _events(client, "dataset.version_created")[-1]
    assert tags["gyre.pipeline.event"] == created.id  # lineage: which event started it

    # Fewer rows than min_new_rows wait; they add up with the next version.
    ingest_table(_payments(project, 4), "batch-b")
    controller.run_once()
    assert launcher.wait_idle(120) and len(_runs(client, "on_data")) == 1
    ingest_table(_payments(project, 6), "batch-c")
    controller.run_once()
    assert launcher.wait_idle(120)
    runs = _runs(client, "on_data")
    assert len(runs) == 2 and runs[1].tags["gyre.pipeline.reason"] == "10 new row(s) of 'payments' (v1-v2)"


def test_two_controllers_start_one_run(
    project: Path,
    client: Client,
    launchers: Callable[..., PipelineLauncher],
    meta_url: str,
    ingest_table: Callable[..., int],
) -> None:
    a, b = launchers(), launchers()
    other = connect(settings=load_settings(project))
    try:
        first, second = _controller(client, a), _controller(other, b)
        first.run_once()
        second.run_once()
        ingest_table(_payments(project, 30), "batch-a")
        threads = [threading.Thread(target=c.run_once) for c in (first, second, first, second)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert a.wait_idle(120) and b.wait_idle(120)
        assert len(_runs(client, "on_data")) == 1
        assert len(_events(client, TRIGGERED)) == 1
    finally:
        other.close()


# -- cron ----------------------------------------------------------------------------------------


def test_a_cron_slot_fires_once_across_controllers(
    project: Path, client: Client, launchers: Callable[..., PipelineLauncher]
) -> None:
    clock = Clock(datetime(2030, 6, 1, 2, 59, 30, tzinfo=UTC))
    a, b = launchers(), launchers()
    other = connect(settings=load_settings(project))
    try:
        first, second = _controller(client, a, clock), _controller(other, b, clock)
        first.run_once()  # the pipelines schedule starts now: 02:59:30
        second.run_once()
        assert _runs(client, "nightly") == []
        clock.advance(timedelta(minutes=1))  # 03:00:30: the 03:00 tick is due
        second.run_once()
        first.run_once()
        clock.advance(timedelta(minutes=1))  # 03:01:30: another tick, no slot
        first.run_once()
        second.run_once()
        assert a.wait_idle(120) and b.wait_idle(120)
    finally:
        other.close()
    runs = _runs(client, "nightly")
    assert len(runs) == 1 and runs[0].status == "FINISHED"
    assert runs[0].tags["gyre.pipeline.trigger"] == "schedule"
    assert runs[0].tags["gyre.pipeline.reason"] == "schedule '0 3 * * *' (slot 2030-06-01 03:00 UTC)"
    assert [e.subject for e in _events(client, TRIGGERED)] == ["pipeline:nightly/schedule:0 3 * * *"]
    assert _runs(client, "on_data") == []  # never fired before: only a new version starts it


# -- alerts --------------------------------------------------------------------------------------


def test_a_fired_alert_runs_its_pipelines_with_the_alert_recorded(
    project: Path, client: Client, launchers: Callable[..., PipelineLauncher]
) -> None:
    launcher = launchers()
    controller = _controller(client, launcher)
    controller.run_once()
    engine = AlertEngine(
        client.backend.meta,  # type: ignore[attr-defined]
        client.features.lake,
        client.backend.blobs,
        features=client.features,
    )
    try:
        fired = engine.evaluate()  # the view has no data: stale; actions request two runs
    finally:
        engine.close(timeout=5)
    assert [t.status for t in fired] == ["firing"]
    alert_id = fired[0].history_id
    controller.run_once()
    assert launcher.wait_idle(120)

    # on_alert matches by its AlertFired trigger and is also named by a RunPipeline action: one run.
    (alert_run,) = _runs(client, "on_alert")
    (requested,) = _runs(client, "on_request")
    for run in (alert_run, requested):
        assert run.status == "FINISHED"
        assert run.tags[ALERT_TAG] == alert_id
        assert run.tags["gyre.pipeline.trigger"] == "alert"
        assert "alert 'features_stale' fired" in run.tags["gyre.pipeline.reason"]
    assert requested.params == {"label": "asked"}  # the action's params


# -- concurrency, failures ------------------------------------------------------------------------


@SQLITE_ONLY
def test_cancel_previous_and_skip_in_the_controller(
    project: Path, client: Client, launchers: Callable[..., PipelineLauncher]
) -> None:
    flags = project / "flags"
    launcher = launchers()
    controller = _controller(client, launcher)
    controller.run_once()

    _request(client, "hold_cancel", folder=str(flags), tag="a")
    controller.run_once()
    _wait_for(flags / "started-a")
    (flags / "release-b").write_text("")
    _request(client, "hold_cancel", folder=str(flags), tag="b")
    controller.run_once()

    _request(client, "hold_skip", folder=str(flags), tag="c")
    controller.run_once()
    _wait_for(flags / "started-c")
    _request(client, "hold_skip", folder=str(flags), tag="d")
    controller.run_once()
    deadline = time.monotonic() + 60
    while not _events(client, RUN_SKIPPED) and time.monotonic() < deadline:
        time.sleep(0.05)
    (flags / "release-c").write_text("")
    assert launcher.wait_idle(120)

    a, b = _runs(client, "hold_cancel")
    assert a.status == "KILLED" and "a newer run of pipeline 'hold_cancel' started" in (a.error or "")
    assert not (flags / "done-a").exists()
    assert b.status == "FINISHED" and "cancels run(s)" in b.tags["gyre.pipeline.reason"]
    assert [r.status for r in _runs(client, "hold_skip")] == ["FINISHED"]
    (skipped,) = _events(client, RUN_SKIPPED)
    assert (
        skipped.payload["params"]["tag"] == "d"
        and "still running (concurrency 'skip')" in skipped.payload["skipped"]
    )
    assert not (flags / "started-d").exists()


@SQLITE_ONLY
def test_a_failing_pipeline_backs_off_instead_of_hot_looping(
    project: Path, client: Client, launchers: Callable[..., PipelineLauncher]
) -> None:
    clock = Clock()
    launcher = launchers(failure_backoff=timedelta(minutes=1), clock=clock)
    controller = _controller(client, launcher)
    controller.run_once()

    def request_and_wait() -> None:
        _request(client, "broken")
        controller.run_once()
        assert launcher.wait_idle(120)

    request_and_wait()
    assert [r.status for r in _runs(client, "broken")] == ["FAILED"]
    request_and_wait()  # within a minute of the failure: not started
    assert len(_runs(client, "broken")) == 1
    (skipped,) = _events(client, RUN_SKIPPED)
    assert "backing off after 1 failed run(s) in a row" in skipped.payload["skipped"]
    clock.offset = timedelta(minutes=2)
    request_and_wait()  # the back-off has passed: it runs (and fails) again
    assert [r.status for r in _runs(client, "broken")] == ["FAILED", "FAILED"]
    clock.offset = timedelta(minutes=1, seconds=30)  # after the second failure
    request_and_wait()  # two failures in a row: two minutes now
    assert len(_runs(client, "broken")) == 2
    assert "after 2 failed run(s)" in _events(client, RUN_SKIPPED)[-1].payload["skipped"]


@SQLITE_ONLY
def test_requests_that_cannot_start_are_recorded(
    project: Path, client: Client, launchers: Callable[..., PipelineLauncher]
) -> None:
    launcher = launchers()
    controller = _controller(client, launcher)
    controller.run_once()
    _request(client, "no_such_pipeline")
    _request(client, "on_request", label=5)  # label is a str parameter
    controller.run_once()
    assert launcher.wait_idle(120)
    (skipped,) = _events(client, RUN_SKIPPED)
    assert skipped.payload["skipped"] == "no pipeline named 'no_such_pipeline' is declared in the project"
    (bad,) = _runs(client, "on_request")
    assert bad.status == "FAILED" and "The run could not start: InvalidArgument" in (bad.error or "")
    assert "parameter 'label' expects str" in (bad.error or "")


@SQLITE_ONLY
def test_the_default_controller_runs_pipelines(
    project: Path, client: Client, launchers: Callable[..., PipelineLauncher]
) -> None:
    launcher = launchers()
    controller = Controller(
        client.backend.meta,  # type: ignore[attr-defined]
        default_reactions(client.features, None, launcher),
        schedules=default_schedules(),
    )
    assert "pipelines.triggers" in [r.name for r in controller.reactions]
    assert "pipelines" in [s.name for s in controller.schedules]
    controller.run_once()
    _request(client, "on_request")
    controller.run_once()
    assert launcher.wait_idle(120)
    assert [r.tags["gyre.pipeline.trigger"] for r in _runs(client, "on_request")] == ["request"]


@SQLITE_ONLY
def test_gyre_controller_once_waits_for_the_runs_it_started(
    project: Path, client: Client, ingest_table: Callable[..., int]
) -> None:
    from typer.testing import CliRunner

    from gyre.cli.main import app

    runner = CliRunner()
    first = runner.invoke(app, ["controller", "--once"], catch_exceptions=False)
    assert first.exit_code == 0, first.output  # the reactions start from now
    ingest_table(_payments(project, 15), "batch-a")
    second = runner.invoke(app, ["controller", "--once"], catch_exceptions=False)
    assert second.exit_code == 0, second.output
    (run,) = _runs(client, "on_data")
    assert run.status == "FINISHED" and run.tags["gyre.pipeline.trigger"] == "new_data"
