"""Concurrency policies applied by ``gyre run``: skip, queue, cancel-previous — across processes.

The first run is a real ``gyre run`` in another process, holding in a step until the test
releases it; the second is started here. Files tell what each step did.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import Result

from gyre.client.client import Client
from gyre.ids import utcnow
from gyre.pipelines.concurrency import admit, live_runs
from gyre.pipelines.runner import HEARTBEAT_TAG, PIPELINE_TAG, TRIGGER_TAG
from gyre.project import project_definitions

Invoke = Callable[..., Result]

DEFINITIONS = '''
import time
from pathlib import Path

import gyre


@gyre.step(cache=False)
def hold(folder: str, tag: str) -> str:
    """Say it started, wait for the test to release it (at most a minute), say it is done."""
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


@gyre.pipeline(concurrency="queue")
def hold_queue(folder: str = "", tag: str = ""):
    return hold(folder, tag)


@gyre.pipeline(concurrency="cancel-previous")
def hold_cancel(folder: str = "", tag: str = ""):
    return hold(folder, tag)
'''


@pytest.fixture
def hold_project(project: Path, client: Client) -> Path:
    (project / "definitions.py").write_text(DEFINITIONS)
    sys.modules.pop("gyre_project.definitions", None)
    (project / "flags").mkdir()
    return project


@pytest.fixture
def background() -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start ``gyre ARGS`` in another process; every one still running is killed at the end."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(project: Path, *args: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gyre.cli.main", *args],
            cwd=project,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)  # also closes its output pipe


def _wait_for(path: Path, proc: subprocess.Popen[bytes] | None = None, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(
                f"the process ended first: {proc.stdout.read().decode() if proc.stdout else ''}"
            )
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.05)


def _runs(client: Client, pipeline: str) -> list:
    return client.runs.list(filter=f"tags.`gyre.pipeline` = '{pipeline}'", order_by=["start_time ASC"])


def test_skip_does_not_start_a_second_run(
    cli: Invoke, hold_project: Path, client: Client, background: Callable[..., subprocess.Popen[bytes]]
) -> None:
    flags = hold_project / "flags"
    first = background(hold_project, "run", "hold_skip", "-p", f"folder={flags}", "-p", "tag=a")
    _wait_for(flags / "started-a", first)
    result = cli("run", "hold_skip", "-p", f"folder={flags}", "-p", "tag=b")
    assert result.exit_code == 0, result.output
    assert (
        "Not started: skipped: run(s)" in result.stdout
        and "still running (concurrency 'skip')" in result.stdout
    )
    as_json = json.loads(cli("run", "hold_skip", "-p", f"folder={flags}", "-p", "tag=b", "--json").stdout)
    assert as_json["skipped"] is True
    assert not (flags / "started-b").exists()
    (flags / "release-a").write_text("")
    assert first.wait(60) == 0
    assert [r.status for r in _runs(client, "hold_skip")] == ["FINISHED"]


def test_queue_starts_after_the_running_one_ends(
    cli: Invoke, hold_project: Path, client: Client, background: Callable[..., subprocess.Popen[bytes]]
) -> None:
    flags = hold_project / "flags"
    first = background(hold_project, "run", "hold_queue", "-p", f"folder={flags}", "-p", "tag=a")
    _wait_for(flags / "started-a", first)
    (flags / "release-b").write_text("")  # the second run, once started, ends at once
    out: dict[str, Result] = {}
    second = threading.Thread(
        target=lambda: out.setdefault("r", cli("run", "hold_queue", "-p", f"folder={flags}", "-p", "tag=b"))
    )
    second.start()
    time.sleep(2.0)  # time for the second to start, were it not queued
    assert not (flags / "started-b").exists()
    assert len(_runs(client, "hold_queue")) == 1
    (flags / "release-a").write_text("")
    assert first.wait(60) == 0
    second.join(60)
    assert out["r"].exit_code == 0, out["r"].output
    assert "Queued: queued behind run(s)" in out["r"].stdout
    a, b = _runs(client, "hold_queue")
    assert a.status == b.status == "FINISHED"
    assert a.end_time is not None and b.start_time >= a.end_time
    assert "started after waiting" in b.tags["gyre.pipeline.reason"]


def test_cancel_previous_stops_a_run_in_another_process(
    cli: Invoke, hold_project: Path, client: Client, background: Callable[..., subprocess.Popen[bytes]]
) -> None:
    flags = hold_project / "flags"
    first = background(hold_project, "run", "hold_cancel", "-p", f"folder={flags}", "-p", "tag=a")
    _wait_for(flags / "started-a", first)
    (flags / "release-b").write_text("")
    result = cli("run", "hold_cancel", "-p", f"folder={flags}", "-p", "tag=b")
    assert result.exit_code == 0, result.output
    a, b = _runs(client, "hold_cancel")
    assert f"Cancelled run(s) {a.id}" in result.stdout
    assert first.wait(60) == 1  # its own `gyre run` reports the run ended KILLED
    a = client.runs.get(a.id)
    assert a.status == "KILLED" and "a newer run of pipeline 'hold_cancel' started" in (a.error or "")
    step = client.runs.list(parent_run_id=a.id)[0]
    assert step.status == "KILLED"
    assert not (flags / "done-a").exists()  # its worker was stopped, not left to finish
    assert client.runs.get(b.id).status == "FINISHED"


def test_a_run_whose_process_died_does_not_block_for_ever(hold_project: Path, client: Client) -> None:
    pipe = project_definitions(client.settings).get("pipeline", "hold_skip")
    stale = (utcnow() - timedelta(minutes=10)).isoformat()
    # Run records as a runner leaves them: one whose process died 10 minutes ago, one alive.
    dead = client.backend.create_run(
        "hold_skip", tags={PIPELINE_TAG: "hold_skip", TRIGGER_TAG: "manual", HEARTBEAT_TAG: stale}
    )
    alive = client.backend.create_run(
        "hold_skip",
        tags={PIPELINE_TAG: "hold_skip", TRIGGER_TAG: "manual", HEARTBEAT_TAG: utcnow().isoformat()},
    )
    assert [r.id for r in live_runs(client, "hold_skip")] == [alive.id]
    assert client.runs.get(dead.id).status == "FAILED"
    assert "No heartbeat since" in (client.runs.get(dead.id).error or "")
    assert admit(client, pipe).action == "skip"  # type: ignore[arg-type]
    client.runs.finish(alive.id, "FINISHED")
    assert admit(client, pipe).action == "start"  # type: ignore[arg-type]
