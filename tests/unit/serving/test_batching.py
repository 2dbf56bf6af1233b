"""The batcher: concurrent requests share model calls, and each gets its own rows back."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from gyre.serving.batching import Batcher, Job
from gyre.serving.inputs import Prepared


def job(*values: float) -> Job:
    num = np.array([[v] for v in values], dtype=np.float64)
    return Job(Prepared(len(values), num, []), time.perf_counter())


class Model:
    """Doubles each row; records the batch sizes it saw; fails batches holding a -1."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.calls: list[int] = []
        self.delay_s = delay_s
        self.threads: set[str] = set()

    def run(self, jobs: list[Job]) -> None:
        self.threads.add(threading.current_thread().name)
        self.calls.append(sum(j.n for j in jobs))
        time.sleep(self.delay_s)
        for j in jobs:
            if (j.prepared.num == -1).any():
                j.error = ValueError("bad row")
            else:
                j.outputs = (j.prepared.num[:, 0] * 2).tolist()


async def submit_all(batcher: Batcher, jobs: list[Job]) -> list[Job]:
    async def one(j: Job) -> Job:
        batcher.arrive()
        await asyncio.sleep(0)  # the request reads its body
        return await batcher.submit(j)

    return list(await asyncio.gather(*(one(j) for j in jobs)))


def test_concurrent_requests_share_one_model_call_and_get_their_own_rows() -> None:
    model = Model()
    batcher = Batcher(model.run, max_batch_size=64, max_wait_s=0.002)
    jobs = [job(i) for i in range(20)]
    done = asyncio.run(submit_all(batcher, jobs))
    assert model.calls == [20] and batcher.batches == 1
    assert [j.outputs for j in done] == [[2.0 * i] for i in range(20)]


def test_batches_respect_max_batch_size_and_a_big_request_runs_alone() -> None:
    model = Model()
    batcher = Batcher(model.run, max_batch_size=8, max_wait_s=0.002)
    jobs = [job(i) for i in range(20)] + [job(*range(30))]
    done = asyncio.run(submit_all(batcher, jobs))
    assert model.calls == [8, 8, 4, 30]
    assert done[-1].outputs == [2.0 * i for i in range(30)]


def test_a_lone_request_does_not_wait() -> None:
    model = Model()
    batcher = Batcher(model.run, max_batch_size=64, max_wait_s=5.0)  # a wait would show

    async def lone() -> float:
        t = time.perf_counter()
        batcher.arrive()
        await batcher.submit(job(1.0))
        return time.perf_counter() - t

    assert asyncio.run(lone()) < 0.5
    assert model.calls == [1]


def test_a_batch_waits_for_requests_still_arriving_at_most_max_wait() -> None:
    model = Model()
    batcher = Batcher(model.run, max_batch_size=64, max_wait_s=0.05)

    async def scenario() -> tuple[list[Job], float]:
        batcher.arrive()
        batcher.arrive()  # a second request is reading its body
        t = time.perf_counter()
        first = asyncio.ensure_future(batcher.submit(job(1.0)))
        await asyncio.sleep(0.01)
        second = await batcher.submit(job(2.0))  # arrives within the wait: same batch
        return [await first, second], time.perf_counter() - t

    done, _ = asyncio.run(scenario())
    assert model.calls == [2] and [j.outputs for j in done] == [[2.0], [4.0]]

    async def never_arrives() -> float:
        batcher.arrive()
        batcher.arrive()  # this one never submits (a slow client)
        t = time.perf_counter()
        await batcher.submit(job(3.0))
        return time.perf_counter() - t

    waited = asyncio.run(never_arrives())
    assert 0.04 <= waited < 1.0 and model.calls == [2, 1]


def test_on_an_executor_requests_arriving_during_a_call_form_the_next_batch() -> None:
    model = Model(delay_s=0.05)
    with ThreadPoolExecutor(1, thread_name_prefix="model") as executor:
        batcher = Batcher(model.run, max_batch_size=64, max_wait_s=0.0, executor=executor)

        async def waves() -> list[Job]:
            first = asyncio.ensure_future(submit_all(batcher, [job(0)]))
            await asyncio.sleep(0.01)  # the first call is running
            rest = await submit_all(batcher, [job(i) for i in range(1, 11)])
            return [*(await first), *rest]

        done = asyncio.run(waves())
    assert model.calls == [1, 10]
    assert all(name.startswith("model") for name in model.threads)
    assert [j.outputs for j in done] == [[2.0 * i] for i in range(11)]


def test_errors_stay_with_their_jobs_and_a_crash_reaches_every_job() -> None:
    model = Model()
    batcher = Batcher(model.run, max_batch_size=64, max_wait_s=0.0)
    done = asyncio.run(submit_all(batcher, [job(1.0), job(-1.0)]))
    assert done[0].outputs == [2.0] and done[0].error is None
    assert isinstance(done[1].error, ValueError)

    def crash(jobs: list[Job]) -> None:
        raise RuntimeError("the batch runner itself failed")

    with ThreadPoolExecutor(1) as executor:
        crashing = Batcher(crash, max_batch_size=64, max_wait_s=0.0, executor=executor)
        done = asyncio.run(submit_all(crashing, [job(1.0), job(2.0)]))
    assert all(isinstance(j.error, RuntimeError) for j in done)


@pytest.mark.parametrize("refused", [1, 3])
def test_a_refused_request_does_not_hold_the_batch(refused: int) -> None:
    model = Model()
    batcher = Batcher(model.run, max_batch_size=64, max_wait_s=5.0)

    async def scenario() -> float:
        for _ in range(refused + 1):
            batcher.arrive()
        t = time.perf_counter()
        waiting = asyncio.ensure_future(batcher.submit(job(1.0)))
        await asyncio.sleep(0)
        for _ in range(refused):
            batcher.depart()  # e.g. its body was not JSON
        await waiting
        return time.perf_counter() - t

    assert asyncio.run(scenario()) < 1.0
