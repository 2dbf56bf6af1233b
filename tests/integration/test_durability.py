"""Several processes writing at once, and a process killed with SIGKILL mid-write."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest
from sqlalchemy import func, select, text

from gyre.meta import MetaStore
from gyre.meta.schema import LatestMetric, Metric
from gyre.tracking import service as t

pytestmark = pytest.mark.integration

WRITER = textwrap.dedent(
    """
    import sys
    from gyre.meta import MetaStore
    from gyre.tracking import service as t

    url, run_id, worker = sys.argv[1:4]
    batches, size = int(sys.argv[4]), int(sys.argv[5])
    meta = MetaStore(url, actor=f"worker-{worker}")
    done = 0
    for b in range(batches):
        points = [(f"w{worker}", float(i), b * size + i, 0) for i in range(size)]
        t.log_batch(meta, run_id, points)
        done += size
        print(done, flush=True)  # acknowledged: log_batch returned after the commit
    """
)


def _writer(url: str, run_id: str, worker: int, batches: int, size: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, url, run_id, str(worker), str(batches), str(size)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _count(meta: MetaStore, run_id: str, key: str | None = None) -> int:
    q = select(func.count()).select_from(Metric).where(Metric.run_id == run_id)
    if key:
        q = q.where(Metric.key == key)
    with meta.read() as s:
        return s.scalar(q)


def test_four_processes_logging_to_one_run_lose_nothing(meta: MetaStore, meta_url: str) -> None:
    run = t.create_run(meta, "concurrency")
    procs = [_writer(meta_url, run.id, w, batches=40, size=25) for w in range(4)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert "locked" not in err
    assert _count(meta, run.id) == 4 * 40 * 25
    assert t.get_run(meta, run.id).metrics == {f"w{w}": 24.0 for w in range(4)}


def test_kill_9_mid_logging_leaves_the_store_consistent(meta: MetaStore, meta_url: str) -> None:
    run = t.create_run(meta, "crash")
    proc = _writer(meta_url, run.id, 0, batches=100_000, size=100)
    acknowledged = 0
    assert proc.stdout is not None
    for line in proc.stdout:
        acknowledged = int(line)
        if acknowledged >= 3000:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    proc.stdout.close()
    proc.stderr.close()

    stored = _count(meta, run.id)
    assert stored >= acknowledged, "an acknowledged point was lost"
    assert stored % 100 == 0, "a batch was half written"
    with meta.read() as s:
        latest = s.execute(select(LatestMetric.step).where(LatestMetric.run_id == run.id)).scalar()
        max_step = s.scalar(select(func.max(Metric.step)).where(Metric.run_id == run.id))
        if meta.dialect.name == "sqlite":
            assert s.execute(text("PRAGMA integrity_check")).scalar() == "ok"
    assert latest == max_step
    # The store keeps working for the next writer.
    t.log_batch(meta, run.id, [("after", 1.0, 0, 0)])
    assert _count(meta, run.id, "after") == 1
