"""Fixtures for the CLI tests: a runner at 100 columns, and runs and models to show."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import Result

from gyre.client.client import Client
from gyre.tracking.entities import RunInfo

Invoke = Callable[..., Result]


@pytest.fixture
def three_runs(client: Client, tmp_path: Path) -> list[RunInfo]:
    """Three finished runs of experiment 'fraud' (oldest first) and one of 'other'."""
    runs = []
    for i, (n, depth) in enumerate([(100, 5), (200, 5), (300, 8)]):
        with client.start_run("fraud", f"rf-{n}", capture_environment=False) as run:
            run.log_params({"n_estimators": n, "max_depth": depth, "lr": 0.1})
            run.log_metrics({"auc": 0.90 + i * 0.01, "loss": 0.3 - i * 0.05}, step=1)
            if i == 0:
                run.log_metric("f1", math.nan)
            if i == 2:
                run.log_metric("f1", math.inf)
            run.set_tag("team", "risk")
        runs.append(client.runs.get(run.id))
    with client.start_run("other", "lonely", capture_environment=False):
        pass
    return runs
