"""``gyre init`` and ``gyre config show``."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
from typer.testing import Result

from gyre.config import load_settings

Invoke = Callable[..., Result]  # the `cli` fixture


@pytest.fixture
def empty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working folder with no gyre.toml above it."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _import(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"gyre_test_definitions_{id(path)}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_init_scaffolds_a_project(cli: Invoke, empty: Path) -> None:
    result = cli("init", "fraud")
    assert result.exit_code == 0, result.output
    folder = empty / "fraud"
    assert sorted(p.name for p in folder.iterdir()) == [".gitignore", "definitions.py", "gyre.toml"]

    settings = load_settings(folder)
    assert settings.config_file == folder / "gyre.toml"
    assert settings.get("project", "name") == "fraud"
    assert settings.get("project", "definitions") == ["definitions.py"]
    toml = (folder / "gyre.toml").read_text()
    for line in ["# [backends]", 'metadata = "sqlite:///.gyre/meta.db"', "postgresql://", "s3://",
                 "redis://", "nats://", "ray://"]:  # fmt: skip
        assert line in toml
    assert ".gyre/" in (folder / ".gitignore").read_text().splitlines()

    for what in ["gyre.toml", "definitions.py", ".gitignore", "cd fraud", "python definitions.py",
                 "gyre runs list", "gyre models show fraud"]:  # fmt: skip
        assert what in result.stdout


def test_init_refuses_an_existing_project_and_writes_nothing(cli: Invoke, empty: Path) -> None:
    (empty / "gyre.toml").write_text('[project]\nname = "mine"\n')
    result = cli("init")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: gyre.toml already exists")
    assert "--force" in result.stderr
    assert "Traceback" not in result.output
    assert sorted(p.name for p in empty.iterdir()) == ["gyre.toml"]
    assert (empty / "gyre.toml").read_text() == '[project]\nname = "mine"\n'


def test_init_force_replaces_gyre_toml_but_keeps_code(cli: Invoke, empty: Path) -> None:
    (empty / "gyre.toml").write_text('[project]\nname = "mine"\n')
    (empty / "definitions.py").write_text("MINE = 1\n")
    (empty / ".gitignore").write_text("*.pyc")
    result = cli("init", "--force")
    assert result.exit_code == 0, result.output
    assert "replaced" in result.stdout and "kept" in result.stdout
    assert load_settings(empty).get("project", "name") == empty.name
    assert (empty / "definitions.py").read_text() == "MINE = 1\n"
    assert (empty / ".gitignore").read_text().splitlines() == ["*.pyc", "# Gyre's local stores", ".gyre/"]
    cli("init", "--force")
    assert (empty / ".gitignore").read_text().count(".gyre/") == 1


def test_init_makes_a_valid_model_name_from_any_folder_name(cli: Invoke, empty: Path) -> None:
    result = cli("init", "my project!")
    assert result.exit_code == 0, result.output
    module = _import(empty / "my project!" / "definitions.py")
    assert module.MODEL_NAME == "my-project"
    assert load_settings(empty / "my project!").get("project", "name") == "my project!"


def test_definitions_import_cleanly_without_training(cli: Invoke, empty: Path) -> None:
    cli("init", "fraud")
    module = _import(empty / "fraud" / "definitions.py")
    assert callable(module.train)
    assert module.MODEL_NAME == "fraud"
    assert not (empty / "fraud" / ".gyre").exists()  # nothing ran, nothing was stored


def test_definitions_train_registers_a_model(
    cli: Invoke, empty: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("sklearn")
    from gyre.client.fluent import default_client

    cli("init", "fraud")
    monkeypatch.chdir(empty / "fraud")
    module = _import(empty / "fraud" / "definitions.py")
    version = module.train(n_estimators=5)
    try:
        assert (version.name, version.version, version.flavor) == ("fraud", 1, "sklearn")
        shown = json.loads(cli("models", "show", "fraud", "--json").stdout)
        assert [v["version"] for v in shown["versions"]] == [1]
        runs = json.loads(cli("runs", "list", "--json").stdout)
        assert runs[0]["params"] == {"n_estimators": "5", "seed": "0"}
        assert 0.5 < runs[0]["metrics"]["auc"] <= 1
    finally:
        default_client().close()
        sys.modules.pop(module.__name__, None)


def test_config_show_lists_every_setting_with_its_source(cli: Invoke, project: Path) -> None:
    result = cli("config", "show")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 100
    row = next(line for line in lines if line.startswith("project.name"))
    assert row.split() == ["project.name", "test", "GYRE_PROJECT_NAME", "gyre.toml"]
    row = next(line for line in lines if line.startswith("backends.online"))
    assert row.split()[-1] == "default"


def test_config_show_names_env_overrides_and_masks_secrets(cli: Invoke, project: Path) -> None:
    env = {
        "GYRE_BACKENDS_STORE": "file:///elsewhere",
        "GYRE_SERVER_TOKEN": "hunter2-secret",
        "GYRE_BACKENDS_METADATA": "postgresql://me:pa55word@db.example:5432/gyre",
    }
    result = cli("config", "show", env=env)
    assert result.exit_code == 0, result.output
    row = next(line for line in result.stdout.splitlines() if line.startswith("backends.store"))
    assert row.split() == [
        "backends.store",
        "file:///elsewhere",
        "GYRE_BACKENDS_STORE",
        "env:GYRE_BACKENDS_STORE",
    ]
    assert "hunter2" not in result.output and "pa55word" not in result.output
    assert "********" in result.stdout

    data = json.loads(cli("config", "show", "--json", env=env).stdout)
    assert data["config_file"] == str(project / "gyre.toml")
    by_key = {row["key"]: row for row in data["settings"]}
    assert by_key["server.token"] == {
        "key": "server.token", "value": "********", "env": "GYRE_SERVER_TOKEN",
        "source": "env:GYRE_SERVER_TOKEN",
    }  # fmt: skip
    assert by_key["backends.metadata"]["value"] == "postgresql://me:********@db.example:5432/gyre"
    assert by_key["server.port"]["value"] == 8080


def test_config_show_reports_a_bad_setting_in_one_line(cli: Invoke, project: Path) -> None:
    result = cli("config", "show", env={"GYRE_BACKENDS_STORE": "ftp://nope"})
    assert result.exit_code == 1
    assert len(result.stderr.splitlines()) == 1
    assert "valid schemes" in result.stderr
