"""The root of the CLI: help everywhere, --version, and how errors reach the user."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from collections.abc import Callable
from pathlib import Path

import pytest
import typer
from typer.testing import Result

from gyre import __version__
from gyre.cli.main import app

Invoke = Callable[..., Result]  # the `cli` fixture


def _command_paths(command: typer.core.TyperGroup, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [prefix]
    for name, sub in getattr(command, "commands", {}).items():
        paths += _command_paths(sub, (*prefix, name))
    return paths


ROOT = typer.main.get_command(app)
ALL_COMMANDS = _command_paths(ROOT)


def _is_group(path: tuple[str, ...]) -> bool:
    command = ROOT
    for name in path:
        command = command.commands[name]
    return isinstance(command, typer.core.TyperGroup)


def test_the_surface_of_issue_2_is_there() -> None:
    names = {" ".join(p) for p in ALL_COMMANDS}
    for expected in [
        "init", "config show", "db upgrade", "db current", "experiments list",
        "runs list", "runs show", "runs compare", "models list", "models show",
        "models alias", "serve",
    ]:  # fmt: skip
        assert expected in names


@pytest.mark.parametrize("path", ALL_COMMANDS, ids=lambda p: " ".join(p) or "gyre")
def test_every_command_has_help_with_an_example(cli: Invoke, path: tuple[str, ...]) -> None:
    result = cli(*path, "--help")
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.stdout
    if not _is_group(path):
        assert "Example" in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) <= 100


def test_version(cli: Invoke) -> None:
    result = cli("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"gyre {__version__}"


def test_gyre_error_is_one_red_line_on_stderr(cli: Invoke, project: Path) -> None:
    result = cli("runs", "show", "NOPE")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == ["error: Run NOPE does not exist; 'gyre runs list' shows the runs."]


def test_debug_adds_the_traceback(cli: Invoke, project: Path) -> None:
    result = cli("--debug", "runs", "show", "NOPE")
    assert result.exit_code == 1
    assert "Traceback" in result.stderr
    assert result.stderr.splitlines()[-1].startswith("error: Run NOPE does not exist")


def test_unexpected_error_is_one_line_with_a_hint_and_exit_2(
    cli: Invoke, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr("gyre.cli.runs.open_client", broken)
    result = cli("runs", "list")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "error: unexpected RuntimeError: boom (re-run with --debug to see the traceback)"
    ]


def test_usage_errors_stay_usage_errors(cli: Invoke) -> None:
    result = cli("runs", "list", "--max", "0")
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_importing_the_cli_loads_nothing_heavy() -> None:
    code = (
        "import sys, gyre.cli.main; "
        "print(sorted(m for m in ('sqlalchemy', 'rich.console', 'gyre.client.client', 'alembic') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _console_script() -> str:
    script = Path(sysconfig.get_path("scripts")) / "gyre"
    if not script.exists():
        pytest.fail(f"the gyre console script is not installed in {script.parent}; pip install -e .")
    return str(script)


def test_the_installed_console_script(project: Path) -> None:
    gyre = _console_script()
    version = subprocess.run([gyre, "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0
    assert version.stdout.strip() == f"gyre {__version__}"

    missing = subprocess.run([gyre, "runs", "show", "NOPE"], capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1
    assert missing.stdout == ""
    assert len(missing.stderr.splitlines()) == 1
    assert missing.stderr.startswith("error: Run NOPE does not exist")
    assert "Traceback" not in missing.stderr
