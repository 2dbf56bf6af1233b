"""``gyre db current`` and ``gyre db upgrade`` on the local metadata database."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import create_engine, text
from typer.testing import Result

from gyre.meta.db import SCHEMA_REVISION

Invoke = Callable[..., Result]  # the `cli` fixture


def _current(cli: Invoke) -> dict:
    result = cli("db", "current", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_current_on_a_fresh_project_creates_nothing(cli: Invoke, project: Path) -> None:
    data = _current(cli)
    assert data["status"] == "empty"
    assert data["revision"] is None
    assert data["schema_revision"] == SCHEMA_REVISION
    assert not (project / ".gyre" / "meta.db").exists()
    table = cli("db", "current")
    assert "gyre db upgrade" in table.stdout


def test_upgrade_creates_the_schema_then_has_nothing_to_do(cli: Invoke, project: Path) -> None:
    result = cli("db", "upgrade")
    assert result.exit_code == 0, result.output
    assert f"(empty) → {SCHEMA_REVISION}" in result.stdout
    assert (project / ".gyre" / "meta.db").exists()
    assert _current(cli) == {
        "database": f"sqlite:///{(project / '.gyre' / 'meta.db').resolve()}",
        "revision": SCHEMA_REVISION,
        "schema_revision": SCHEMA_REVISION,
        "status": "up_to_date",
    }
    again = cli("db", "upgrade")
    assert again.exit_code == 0
    assert "nothing to do" in again.stdout


def test_a_database_from_a_newer_gyre_is_reported_not_touched(cli: Invoke, project: Path) -> None:
    cli("db", "upgrade")
    engine = create_engine(f"sqlite:///{project / '.gyre' / 'meta.db'}")
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    assert _current(cli)["status"] == "newer"
    result = cli("db", "upgrade")
    assert result.exit_code == 1
    assert "newer Gyre" in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_an_unreachable_database_is_one_error_line(cli: Invoke, project: Path) -> None:
    env = {"GYRE_BACKENDS_METADATA": "postgresql://gyre:secret@127.0.0.1:1/gyre"}
    for command in (["db", "current"], ["db", "upgrade"]):
        result = cli(*command, env=env)
        assert result.exit_code == 1, result.output
        assert result.stderr.startswith("error: ")
        assert "Cannot use the metadata database" in result.stderr
        assert "secret" not in result.stderr
        assert len(result.stderr.splitlines()) == 1
