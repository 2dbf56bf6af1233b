"""``gyre score``: batch predictions of a registered model over a dataset version."""

from __future__ import annotations

from typing import Annotated

import typer

from gyre.cli.common import JsonFlag


def score(
    model: Annotated[
        str,
        typer.Argument(
            metavar="MODEL", help="models:/NAME/VERSION or models:/NAME@ALIAS (NAME@ALIAS works too)."
        ),
    ],
    dataset: Annotated[
        str,
        typer.Argument(metavar="DATASET[@VERSION]", help="The input dataset; its latest version by default."),
    ],
    out: Annotated[
        str,
        typer.Option(
            "--out",
            "-o",
            metavar="DATASET",
            help="The dataset the predictions are appended to (created if new).",
        ),
    ],
    columns: Annotated[
        str | None,
        typer.Option(
            metavar="COL,COL",
            help="Input columns each output row carries, comma separated.",
            show_default="the input's keys",
        ),
    ] = None,
    batch_rows: Annotated[
        int, typer.Option("--batch-rows", metavar="N", min=1, help="Rows per batch (bounds the memory used).")
    ] = 65_536,
    on: Annotated[
        str | None,
        typer.Option(
            "--on",
            metavar="local|ray",
            help="Score in this process, or on Ray (the \\[backends] compute address, else ray:local). "
            "Default: \\[backends] compute.",
            show_default=False,
        ),
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Score a dataset version with a registered model and append the predictions to another
    dataset, in one commit: a failure leaves the output as it was.

    Each output row holds the kept columns and 'prediction'; the output version records the
    model and the input version it came from ('gyre datasets history OUT').

    [bold]Examples:[/bold]
      gyre score models:/fraud@champion payments --out payments_scored
      gyre score models:/fraud/3 payments@12 --out backtest --columns payment_id,ts
      gyre score fraud@champion payments --out payments_scored --on ray
    """
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from gyre.cli.output import console, err_console, print_json
    from gyre.serving.batch import score as run_score

    err = err_console()
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,.0f}/{task.total:,.0f} rows"),
        TextColumn("[cyan]{task.fields[rate]}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,  # scripts and pipes get the result only
    )
    with progress:
        task = progress.add_task(f"Scoring {dataset}", total=None, rate="")

        def advance(rows: int, total: int) -> None:
            progress.update(task, advance=rows, total=total or None)
            speed = progress.tasks[0].speed
            progress.update(task, rate=f"{speed:,.0f} rows/s" if speed else "")

        result = run_score(
            model,
            dataset,
            out=out,
            columns=columns.split(",") if columns is not None else None,
            batch_rows=batch_rows,
            on=on,
            on_rows=advance,
        )
    if json_output:
        print_json(result.to_dict())
        return
    console().print(
        f"[green]{result.out} version {result.out_version}[/green]: {result.rows:,} predictions of "
        f"models:/{result.model}/{result.model_version} on {result.dataset}@{result.dataset_version} "
        f"({result.rows_per_second:,.0f} rows/s, {result.compute})."
    )
