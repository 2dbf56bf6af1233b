"""The project 'gyre demo' writes: ordinary definitions that load and apply, at the pace's scale,
and a folder that is refused when it already holds something."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from gyre.config import load_settings
from gyre.demo import project as proj
from gyre.demo.pace import DEFAULT, FAST
from gyre.errors import AlreadyExists, InvalidArgument
from gyre.features.definitions import FeatureView
from gyre.meta import MetaStore
from gyre.monitoring.alerts import AlertRule, DriftedFeatures, RunPipeline
from gyre.pipelines.definition import Pipeline
from gyre.project import apply, plan, project_definitions
from gyre.serving.definition import Endpoint


def test_pace_scales_story_time_to_real_seconds() -> None:
    assert FAST.story_seconds(timedelta(hours=1)) == 30 == DEFAULT.story_seconds(timedelta(hours=1))
    assert FAST.story_seconds(timedelta(seconds=1)) == 1  # never zero
    config = FAST.payments_config(seed=4)
    assert config.seed == 4
    assert config.payments_per_hour == FAST.payments_per_second * 3600 / FAST.scale
    assert config.start == FAST.story_start - FAST.history
    assert FAST.pre_drift_s < DEFAULT.pre_drift_s and FAST.monitor_every_s <= DEFAULT.monitor_every_s


def test_written_project_loads_and_applies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    proj.write_project(tmp_path, FAST)
    assert {p.name for p in tmp_path.iterdir()} == {"gyre.toml", "definitions.py", ".gitignore"}
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    definitions = project_definitions(settings)

    view = definitions.get("feature_view", "user_activity")
    assert isinstance(view, FeatureView)
    windows = {f["name"]: f["window_s"] for f in view.spec()["features"]}
    assert windows == {"payments_1h": 30, "amount_1h": 30, "payments_1d": 720, "amount_1d": 720}
    endpoint = definitions.get("endpoint", proj.ENDPOINT)
    assert isinstance(endpoint, Endpoint)
    assert endpoint.model == f"{proj.MODEL}@champion"
    rollout = endpoint.rollout.spec()
    assert (rollout["on_challenger"], rollout["steps"]) == ("auto", [50.0, 100.0])
    rule = definitions.get("alert_rule", proj.DRIFT_RULE)
    assert isinstance(rule, AlertRule) and isinstance(rule.condition, DriftedFeatures)
    assert [a.pipeline for a in rule.actions if isinstance(a, RunPipeline)] == [proj.PIPELINE]
    pipeline = definitions.get("pipeline", proj.PIPELINE)
    assert isinstance(pipeline, Pipeline) and pipeline.model_name == proj.MODEL
    assert len(pipeline.gates) == 3

    meta = MetaStore(settings.metadata_url)
    try:
        applied = apply(meta, definitions)
        assert {(c.kind, c.name) for c in applied.changes} >= {
            ("dataset", proj.PAYMENTS),
            ("dataset", proj.LABELS),
            ("pipeline", proj.PIPELINE),
            ("alert_rule", proj.QUALITY_RULE),
        }
        assert not plan(meta, definitions)  # applying again changes nothing
    finally:
        meta.close()


def test_a_folder_with_anything_in_it_is_refused_untouched(tmp_path: Path) -> None:
    proj.check_target(tmp_path / "new")  # missing: fine
    proj.check_target(tmp_path)  # empty: fine
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(AlreadyExists, match="not empty"):
        proj.check_target(tmp_path)
    with pytest.raises(InvalidArgument, match="is a file"):
        proj.check_target(tmp_path / "notes.txt")
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
    assert (tmp_path / "notes.txt").read_text() == "mine"
