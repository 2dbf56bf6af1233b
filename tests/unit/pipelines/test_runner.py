"""Running pipelines on the local executor: tracking, caching, retries, timeouts, failures, parallelism.

Real worker processes, a real metadata store and artifact store; no mocks.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import gyre
from gyre.client.client import Client
from gyre.errors import InvalidArgument
from gyre.pipelines import StepEvent, cancel_run, current_step, run_pipeline
from gyre.pipelines.executors import open_executor
from gyre.pipelines.executors.local import LocalExecutor

# -- steps (module level: workers import this module by its file) --------------------------------


@gyre.step
def numbers(n: int) -> list[int]:
    return list(range(n))


@gyre.step
def double(xs: list[int]) -> list[int]:
    current_step().log_metric("doubled", len(xs))
    return [2 * x for x in xs]


@gyre.step
def add(xs: list[int], k: int) -> list[int]:
    return [x + k for x in xs]


@gyre.step(name="total")
def total_v1(xs: list[int]) -> int:
    return sum(xs)


@gyre.step(name="total")
def total_v2(xs: list[int]) -> int:
    return sum(xs) + 0  # same result, other code: a new cache key


@gyre.pipeline
def arithmetic(n: int = 4, k: int = 1):
    d = double(numbers(n))
    return {"doubled": d, "plus": add(d, k), "total": total_v1(d)}


@gyre.pipeline(name="arithmetic")
def arithmetic_edited(n: int = 4, k: int = 1):
    d = double(numbers(n))
    return {"doubled": d, "plus": add(d, k), "total": total_v2(d)}


def _bump(folder: str, name: str) -> int:
    """Count calls across processes with a file: returns this call's number (1, 2, ...)."""
    path = Path(folder) / name
    count = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(count))
    return count


@gyre.step(retries=2, backoff_s=0.2)
def flaky(folder: str) -> str:
    if _bump(folder, "flaky") < 3:
        raise ConnectionError("the database blinked")
    return "ok"


@gyre.step
def fragile(folder: str) -> str:
    _bump(folder, "fragile")
    raise ConnectionError("no retries declared")


@gyre.pipeline
def flaky_pipeline(folder: str = ""):
    return flaky(folder)


@gyre.pipeline
def fragile_pipeline(folder: str = ""):
    return fragile(folder)


# The timeout counts from the task's hand-over, so it includes a fresh worker importing this
# module (pytest and all): 3 s leaves room on a loaded machine, and the step sleeps far longer.
@gyre.step(timeout_s=3, cache=False)
def sleepy(folder: str) -> None:
    (Path(folder) / "pid").write_text(str(os.getpid()))
    time.sleep(30)


@gyre.pipeline
def sleepy_pipeline(folder: str = ""):
    return sleepy(folder)


class BadData(ValueError):
    pass


@gyre.step
def explode(xs: list[int]) -> list[int]:
    raise BadData(f"row {len(xs)} has a negative amount")


@gyre.step
def fit_model(xs: list[int]) -> Any:
    from sklearn.dummy import DummyClassifier

    return DummyClassifier().fit([[x] for x in xs], [x % 2 for x in xs])


@gyre.pipeline
def exploding(n: int = 3):
    bad = explode(numbers(n))
    return {"model": fit_model(bad)}


@gyre.step(cache=False)
def nap(folder: str, name: str) -> float:
    start = time.time()
    time.sleep(1.0)
    (Path(folder) / name).write_text(f"{start} {time.time()}")
    return start


@gyre.pipeline
def two_naps(folder: str = ""):
    return [nap(folder, "a"), nap(folder, "b")]


@gyre.step(retries=1, backoff_s=0.0, cache=False)
def killed_once(folder: str) -> int:
    if _bump(folder, "killed") == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return os.getpid()


@gyre.step(cache=False)
def killed_always(folder: str) -> int:
    os.kill(os.getpid(), signal.SIGKILL)
    return 0


@gyre.pipeline
def survivor(folder: str = ""):
    return killed_once(folder)


@gyre.pipeline
def casualty(folder: str = ""):
    return killed_always(folder)


class Versions:
    dataset_versions = {"payments": 7}

    def __init__(self, rows: int) -> None:
        self.rows = rows


@gyre.step
def training_set(n: int) -> Versions:
    return Versions(n)


@gyre.step
def train_on(ts: Versions) -> Any:
    from sklearn.dummy import DummyClassifier

    current_step().log_metric("auc", 0.75)
    return DummyClassifier().fit([[0], [1]], [0, 1])


@gyre.pipeline
def lineage(n: int = 5):
    return {"model": train_on(training_set(n))}


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def executor() -> Any:
    """One pool of two workers for the tests that do not need their own."""
    ex = LocalExecutor(max_workers=2)
    yield ex
    ex.close()


def _children(client: Client, run_id: str) -> dict[str, Any]:
    return {r.name: r for r in client.runs.list(parent_run_id=run_id)}


# -- tests -----------------------------------------------------------------------------------


def test_a_run_is_tracked_with_a_child_run_per_step(client: Client, executor: LocalExecutor) -> None:
    events: list[StepEvent] = []
    run = run_pipeline(client, arithmetic, {"n": 3}, executor=executor, on_event=events.append)
    assert run.ok and run.result == {"doubled": [0, 2, 4], "plus": [1, 3, 5], "total": 6}
    info = client.runs.get(run.run_id)
    assert info.status == "FINISHED" and info.experiment == "arithmetic"
    assert info.params == {"n": "3", "k": "1"}
    assert info.tags["gyre.pipeline"] == "arithmetic" and info.tags["gyre.pipeline.trigger"] == "manual"
    assert info.metrics["doubled"] == 3  # step metrics reach the pipeline run (gates read them)
    steps = _children(client, run.run_id)
    assert set(steps) == {"numbers", "double", "add", "total"}
    assert all(s.status == "FINISHED" and s.tags["gyre.cache"] == "miss" for s in steps.values())
    assert steps["add"].params == {"k": "1"}
    assert steps["add"].tags["gyre.input.xs"].startswith("double@")
    assert steps["double"].metrics == {"doubled": 3.0}
    assert len(steps["numbers"].tags["gyre.output"]) == 64
    kinds = [(e.step, e.kind) for e in events]
    assert kinds.index(("numbers", "finished")) < kinds.index(("double", "started"))


def test_second_run_is_served_from_the_cache(client: Client, executor: LocalExecutor) -> None:
    first = run_pipeline(client, arithmetic, {}, executor=executor)
    second = run_pipeline(client, arithmetic, {}, executor=executor)
    assert second.result == first.result
    assert {s.status for s in second.steps.values()} == {"cached"}
    steps = _children(client, second.run_id)
    assert all(s.tags["gyre.cache"] == "hit" for s in steps.values())
    assert steps["total"].tags["gyre.cache.source"] == first.steps["total"].run_id
    assert steps["double"].metrics == {"doubled": 4.0}  # the reused run's metrics come along
    assert client.runs.get(second.run_id).metrics == {"doubled": 4.0}  # and reach the pipeline run
    assert all(s.duration_s is not None for s in steps.values())


def test_changed_params_or_code_miss_the_cache(client: Client, executor: LocalExecutor) -> None:
    run_pipeline(client, arithmetic, {}, executor=executor)
    other_k = run_pipeline(client, arithmetic, {"k": 5}, executor=executor)
    status = {n: s.status for n, s in other_k.steps.items()}
    assert status == {"numbers": "cached", "double": "cached", "add": "finished", "total": "cached"}
    edited = run_pipeline(client, arithmetic_edited, {}, executor=executor)
    status = {n: s.status for n, s in edited.steps.items()}
    assert status == {"numbers": "cached", "double": "cached", "add": "cached", "total": "finished"}


def test_retries_with_backoff_only_where_declared(
    client: Client, tmp_path: Path, executor: LocalExecutor
) -> None:
    started = time.perf_counter()
    events: list[StepEvent] = []
    run = run_pipeline(
        client, flaky_pipeline, {"folder": str(tmp_path)}, executor=executor, on_event=events.append
    )
    assert run.ok and run.result == "ok"
    assert time.perf_counter() - started >= 0.2 + 0.4  # backoff 0.2 s, then doubled
    step = client.runs.get(run.steps["flaky"].run_id)
    assert step.tags["gyre.attempts"] == "3"
    assert "ConnectionError: the database blinked" in step.tags["gyre.attempt.1.error"]
    assert next(e.message for e in events if e.kind == "retrying").endswith("retry 1/2 in 0.2s")

    failed = run_pipeline(client, fragile_pipeline, {"folder": str(tmp_path)}, executor=executor)
    assert failed.status == "FAILED" and (tmp_path / "fragile").read_text() == "1"  # tried once


def test_a_timeout_really_stops_the_step(client: Client, tmp_path: Path) -> None:
    started = time.perf_counter()
    run = run_pipeline(client, sleepy_pipeline, {"folder": str(tmp_path)}, compute="local")
    assert run.status == "FAILED"
    assert time.perf_counter() - started < 25  # stopped, not left to sleep its 30 s
    step = client.runs.get(run.steps["sleepy"].run_id)
    assert step.status == "FAILED" and "timeout of 3s" in (step.error or "")
    pid = int((tmp_path / "pid").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the worker process is gone, not left sleeping


def test_a_raising_step_fails_the_run_with_its_traceback(client: Client, executor: LocalExecutor) -> None:
    run = run_pipeline(client, exploding, {}, executor=executor)
    assert run.status == "FAILED" and run.outcome is None
    assert run.steps["explode"].status == "failed" and run.steps["fit_model"].status == "pending"
    step = client.runs.get(run.steps["explode"].run_id)
    assert step.status == "FAILED"
    assert "Traceback" in (step.error or "") and "BadData: row 3 has a negative amount" in (step.error or "")
    pipeline_run = client.runs.get(run.run_id)
    assert pipeline_run.status == "FAILED" and "Step 'explode' failed after 1 attempt(s)" in (
        pipeline_run.error or ""
    )
    assert "fit_model" not in _children(client, run.run_id)  # never started
    assert client.models.list() == []  # nothing registered


def test_independent_steps_run_in_parallel(client: Client, tmp_path: Path, executor: LocalExecutor) -> None:
    run = run_pipeline(client, two_naps, {"folder": str(tmp_path)}, executor=executor)
    assert run.ok
    (a_start, a_end), (b_start, b_end) = (map(float, (tmp_path / n).read_text().split()) for n in ("a", "b"))
    # Each nap's own clock readings: they overlapped (no wall-clock bound, which a loaded machine breaks).
    assert a_start < b_end and b_start < a_end


def test_a_killed_worker_is_retried_or_fails_cleanly(client: Client, tmp_path: Path) -> None:
    run = run_pipeline(client, survivor, {"folder": str(tmp_path)}, compute="local")
    assert run.ok and run.steps["killed_once"].attempts == 2
    step = client.runs.get(run.steps["killed_once"].run_id)
    assert "killed by SIGKILL" in step.tags["gyre.attempt.1.error"]

    dead = run_pipeline(client, casualty, {"folder": str(tmp_path)}, compute="local")
    assert dead.status == "FAILED"
    assert client.runs.get(dead.run_id).status == "FAILED"
    step = client.runs.get(dead.steps["killed_always"].run_id)
    assert step.status == "FAILED" and "WorkerLost" in (step.error or "")


def test_lineage_and_metrics_reach_the_registered_model(client: Client, executor: LocalExecutor) -> None:
    run = run_pipeline(client, lineage, {}, executor=executor)
    assert run.ok and run.outcome is not None and run.outcome.decision == "registered"
    info = client.runs.get(run.run_id)
    assert info.tags["gyre.dataset.payments"] == "7"
    assert info.tags["gyre.model"] == "lineage/1"
    version = client.models.get_version("lineage", 1)
    assert version.dataset_versions == {"payments": 7}
    assert version.metrics["auc"] == 0.75 and version.run_id == run.run_id
    assert version.aliases == ["challenger"]


def test_bad_params_fail_before_anything_is_recorded(client: Client) -> None:
    with pytest.raises(InvalidArgument, match="parameter 'n' expects an integer"):
        run_pipeline(client, arithmetic, {"n": "many"}, params_from_text=True)
    assert client.runs.list() == []


def test_cancelling_a_run_stops_its_steps(client: Client, tmp_path: Path) -> None:
    out: dict[str, Any] = {}

    def go() -> None:
        out["run"] = run_pipeline(client, two_naps, {"folder": str(tmp_path)}, compute="local")

    thread = threading.Thread(target=go)
    thread.start()
    deadline = time.monotonic() + 10
    runs: list[Any] = []
    while not runs and time.monotonic() < deadline:
        runs = [r for r in client.runs.list() if r.parent_run_id is None]
        time.sleep(0.05)
    cancel_run(client, runs[0].id, "a newer run started")
    thread.join(20)
    assert out["run"].status == "KILLED"
    assert client.runs.get(runs[0].id).error == "a newer run started"
    assert not (tmp_path / "a").exists()  # the naps were stopped before they ended


def test_unknown_compute_backend(client: Client) -> None:
    with pytest.raises(InvalidArgument, match="Unknown compute backend 'spark://x'"):
        open_executor("spark://x")


@gyre.step
def objective(lr: float, depth: int) -> dict[str, float]:
    if depth > 5:
        raise ValueError("too deep")
    current_step().log_metric("epochs", 3)
    return {"score": 1.0 - abs(lr - 0.1) - depth / 100}


def test_trials_run_in_parallel_and_are_ranked(client: Client, executor: LocalExecutor) -> None:
    from gyre.pipelines import grid, run_trials

    space = grid(lr=[0.01, 0.1, 1.0], depth=[3, 9])
    assert len(space) == 6 and space[0] == {"lr": 0.01, "depth": 3}
    result = run_trials(client, objective, space, objective="score", executor=executor)
    assert result.best is not None and result.best.params == {"lr": 0.1, "depth": 3}
    assert [t.ok for t in result.trials] == [True, True, True, False, False, False]
    assert "ValueError: too deep" in (result.trials[-1].error or "")
    search = client.runs.get(result.run_id)
    assert search.tags["gyre.trials.best_run"] == result.best.run_id
    assert search.metrics["score"] == pytest.approx(0.97)
    children = client.runs.list(parent_run_id=result.run_id)
    assert len(children) == 6 and {r.status for r in children} == {"FINISHED", "FAILED"}
    best = client.runs.get(result.best.run_id)
    assert best.params == {"lr": "0.1", "depth": "3"} and best.metrics["epochs"] == 3
