"""`gyre up` end to end: records pushed over HTTP reach the online window features within
seconds (push buffer → lake version → controller → incremental materialization), and Ctrl-C
stops everything cleanly with every acknowledged record committed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from gyre.client.client import connect
from gyre.config import load_settings

pytestmark = pytest.mark.integration

DEFINITIONS = """
import gyre

payments = gyre.Dataset(
    "payments", keys=["payment_id"], event_time="ts",
    schema={"payment_id": "string", "user_id": "int64", "amount": "double", "ts": "timestamp[tz=UTC]"},
)
user = gyre.Entity("user", join_keys=["user_id"])
user_activity = gyre.FeatureView(
    "user_activity", entity=user, source=payments,
    features=[
        gyre.Aggregate("payment_id", "count", window="1h", name="payments_1h"),
        gyre.Aggregate("amount", "sum", window="1h"),
    ],
)
"""


def _gyre(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gyre.cli.main", *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_pushed_records_reach_online_features_within_seconds(project: Path, unused_port: int) -> None:
    (project / "definitions.py").write_text(DEFINITIONS)
    applied = _gyre(project, "apply")
    assert applied.returncode == 0, applied.stderr
    port = unused_port
    env = {k: v for k, v in os.environ.items() if not k.startswith("GYRE_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gyre.cli.main", "up", "--port", str(port)],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    client = connect(settings=load_settings(project))
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "gyre up did not start"
            time.sleep(0.1)

        now = datetime.now(UTC)
        records = [
            {
                "payment_id": f"p{i}",
                "user_id": 7,
                "amount": 10.0 * (i + 1),
                "ts": (now - timedelta(minutes=i)).isoformat(),
            }
            for i in range(5)
        ]
        pushed_at = time.monotonic()
        r = httpx.post(f"http://127.0.0.1:{port}/v1/datasets/payments/records", json=records, timeout=10)
        assert r.status_code == 202, r.text
        refs = ["user_activity:payments_1h", "user_activity:amount_sum_1h"]
        while True:
            row = client.get_online_features([{"user_id": 7}], refs)[0]
            if row["payments_1h"] == 5:
                break
            assert time.monotonic() - pushed_at < 15, f"online features did not catch up: {row}"
            time.sleep(0.1)
        assert row["amount_sum_1h"] == pytest.approx(150.0)
        lag = time.monotonic() - pushed_at
        assert lag < 15
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, stderr = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        client.close()
    assert proc.returncode == 0, stderr
    assert "Gyre is up" in stderr and "Gyre stopped." in stderr
    from gyre.data.lake import Lake

    assert Lake(load_settings(project).store_url).read("payments").num_rows == 5
