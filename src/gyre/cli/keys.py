"""``gyre keys create | list | revoke``: API keys of the server, with roles and rate limits."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer

from gyre.cli.common import JsonFlag

if TYPE_CHECKING:
    from gyre.meta import MetaStore

app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode="rich",
    help="API keys for the server: each has a role (viewer, predictor, data-scientist, deployer, "
    "admin) and an optional rate limit.",
)


@contextmanager
def _meta() -> Iterator[MetaStore]:
    from gyre.config import load_settings
    from gyre.meta import MetaStore

    settings = load_settings()
    meta = MetaStore(settings.metadata_url, actor=settings.actor)
    try:
        yield meta
    finally:
        meta.close()


@app.command("create")
def create(
    name: Annotated[str, typer.Option("--name", "-n", help="What the key is for, e.g. fraud-service.")],
    role: Annotated[
        str, typer.Option("--role", "-r", help="viewer, predictor, data-scientist, deployer or admin.")
    ],
    rate: Annotated[
        str | None,
        typer.Option("--rate", metavar="N/s|N/m|N/h", help="Rate limit, e.g. 100/s. Default: none."),
    ] = None,
    burst: Annotated[
        int | None, typer.Option("--burst", min=1, help="Requests allowed at once above the rate.")
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Create an API key. The key is printed this once: Gyre keeps only its hash.

    Clients send it as 'Authorization: Bearer <key>'.

    [bold]Examples:[/bold]
      gyre keys create --name fraud-service --role predictor --rate 200/s
      gyre keys create --name ci --role data-scientist
    """
    from gyre.api.keys import create_key
    from gyre.cli.output import console, err_console, print_json

    with _meta() as meta:
        info, key = create_key(meta, name, role, rate=rate, burst=burst)
    if json_output:
        print_json({**info.to_dict(), "key": key})
        return
    console().print(key)
    limit = f", {info.rate_per_s:g} requests/s" if info.rate_per_s else ""
    err_console().print(
        f"[green]Created key {info.id}[/green] ({info.name}, role {info.role}{limit}). "
        "Copy it now: it is not shown again."
    )


@app.command("list")
def list_keys(
    all_keys: Annotated[bool, typer.Option("--all", metavar="", help="Include revoked keys.")] = False,
    json_output: JsonFlag = False,
) -> None:
    """List API keys (never their secrets).

    [bold]Example:[/bold]
      gyre keys list
    """
    from gyre.api.keys import list_keys as list_api_keys
    from gyre.cli.output import console, fmt_time, print_json, table, text

    with _meta() as meta:
        keys = list_api_keys(meta, include_revoked=all_keys)
    if json_output:
        print_json([k.to_dict() for k in keys])
        return
    t = table("id", "name", "role", "rate", "created", "by", "state")
    for k in keys:
        t.add_row(
            text(k.id),
            text(k.name, "bold"),
            text(k.role),
            text(f"{k.rate_per_s:g}/s" if k.rate_per_s else "-"),
            text(fmt_time(k.created_at)),
            text(k.created_by),
            text("active", "green") if k.active else text("revoked", "red"),
        )
    console().print(t if keys else "No API keys; 'gyre keys create --name NAME --role ROLE' makes one.")


@app.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(metavar="ID", help="The key's id (from 'gyre keys list').")],
    json_output: JsonFlag = False,
) -> None:
    """Revoke a key: servers refuse it within a few seconds.

    [bold]Example:[/bold]
      gyre keys revoke 01JD3…
    """
    from gyre.api.keys import revoke_key
    from gyre.cli.output import console, print_json

    with _meta() as meta:
        info = revoke_key(meta, key_id)
    if json_output:
        print_json(info.to_dict())
        return
    console().print(f"Revoked key {info.id} ({info.name}, role {info.role}).")
