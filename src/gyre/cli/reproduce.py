"""``gyre reproduce RUN_ID``: run a pipeline run again on the data it read, and compare its metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from gyre.cli.common import ComputeOption, JsonFlag, open_client

if TYPE_CHECKING:
    from rich.console import Console

    from gyre.pipelines.reproduce import Reproduction


def reproduce(
    run_id: Annotated[
        str,
        typer.Argument(
            metavar="RUN_ID", help="A pipeline run's id (or one of its steps'), as 'gyre runs list' shows it."
        ),
    ],
    tolerance: Annotated[
        float,
        typer.Option(
            "--tolerance",
            metavar="X",
            min=0.0,
            help="Largest absolute metric difference still counted as the same. Default: 0 (exact).",
        ),
    ] = 0.0,
    compute: ComputeOption = None,
    json_output: JsonFlag = False,
) -> None:
    """Run a pipeline run again on the dataset versions it read, and compare its metrics.

    The training data is rebuilt from the versions the run recorded (whatever was ingested
    since), the pipeline's current code runs with the same parameters and the step cache
    off, and each metric is shown beside the original with the difference. The
    reproduction is a run of its own, tagged gyre.reproduces=RUN_ID; it registers no model
    and moves no alias. Changed step code, another git commit or other packages are
    pointed out; a pinned version that was vacuumed stops it before it starts.

    Exits 0 when every metric matches (within --tolerance), 1 otherwise.

    [bold]Examples:[/bold]
      gyre reproduce 01JH2XKQ4M5W7Y9B3C6D8F0G2H
      gyre reproduce 01JH2XKQ4M5W7Y9B3C6D8F0G2H --tolerance 1e-9 --json
    """
    from gyre.cli.output import console, err_console, print_json
    from gyre.cli.pipelines import print_event, project_pipeline
    from gyre.pipelines.reproduce import reproduce as run_reproduction

    out = err_console() if json_output else console()
    with open_client() as client:
        result = run_reproduction(
            client,
            run_id,
            project_pipeline,
            compute=compute,
            on_event=lambda e: print_event(out, e),
            on_start=lambda rid: out.print(f"Reproducing run [bold]{run_id}[/bold] as run {rid}…"),
        )
    if json_output:
        print_json(result.to_dict(tolerance))
    else:
        _print_report(out, result, tolerance)
    if not result.identical(tolerance):
        raise typer.Exit(1)


def _print_report(out: Console, r: Reproduction, tolerance: float) -> None:
    from gyre.cli.output import fmt_float, status_text, table, text

    out.print()
    line = text("Reproduction: ", "bold") + status_text(r.run.status)
    line.append(f"  run {r.run.run_id} of {r.original.id}")
    out.print(line)
    if r.run.error:
        out.print(text(r.run.error.strip().splitlines()[0], "red"))
    if r.pins or r.read:
        d = table("dataset", "pinned", "read", title="Dataset versions")
        for name in sorted({*r.pins, *r.read}):
            pinned, read = r.pins.get(name), r.read.get(name)
            d.add_row(text(name), text(pinned), text(read, "" if pinned == read else "yellow"))
        out.print(d)
    m = table("metric", "original", "reproduced", "diff", title="Metrics")
    for col in m.columns[1:]:
        col.justify = "right"
    for diff in r.metrics:
        style = "" if diff.same(tolerance) else "bold yellow"
        m.add_row(
            text(diff.name, style),
            text(fmt_float(diff.original)),
            text(fmt_float(diff.reproduced)),
            text(fmt_float(diff.diff) if diff.diff is not None else "-", style),
        )
    out.print(m if r.metrics else text("Neither run logged a metric.", "dim"))
    changed = [s for s in r.steps if s.code_changed or not s.same_output]
    if changed:
        s = table("step", "code", "output", title="Steps that differ")
        for step in changed:
            s.add_row(
                text(step.step),
                text("changed" if step.code_changed else "same", "yellow" if step.code_changed else ""),
                text("same" if step.same_output else "differs"),
            )
        out.print(s)
    for note in r.notes:
        out.print(text(f"note: {note}", "yellow"))
    differing = r.differing(tolerance)
    if r.identical(tolerance):
        within = f" (within {tolerance:g})" if tolerance else ""
        out.print(text(f"Identical: every metric matches{within}.", "green"))
    elif r.run.ok:
        out.print(text(f"Differs: {len(differing)} of {len(r.metrics)} metric(s) differ.", "red"))
