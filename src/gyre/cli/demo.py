"""``gyre demo``: the closed loop on a drifting fraud stream, unattended (see :mod:`gyre.demo.loop`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gyre.cli.common import JsonFlag


def demo(
    directory: Annotated[
        Path | None,
        typer.Option(
            "--dir",
            metavar="PATH",
            help="Where to build the demo's project (new or empty). Default: a fresh temporary folder.",
            show_default=False,
        ),
    ] = None,
    fast: Annotated[
        bool, typer.Option("--fast", metavar="", help="Shorter phases: under a minute (what CI runs).")
    ] = False,
    seed: Annotated[int, typer.Option(metavar="N", min=0, help="Seed of the generated payments.")] = 0,
    json_output: JsonFlag = False,
) -> None:
    """Run the whole loop on a fraud stream, unattended, and show it as it happens.

    In a fresh project: ingest two days of payments, define window features, train and gate
    the first model and serve it; send live payments over HTTP with late labels; then switch
    on drift (a new market and a fraud ring). The platform takes it from there by itself:
    drift detected, retrained on the new labels, gated, canaried, promoted. Ends with the
    live AUC before, during and after, and how long each step took. The project is left in
    place: cd into it and run 'gyre up' to explore.

    Takes about two minutes (--fast: under one) and needs LightGBM
    (pip install 'gyre-ml\\[lightgbm]').

    [bold]Examples:[/bold]
      gyre demo
      gyre demo --fast --json --dir /tmp/fraud-demo
    """
    from gyre.cli.output import console, err_console, print_json
    from gyre.demo.loop import new_folder, run_demo
    from gyre.demo.pace import DEFAULT, FAST
    from gyre.demo.project import check_target
    from gyre.demo.timeline import Timeline, summary_table
    from gyre.errors import InvalidArgument

    try:
        import lightgbm  # noqa: F401  (the demo's models; fail before anything is written)
    except ImportError:
        raise InvalidArgument("gyre demo trains LightGBM models: pip install 'gyre-ml[lightgbm]'.") from None
    folder = directory.resolve() if directory is not None else None
    if folder is not None:
        check_target(folder)  # a clear error before anything is written or started
    folder = folder or new_folder()
    out = err_console() if json_output else console()
    timeline = Timeline(out)
    out.rule("[bold]gyre demo[/bold]: a fraud model that keeps itself right", align="left")
    summary = run_demo(folder, FAST if fast else DEFAULT, seed, timeline)
    if json_output:
        print_json(summary.to_dict())
        return
    out.print()
    out.print(summary_table(summary, str(folder)))
    out.print()
    out.print(f"Explore it: [bold]cd {_escape(str(folder))} && gyre up[/bold]")


def _escape(value: str) -> str:
    from rich.markup import escape

    return escape(value)
