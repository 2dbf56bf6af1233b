"""The platform the demo runs on: gyre up's schedules at the demo's pace, and a project of its own."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gyre.controller.builtin import MONITOR_SCHEDULE, default_schedules
from gyre.controller.deployments import DEPLOYMENTS_SCHEDULE
from gyre.demo.pace import FAST
from gyre.demo.platform import inside, schedules


def test_schedules_are_gyre_ups_at_the_demos_pace() -> None:
    mine = {s.name: s for s in schedules(FAST)}
    assert set(mine) == {s.name for s in default_schedules()}  # the same ones, none left out
    t = datetime(2026, 1, 1, tzinfo=UTC)
    assert (mine[MONITOR_SCHEDULE].next_after(t) - t).total_seconds() == FAST.monitor_every_s
    assert (mine[DEPLOYMENTS_SCHEDULE].next_after(t) - t).total_seconds() == FAST.deployments_every_s


def test_inside_the_project_no_gyre_variable_leaks_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GYRE_BACKENDS_METADATA", "postgresql://someone@elsewhere/db")
    before = Path.cwd()
    with inside(tmp_path):
        assert Path.cwd() == tmp_path.resolve()
        assert not [k for k in os.environ if k.startswith("GYRE_") and not k.startswith("GYRE_TEST_")]
    assert Path.cwd() == before
    assert os.environ["GYRE_BACKENDS_METADATA"] == "postgresql://someone@elsewhere/db"
