"""Pipelines on a real local Ray cluster, started by the test (``ray.init(num_cpus=2)``).

Fails in CI when Ray is missing (it is in the ``dev`` extra), skips elsewhere.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import gyre
from gyre.client.client import Client
from gyre.pipelines import run_pipeline
from gyre.pipelines.executors import open_executor

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Any]:
    try:
        import ray
    except ImportError as exc:
        _need("Ray (pip install 'gyre-ml[ray]')", str(exc))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def _need(name: str, reason: str) -> None:
    # As tests/conftest.py's need_service (test modules cannot import conftest modules).
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"{name} is required in CI but unavailable: {reason}")
    pytest.skip(f"{name} unavailable: {reason}")


@gyre.step
def numbers(n: int) -> list[int]:
    return list(range(n))


@gyre.step(cpus=2, memory=64 * 1024 * 1024)
def resources(xs: list[int]) -> dict[str, float]:
    import ray

    return dict(ray.get_runtime_context().get_assigned_resources())


@gyre.step(cache=False)
def nap(tag: str) -> tuple[float, float]:
    start = time.time()
    time.sleep(1.5)
    return start, time.time()


@gyre.step(timeout_s=1.0, cache=False)
def stuck(folder: str) -> None:
    (Path(folder) / "pid").write_text(str(os.getpid()))
    time.sleep(60)


@gyre.step(retries=1, backoff_s=0.0, cache=False)
def killed_once(folder: str) -> int:
    marker = Path(folder) / "killed"
    if not marker.exists():
        marker.write_text("1")
        os.kill(os.getpid(), signal.SIGKILL)
    return 42


@gyre.pipeline
def on_ray(n: int = 5):
    return {"resources": resources(numbers(n))}


@gyre.pipeline
def naps():
    return [nap("a"), nap("b")]


@gyre.pipeline
def stuck_pipeline(folder: str = ""):
    return stuck(folder)


@gyre.pipeline
def survivor(folder: str = ""):
    return killed_once(folder)


def test_steps_run_as_ray_tasks_with_their_resources(ray_cluster: Any, client: Client) -> None:
    run = run_pipeline(client, on_ray, {}, compute="ray:local")
    assert run.ok, run.error
    assigned = run.result["resources"]
    assert assigned["CPU"] == 2.0 and assigned["memory"] == 64 * 1024 * 1024
    again = run_pipeline(client, on_ray, {}, compute="ray:local")
    assert {s.status for s in again.steps.values()} == {"cached"}
    assert ray_cluster.is_initialized()  # an existing session is used, not shut down


def test_independent_steps_overlap_on_two_cpus(ray_cluster: Any, client: Client) -> None:
    with open_executor("ray:local") as executor:
        # A first run makes Ray start its second worker process, which on a busy machine can
        # take longer than a nap; the second run shows whether the executor overlaps steps.
        run_pipeline(client, naps, {}, executor=executor)
        run = run_pipeline(client, naps, {}, executor=executor)
    assert run.ok, run.error
    (a0, a1), (b0, b1) = run.result
    assert a0 < b1 and b0 < a1


def test_a_timeout_cancels_the_ray_task(ray_cluster: Any, client: Client, tmp_path: Path) -> None:
    started = time.perf_counter()
    run = run_pipeline(client, stuck_pipeline, {"folder": str(tmp_path)}, compute="ray:local")
    assert run.status == "FAILED" and time.perf_counter() - started < 30
    step = client.runs.get(run.steps["stuck"].run_id)
    assert "timeout of 1s" in (step.error or "")
    pid = int((tmp_path / "pid").read_text())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"the Ray worker {pid} running the timed-out step is still alive")


def test_a_killed_ray_worker_is_retried(ray_cluster: Any, client: Client, tmp_path: Path) -> None:
    run = run_pipeline(client, survivor, {"folder": str(tmp_path)}, compute="ray:local")
    assert run.ok, run.error
    assert run.result == 42 and run.steps["killed_once"].attempts == 2
    step = client.runs.get(run.steps["killed_once"].run_id)
    assert "WorkerLost" in step.tags["gyre.attempt.1.error"]
