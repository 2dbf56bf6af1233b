"""``gyre db upgrade`` and ``gyre db current``: the metadata database's schema revision.

Both work on the local settings (``[backends] metadata``), never through a server: the
schema belongs to whoever runs the database.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import typer

from gyre.cli.common import JsonFlag

if TYPE_CHECKING:
    from gyre.meta import MetaStore

app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode="rich",
    help="Create or upgrade the schema of the metadata database (\\[backends] metadata).",
)


@app.command("upgrade")
def upgrade_cmd() -> None:
    """Apply the schema migrations to the metadata database, up to this Gyre's revision.

    Creates the schema in an empty database. Back up a database that holds data first.

    [bold]Examples:[/bold]
      gyre db upgrade
      GYRE_BACKENDS_METADATA=postgresql://me@db:5432/gyre gyre db upgrade
    """
    from rich.text import Text

    from gyre.cli.output import busy, console
    from gyre.meta.db import SCHEMA_REVISION, current_revision, upgrade

    with _open() as (store, where):
        assert store is not None
        writer = store.engine.execution_options(gyre_write=True)
        with (
            busy(f"Upgrading the metadata database {where}…"),
            _db_errors(where),
            writer.begin() as conn,
        ):
            store.dialect.lock_for_migration(conn)
            before = current_revision(conn)
            _check_known(before)
            if before != SCHEMA_REVISION:
                upgrade(conn)
            after = current_revision(conn)
    out = console()
    if before == after:
        out.print(f"[green]✓[/green] The metadata database is at revision {after}; nothing to do.")
    else:
        out.print(f"[green]✓[/green] Upgraded the metadata database: {before or '(empty)'} → {after}.")
    out.print(Text(f"  {where}", style="dim"), soft_wrap=True)


@app.command("current")
def current_cmd(json_output: JsonFlag = False) -> None:
    """Show the metadata database's schema revision next to the one this Gyre needs.

    Gyre creates the schema on first use; after upgrading Gyre, 'gyre db upgrade' migrates it.

    [bold]Example:[/bold]
      gyre db current
    """
    from gyre.cli.output import console, kv_table, print_json
    from gyre.meta.db import SCHEMA_REVISION, current_revision

    with _open(create=False) as (store, where):
        if store is None:
            revision = None
        else:
            with _db_errors(where), store.engine.connect() as conn:
                revision = current_revision(conn)
    known = _known_revisions()
    if revision == SCHEMA_REVISION:
        status, advice = "up_to_date", "up to date"
    elif revision is None:
        status, advice = "empty", "no Gyre schema yet; run 'gyre db upgrade' to create it"
    elif revision in known:
        status, advice = "outdated", "older than this Gyre; back it up, then run 'gyre db upgrade'"
    else:
        status, advice = "newer", "written by a newer Gyre; upgrade Gyre to use it"
    if json_output:
        print_json(
            {
                "database": where,
                "revision": revision,
                "schema_revision": SCHEMA_REVISION,
                "status": status,
            }
        )
        return
    from rich.text import Text

    style = "green" if status == "up_to_date" else "yellow"
    console().print(
        kv_table(
            [
                ("database", where if store is not None else f"{where} (no file yet)"),
                ("revision", revision or "(none)"),
                ("this Gyre needs", SCHEMA_REVISION),
                ("status", Text(advice, style=style)),
            ]
        )
    )


@contextmanager
def _open(create: bool = True) -> Iterator[tuple[MetaStore | None, str]]:
    """The local metadata store and how to name it (password hidden).

    With ``create`` off, a SQLite file that does not exist yet gives ``None``: connecting
    would create an empty file just to report that it is empty.
    """
    from pathlib import Path

    from sqlalchemy.engine import make_url

    from gyre.config import load_settings
    from gyre.meta import MetaStore

    settings = load_settings()
    url = settings.metadata_url
    if not create and url.startswith("sqlite:///"):
        database = make_url(url).database
        if database and database != ":memory:" and not Path(database).exists():
            yield None, url
            return
    store = MetaStore(url, actor=settings.actor, migrate=False)
    try:
        yield store, store.engine.url.render_as_string(hide_password=True)
    finally:
        store.close()


def _known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    from gyre.meta.db import alembic_config

    return {s.revision for s in ScriptDirectory.from_config(alembic_config()).walk_revisions()}


def _check_known(revision: str | None) -> None:
    from gyre.errors import SchemaOutdated

    if revision is not None and revision not in _known_revisions():
        raise SchemaOutdated(
            f"The metadata database is at schema revision {revision}, which this Gyre does not "
            "know: a newer Gyre wrote it. Upgrade Gyre (pip install -U gyre-ml) to use it."
        )


@contextmanager
def _db_errors(where: str) -> Iterator[None]:
    """Driver errors (unreachable server, bad credentials) as one actionable message."""
    from sqlalchemy.exc import DBAPIError

    from gyre.errors import BackendUnavailable

    try:
        yield
    except DBAPIError as exc:
        first = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else type(exc).__name__
        raise BackendUnavailable(
            f"Cannot use the metadata database {where}: {first}. Check that it is "
            "running and that [backends] metadata (GYRE_BACKENDS_METADATA) points at it."
        ) from exc
