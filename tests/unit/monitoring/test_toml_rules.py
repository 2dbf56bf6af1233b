"""Alert rules declared in gyre.toml ([[alerts]]): the same rules as in definitions, registered
by gyre apply with the same plan; a name in both places, or a malformed rule, is an error
naming the file, the rule and the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from gyre.cli.main import app
from gyre.config import load_settings
from gyre.errors import ConfigError
from gyre.monitoring.alerts import (
    AlertRule,
    DriftedFeatures,
    ErrorRateAbove,
    FeatureViewStale,
    QualityBelow,
    Rollback,
    RunPipeline,
    Webhook,
    rules_from_toml,
)
from gyre.project import project_definitions

TOML_HEAD = '[project]\nname = "t"\ndefinitions = ["{module}"]\n'

RULES_TOML = """
[[alerts]]
name = "fraud-drift"
endpoint = "fraud"
condition = { drifted_features = 3, window = "1h" }
actions = ["log", { webhook = "https://hooks.example.com/gyre", retries = 5 }, { run_pipeline = "retrain" }]
cooldown = "6h"
description = "three features drifted"

[[alerts]]
name = "fraud-auc"
endpoint = "fraud"
condition = { quality_below = "auc", limit = 0.85, min_labels = 100 }
actions = [{ rollback = true }, { run_pipeline = "retrain", params = { reason = "auc" } }]

[[alerts]]
name = "errors"
condition = { error_rate_above = 0.05, window = "10m" }

[[alerts]]
name = "stale"
condition = { feature_view_stale = true }
actions = "log"
"""

# The same rules as Python definitions: what the toml tables must mirror.
PYTHON_RULES = [
    AlertRule(
        "fraud-drift",
        endpoint="fraud",
        condition=DriftedFeatures(3, window="1h"),
        actions=["log", Webhook("https://hooks.example.com/gyre", retries=5), RunPipeline("retrain")],
        cooldown="6h",
        description="three features drifted",
    ),
    AlertRule(
        "fraud-auc",
        endpoint="fraud",
        condition=QualityBelow("auc", limit=0.85, min_labels=100),
        actions=[Rollback(), RunPipeline("retrain", params={"reason": "auc"})],
    ),
    AlertRule("errors", condition=ErrorRateAbove(0.05, window="10m")),
    AlertRule("stale", condition=FeatureViewStale(), actions="log"),
]

DEFINITIONS_PY = """
import gyre
from gyre.monitoring import DriftedFeatures, RunPipeline, Webhook

fraud_monitor = gyre.Monitor("fraud", window="1h")
{rules}
"""

MOVED_RULE = """
fraud_drift = gyre.AlertRule(
    "fraud-drift", endpoint="fraud", condition=DriftedFeatures(3, window="1h"),
    actions=["log", Webhook("https://hooks.example.com/gyre", retries=5), RunPipeline("retrain")],
    cooldown="6h", description="three features drifted",
)
"""


def _project(root: Path, toml_rules: str, module_rules: str = "", module: str = "definitions.py") -> None:
    """gyre.toml with ``toml_rules`` and a definitions module (a new file name for new contents:
    a module is imported once per process)."""
    backends = '\n[backends]\nmetadata = "sqlite:///.gyre/meta.db"\n'
    (root / "gyre.toml").write_text(TOML_HEAD.format(module=module) + backends + toml_rules)
    (root / module).write_text(DEFINITIONS_PY.format(rules=module_rules))


def _gyre(root: Path, *args: str) -> Result:
    env = {"COLUMNS": "200", "GYRE_CONFIG": str(root / "gyre.toml")}
    return CliRunner().invoke(app, list(args), env=env)


def test_toml_rules_mirror_alert_rule_arguments(tmp_path: Path) -> None:
    _project(tmp_path, RULES_TOML)
    settings = load_settings(tmp_path, environ={})
    assert [t["name"] for t in settings.alerts] == ["fraud-drift", "fraud-auc", "errors", "stale"]
    defs = project_definitions(settings)
    got = {d.name: d.spec() for d in defs.of_kind("alert_rule")}
    assert got == {r.name: r.spec() for r in PYTHON_RULES}
    assert [d.name for d in defs.of_kind("monitor")] == ["fraud"]  # the modules still load


def test_gyre_apply_registers_toml_rules_like_definition_rules(tmp_path: Path) -> None:
    _project(tmp_path, RULES_TOML)
    plan = _gyre(tmp_path, "apply", "--dry-run")
    assert plan.exit_code == 0, plan.output
    assert "+ alert rule fraud-drift" in plan.output and "+ alert rule stale" in plan.output
    applied = _gyre(tmp_path, "apply", "--json")
    assert applied.exit_code == 0, applied.output
    created = {(c["kind"], c["name"]) for c in json.loads(applied.output)["changes"]}
    assert created == {("monitor", "fraud")} | {("alert_rule", r.name) for r in PYTHON_RULES}
    assert "Nothing to change" in _gyre(tmp_path, "apply").output

    # The same rule moved from gyre.toml into definitions.py is the same registration.
    _, rest = RULES_TOML.split('[[alerts]]\nname = "fraud-auc"')
    _project(tmp_path, '[[alerts]]\nname = "fraud-auc"' + rest, MOVED_RULE, module="moved.py")
    assert "Nothing to change" in _gyre(tmp_path, "apply").output

    # A changed toml rule is an update naming the changed fields; a removed one a delete.
    _project(tmp_path, RULES_TOML.replace('cooldown = "6h"', 'cooldown = "2h"'))
    changed = _gyre(tmp_path, "apply")
    assert "~ alert rule fraud-drift (cooldown_s)" in changed.output
    _project(tmp_path, "")
    removed = _gyre(tmp_path, "apply")
    assert "- alert rule fraud-auc" in removed.output
    assert "Applied: 0 created, 0 updated, 4 deleted." in removed.output


def test_a_rule_declared_in_both_places_is_an_error_naming_both(tmp_path: Path) -> None:
    _project(tmp_path, RULES_TOML, MOVED_RULE)
    toml = str(tmp_path / "gyre.toml")
    with pytest.raises(ConfigError) as err:
        project_definitions(load_settings(tmp_path, environ={}))
    assert err.value.message == (
        f"Alert rule 'fraud-drift' is declared twice: under [[alerts]] in {toml} and in definitions "
        "module definitions.py; keep one of them."
    )
    result = _gyre(tmp_path, "apply")
    assert result.exit_code != 0
    assert "declared twice" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            'name = "r"\ncondition = { drifted_features = 3, windw = "1h" }',
            "alert rule 'r': condition: unknown key 'windw' for drifted_features; valid keys: window, "
            "include_prediction. Did you mean 'window'?",
        ),
        (
            'name = "r"\ncondition = { drifted_features = 0 }',
            "alert rule 'r': condition: drifted_features: DriftedFeatures: at_least must be a whole number",
        ),
        (
            'name = "r"\ncondition = { drift = 3 }',
            "alert rule 'r': condition must name exactly one kind (drifted_features, error_rate_above, "
            "feature_view_stale, latency_above, quality_above, quality_below) as a key holding its "
            "first argument; got drift.",
        ),
        (
            'name = "r"\ncondition = { drifted_features = 3, error_rate_above = 0.1 }',
            "condition must name exactly one kind",
        ),
        ('name = "r"\ncondition = "drift"', "alert rule 'r': condition must be a table naming its kind"),
        ('name = "r"\ncondition = { quality_below = "auc" }', "condition: quality_below: TypeError"),
        ('name = "r"', "alert rule 'r': no condition; write e.g. condition = { drifted_features = 3"),
        (
            'name = "r"\ncondition = { drifted_features = 1 }\ncooldwn = "1h"',
            "alert rule 'r': unknown key 'cooldwn'; valid keys: name, condition, endpoint, actions, "
            "cooldown, description. Did you mean 'cooldown'?",
        ),
        (
            'name = "r"\ncondition = { drifted_features = 1 }\ncooldown = "soon"',
            "alert rule 'r': cooldown: cooldown 'soon' is not a duration",
        ),
        (
            'name = "r"\ncondition = { drifted_features = 1 }\nendpoint = "no spaces"',
            "alert rule 'r': endpoint: Endpoint name 'no spaces' is not valid",
        ),
        (
            'name = "r"\ncondition = { drifted_features = 1 }\nactions = ["email"]',
            "alert rule 'r': actions[0]: Unknown alert action 'email'",
        ),
        (
            'name = "r"\ncondition = { drifted_features = 1 }\nactions = [{ webhook = "ftp://x" }]',
            "alert rule 'r': actions[0]: webhook: Webhook url must start with http:// or https://",
        ),
        (
            'name = "r"\ncondition = { drifted_features = 1 }\n'
            'actions = [{ webhook = "https://x", retry = 2 }]',
            "alert rule 'r': actions[0]: unknown key 'retry' for webhook; valid keys: timeout_s, retries, "
            "send_resolved, headers. Did you mean 'retries'?",
        ),
        (
            'name = "r"\ncondition = { drifted_features = 1 }\nactions = [{ log = "loud" }]',
            "alert rule 'r': actions[0]: log takes no argument; write log = true.",
        ),
        ("condition = { drifted_features = 1 }", '[[alerts]] table 1 has no name; give it one: name = "'),
        ('name = "a b"\ncondition = { drifted_features = 1 }', "[[alerts]] table 1: name: Alert rule name"),
    ],
)
def test_a_malformed_rule_names_the_file_the_rule_and_the_key(
    tmp_path: Path, table: str, message: str
) -> None:
    _project(tmp_path, f"\n[[alerts]]\n{table}\n")
    with pytest.raises(ConfigError) as err:
        project_definitions(load_settings(tmp_path, environ={}))
    assert err.value.message.startswith(f"{tmp_path / 'gyre.toml'}: ")
    assert message in err.value.message


def test_the_same_name_twice_in_gyre_toml() -> None:
    tables = [{"name": "r", "condition": {"drifted_features": 1}}] * 2
    with pytest.raises(
        ConfigError, match="gyre.toml: alert rule 'r' is declared twice under \\[\\[alerts\\]\\]"
    ):
        rules_from_toml(tables, "gyre.toml")


def test_alerts_must_be_an_array_of_tables(tmp_path: Path) -> None:
    (tmp_path / "gyre.toml").write_text('[alerts]\nname = "r"\n')
    with pytest.raises(ConfigError, match="'alerts' must be an array of tables.*\\[\\[alerts\\]\\]"):
        load_settings(tmp_path, environ={})
    (tmp_path / "gyre.toml").write_text('[[alert]]\nname = "r"\n')
    with pytest.raises(ConfigError, match="Did you mean 'alerts'"):
        load_settings(tmp_path, environ={})
    (tmp_path / "gyre.toml").write_text(TOML_HEAD.format(module="definitions.py"))
    assert load_settings(tmp_path, environ={}).alerts == ()
