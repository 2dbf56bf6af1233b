"""HTTP push into a dataset through a real server process: durable acks, grouped commits, kill -9."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from gyre.data import catalog
from gyre.data.lake import Lake
from gyre.data.segments import list_segments
from gyre.meta import MetaStore

pytestmark = pytest.mark.integration


def _rows(project: Path) -> list[int]:
    lake = Lake(f"file://{project / '.gyre' / 'store'}")
    if not lake.exists("events"):
        return []
    return lake.read("events", columns=["id"])["id"].to_pylist()


def test_pushed_records_become_versions(project: Path, start_gyre, unused_port: int) -> None:  # type: ignore[no-untyped-def]
    port = unused_port
    proc = start_gyre(port)
    try:
        url = f"http://127.0.0.1:{port}/v1/datasets/events/records"
        for i in range(20):
            r = httpx.post(url, json=[{"id": i * 5 + j, "v": 1.5} for j in range(5)])
            assert r.status_code == 202 and r.json()["accepted"] == 5
        ndjson = b'{"id": 1000, "v": 2.0}\n{"id": 1001, "v": 2.5}\n'
        r = httpx.post(url, content=ndjson, headers={"content-type": "application/x-ndjson"})
        assert r.status_code == 202 and r.json()["accepted"] == 2
        bad = httpx.post(url, json={"id": 1})
        assert bad.status_code == 400 and "array of records" in bad.json()["message"]
        deadline = time.monotonic() + 10
        while len(_rows(project)) < 102:
            assert time.monotonic() < deadline, "pushed records were not committed within the flush interval"
            time.sleep(0.2)
        wrong = httpx.post(url, json=[{"id": "not a number", "v": 1.0}])
        assert wrong.status_code == 400 and "do not fit" in wrong.json()["message"]
        extra = httpx.post(url, json=[{"id": 1, "v": 1.0, "colour": "red"}])
        assert extra.status_code == 400 and "colour" in extra.json()["message"]
        record = b'{"id": 7, "v": 1.0}\n'
        huge = httpx.post(
            url,
            content=record * (100_000_000 // len(record)),  # 100 MB of NDJSON
            headers={"content-type": "application/x-ndjson"},
            timeout=60,
        )
        assert huge.status_code == 413 and "limit" in huge.json()["message"]
    finally:
        proc.terminate()
        proc.wait(20)
    assert sorted(_rows(project)) == sorted([*range(100), 1000, 1001])
    assert list_segments(project / ".gyre" / "push") == [], "a clean stop leaves no segment behind"
    meta = MetaStore(f"sqlite:///{project / '.gyre' / 'meta.db'}")
    try:
        versions = catalog.list_versions(meta, "events")
    finally:
        meta.close()
    assert sum(v.rows for v in versions) == 102
    assert len(versions) < 21, "small requests were grouped into fewer commits"


def test_kill_9_loses_no_acknowledged_record(project: Path, start_gyre, unused_port: int) -> None:  # type: ignore[no-untyped-def]
    port = unused_port
    proc = start_gyre(port)
    url = f"http://127.0.0.1:{port}/v1/datasets/events/records"
    acked: list[int] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(worker: int) -> None:
        n = 0
        with httpx.Client(timeout=5) as http:
            while not stop.is_set():
                ids = [worker * 1_000_000 + n * 10 + j for j in range(10)]
                try:
                    r = http.post(url, json=[{"id": i, "v": 0.5} for i in ids])
                except httpx.TransportError:
                    return
                if r.status_code == 202:
                    with lock:
                        acked.extend(ids)
                n += 1

    threads = [threading.Thread(target=client, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    while len(acked) < 3000 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    stop.set()
    for t in threads:
        t.join()
    assert len(acked) >= 1000

    proc = start_gyre(port)  # recovery commits what the killed process acknowledged
    try:
        deadline = time.monotonic() + 15
        while not set(acked) <= set(_rows(project)):
            assert time.monotonic() < deadline, "acknowledged records were lost"
            time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(20)
    rows = _rows(project)
    assert set(acked) <= set(rows)
    assert len(rows) == len(set(rows)), "a record was committed twice"
