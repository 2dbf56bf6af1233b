"""``gyre demo`` refuses a folder that holds anything, before it writes or starts anything."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from gyre.cli.main import app


def test_a_non_empty_dir_is_refused_and_left_alone(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    result = CliRunner().invoke(app, ["demo", "--fast", "--dir", str(tmp_path)], env={"COLUMNS": "200"})
    assert result.exit_code == 1
    assert "error:" in result.output and "is not empty" in result.output and "--dir" in result.output
    assert "Traceback" not in result.output
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_help_says_what_it_does() -> None:
    result = CliRunner().invoke(app, ["demo", "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0
    assert "--fast" in result.output and "--json" in result.output and "gyre up" in result.output
