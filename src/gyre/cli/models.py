"""``gyre models list | show | alias``: the model registry."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from gyre.cli.common import JsonFlag, open_client

app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode="rich",
    help="Registered models, their versions, and the aliases (champion, …) that point at them.",
)


@app.command("list")
def list_models(json_output: JsonFlag = False) -> None:
    """List registered models with their latest version and aliases.

    run.log_model(model, register_as=NAME) registers a model, or a new version of it.

    [bold]Example:[/bold]
      gyre models list
    """
    from gyre.cli.output import busy, console, fmt_time, print_json, table, text

    with busy("Loading models…"), open_client() as client:
        models = client.models.list()
    if json_output:
        print_json(models)
        return
    if not models:
        console().print("[dim]No models yet; run.log_model(..., register_as=NAME) registers one.[/dim]")
        return
    t = table("name", "latest", "aliases", "updated", "description")
    t.columns[1].justify = "right"
    for m in models:
        t.add_row(
            text(m.name, "bold"),
            text(m.latest_version),
            text(_aliases(m.aliases)),
            text(fmt_time(m.updated_at)),
            text(m.description),
        )
    console().print(t)


@app.command("show")
def show_model(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The registered model's name.")],
    json_output: JsonFlag = False,
) -> None:
    """Show a model's versions (aliases, flavor, run, created) and the history of its aliases.

    An alias (champion, challenger, …) names the version to use; 'gyre models alias' moves it.

    [bold]Example:[/bold]
      gyre models show fraud
    """
    from rich.console import Group

    from gyre.cli.output import (
        busy,
        console,
        fmt_time,
        fmt_timestamp,
        kv_table,
        print_json,
        table,
        text,
    )

    with busy(f"Loading model {name}…"), open_client() as client:
        model = client.models.get(name)
        versions = client.models.versions(name)
        history = client.models.alias_history(name)
    if json_output:
        print_json({"model": model, "versions": versions, "alias_history": history})
        return
    rows: list[tuple[str, Any]] = [
        ("latest version", model.latest_version),
        ("aliases", _aliases(model.aliases) or "-"),
        ("created", fmt_timestamp(model.created_at)),
        ("updated", fmt_timestamp(model.updated_at)),
    ]
    if model.description:
        rows.insert(0, ("description", model.description))
    if model.tags:
        rows.append(("tags", model.tags))
    parts: list[Any] = [kv_table(rows, title=f"Model {model.name}")]

    t = table("version", "aliases", "flavor", "status", "run", "created", "by", title="Versions")
    t.columns[0].justify = "right"
    t.columns[4].no_wrap = True
    for v in versions:
        t.add_row(
            text(v.version, "bold"),
            text(", ".join(v.aliases), "green"),
            text(v.flavor),
            text(v.status),
            text(v.run_id),
            text(fmt_time(v.created_at)),
            text(v.created_by),
        )
    parts += ["", t if versions else "[dim]No versions yet.[/dim]"]

    if history:
        h = table("when", "alias", "move", "by", "reason", title="Alias history (oldest first)")
        for move in history:
            h.add_row(
                text(fmt_time(move.at)),
                text(move.alias, "green"),
                text(_move(move.from_version, move.to_version)),
                text(move.actor),
                text(move.reason),
            )
        parts += ["", h]
    console().print(Group(*parts))


@app.command("alias")
def alias_cmd(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The registered model's name.")],
    alias: Annotated[
        str, typer.Argument(metavar="ALIAS", help="The alias to move, e.g. champion or challenger.")
    ],
    version: Annotated[
        int | None,
        typer.Argument(metavar="VERSION", help="The version the alias should point at.", show_default=False),
    ] = None,
    delete: Annotated[
        bool, typer.Option("--delete", metavar="", help="Remove the alias instead of moving it.")
    ] = False,
    reason: Annotated[
        str, typer.Option("--reason", "-r", metavar="TEXT", help="Why; kept in the alias history.")
    ] = "",
) -> None:
    """Point an alias of a model at a version (moving it if set), or delete it.

    Every move is kept in the alias history ('gyre models show NAME').

    [bold]Examples:[/bold]
      gyre models alias fraud champion 3 --reason "AUC +0.02 on last week"
      gyre models alias fraud challenger --delete
    """
    from gyre.cli.output import busy, console
    from gyre.errors import InvalidArgument

    if delete and version is not None:
        raise InvalidArgument("Give either a VERSION to move the alias to, or --delete, not both.")
    if not delete and version is None:
        raise InvalidArgument(
            f"Give the VERSION '{alias}' should point at (e.g. 'gyre models alias {name} {alias} 3'), "
            "or --delete to remove it."
        )
    with busy(f"Updating {name}@{alias}…"), open_client() as client:
        before = client.models.get(name).aliases.get(alias)
        if delete:
            client.models.delete_alias(name, alias, reason)
            after = None
        else:
            assert version is not None
            after = client.models.set_alias(name, alias, version, reason).version
    out = console()
    label = f"[bold]{_escape(name)}@{_escape(alias)}[/bold]"
    if before == after:
        out.print(f"{label} already points at version {after}; nothing changed.")
    elif after is None:
        out.print(f"{label} deleted (was version {before}).")
    else:
        out.print(f"{label}: {_move(before, after)}")


def _aliases(aliases: dict[str, int]) -> str:
    return ", ".join(f"{a}→{v}" for a, v in sorted(aliases.items()))


def _move(from_version: int | None, to_version: int | None) -> str:
    src = "(unset)" if from_version is None else f"version {from_version}"
    dst = "(deleted)" if to_version is None else f"version {to_version}"
    return f"{src} → {dst}"


def _escape(value: str) -> str:
    from rich.markup import escape

    return escape(value)
