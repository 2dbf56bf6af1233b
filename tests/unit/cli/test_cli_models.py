"""``gyre models list | show | alias``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import Result

from gyre.client.client import Client

Invoke = Callable[..., Result]  # the `cli` fixture


@pytest.fixture
def fraud(client: Client) -> str:
    """Model 'fraud' with versions 1 and 2 (no package needed) and champion -> 1."""
    with client.start_run("fraud", "trainer", capture_environment=False) as run:
        pass
    client.backend.create_model_version("fraud", package_digest="0" * 64, flavor="sklearn")
    client.backend.create_model_version("fraud", package_digest="1" * 64, flavor="lightgbm", run_id=run.id)
    client.models.set_alias("fraud", "champion", 1, "first model")
    return run.id


def test_models_list(cli: Invoke, fraud: str) -> None:
    result = cli("models", "list")
    assert result.exit_code == 0, result.output
    row = next(line for line in result.stdout.splitlines() if line.startswith("fraud"))
    assert row.split()[:3] == ["fraud", "2", "champion→1"]
    data = json.loads(cli("models", "list", "--json").stdout)
    assert data[0]["name"] == "fraud" and data[0]["latest_version"] == 2
    assert data[0]["aliases"] == {"champion": 1}


def test_models_list_latest_is_the_newest_ready_version(cli: Invoke, client: Client, fraud: str) -> None:
    # A version held for review (or rejected) is not what models:/fraud/latest resolves to.
    client.backend.create_model_version(
        "fraud", package_digest="2" * 64, flavor="sklearn", status="pending_review"
    )
    client.backend.create_model_version("fraud", package_digest="3" * 64, flavor="sklearn", status="rejected")
    assert json.loads(cli("models", "list", "--json").stdout)[0]["latest_version"] == 2
    assert client.models.get("fraud").latest_version == 2
    shown = cli("models", "show", "fraud")
    assert shown.exit_code == 0, shown.output
    assert any(line.split()[-1:] == ["2"] for line in shown.stdout.splitlines() if "latest version" in line)


def test_models_list_empty(cli: Invoke, project: Path) -> None:
    assert "No models yet" in cli("models", "list").stdout
    assert json.loads(cli("models", "list", "--json").stdout) == []


def test_models_show(cli: Invoke, fraud: str) -> None:
    result = cli("models", "show", "fraud")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 100
    v2 = next(line for line in lines if line.strip().startswith("2 ") and "lightgbm" in line).split()
    assert v2[:4] == ["2", "lightgbm", "ready", fraud]
    v1 = next(line for line in lines if "sklearn" in line).split()
    assert v1[:5] == ["1", "champion", "sklearn", "ready", "-"]
    assert any("(unset) → version 1" in line and "first model" in line for line in lines)


def test_models_alias_moves_and_keeps_history(cli: Invoke, fraud: str) -> None:
    moved = cli("models", "alias", "fraud", "champion", "2", "--reason", "better AUC")
    assert moved.exit_code == 0, moved.output
    assert moved.stdout.strip() == "fraud@champion: version 1 → version 2"

    same = cli("models", "alias", "fraud", "champion", "2")
    assert "already points at version 2; nothing changed" in same.stdout

    new = cli("models", "alias", "fraud", "challenger", "1")
    assert new.stdout.strip() == "fraud@challenger: (unset) → version 1"

    deleted = cli("models", "alias", "fraud", "challenger", "--delete", "--reason", "done")
    assert deleted.exit_code == 0, deleted.output
    assert deleted.stdout.strip() == "fraud@challenger deleted (was version 1)."

    data = json.loads(cli("models", "show", "fraud", "--json").stdout)
    assert data["model"]["aliases"] == {"champion": 2}
    assert [v["aliases"] for v in data["versions"]] == [["champion"], []]
    history = [(h["alias"], h["from_version"], h["to_version"], h["reason"]) for h in data["alias_history"]]
    assert history == [
        ("champion", None, 1, "first model"),
        ("champion", 1, 2, "better AUC"),
        ("challenger", None, 1, ""),
        ("challenger", 1, None, "done"),
    ]
    table = cli("models", "show", "fraud").stdout
    assert "version 1 → version 2" in table and "version 1 → (deleted)" in table


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["fraud", "champion"], "Give the VERSION 'champion' should point at"),
        (["fraud", "champion", "2", "--delete"], "either a VERSION"),
        (["fraud", "champion", "7"], "Model 'fraud' has no version 7; it has versions: 1, 2."),
        (["fraud", "latest", "1"], "'latest' is reserved"),
        (["fraud", "nope", "--delete"], "Model 'fraud' has no alias 'nope'."),
        (["frad", "champion", "1"], "Did you mean 'fraud'?"),
    ],
)
def test_models_alias_errors(cli: Invoke, fraud: str, args: list[str], message: str) -> None:
    result = cli("models", "alias", *args)
    assert result.exit_code == 1
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("error: ") and message in result.stderr


def test_models_show_unknown(cli: Invoke, fraud: str) -> None:
    result = cli("models", "show", "fruad")
    assert result.exit_code == 1
    assert "Model 'fruad' is not registered" in result.stderr
