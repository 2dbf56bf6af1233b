"""``gyre experiments list`` and ``gyre runs list | show | compare``."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Annotated, Any

import typer

from gyre.cli.common import JsonFlag, open_client

if TYPE_CHECKING:
    from gyre.tracking.entities import RunInfo

experiments_app = typer.Typer(
    no_args_is_help=True, rich_markup_mode="rich", help="List the experiments runs are grouped in."
)
app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode="rich",
    help="Find, inspect and compare training runs.",
)

KEY_METRICS = 3  # metric columns in 'runs list'; more would not fit 100 columns
# id, name, experiment (6 at least), status, started, duration and the gaps between them
FIXED_COLUMNS_WIDTH = 26 + 6 + 6 + 8 + 11 + 8 + 2 * 6


@experiments_app.command("list")
def list_experiments(json_output: JsonFlag = False) -> None:
    """List experiments, oldest first.

    An experiment groups the runs of one modelling task; gyre.start_run(experiment=…) makes one.

    [bold]Example:[/bold]
      gyre experiments list
    """
    from gyre.cli.output import busy, fmt_time, print_json, table, text

    with busy("Loading experiments…"), open_client() as client:
        experiments = client.experiments.list()
    if json_output:
        print_json([e.to_dict() for e in experiments])
        return
    t = table("name", "id", "created", "description")
    t.columns[1].no_wrap = True
    for e in experiments:
        t.add_row(text(e.name, "bold"), text(e.id), text(fmt_time(e.created_at)), text(e.description))
    _print_or_hint(t, len(experiments), "No experiments yet; 'gyre.start_run()' creates one.")


@app.command("list")
def list_runs(
    experiment: Annotated[
        str | None,
        typer.Option("--experiment", "-e", metavar="NAME", help="Only runs of this experiment (name or id)."),
    ] = None,
    filter_text: Annotated[
        str | None,
        typer.Option(
            "--filter",
            "-f",
            metavar="EXPR",
            help="Clauses joined by 'and' over metrics.KEY, params.KEY, tags.KEY, status, name, "
            "user, start_time: e.g. \"metrics.auc > 0.9 and params.model = 'lgbm'\".",
        ),
    ] = None,
    order_by: Annotated[
        list[str] | None,
        typer.Option(
            "--order-by",
            "-o",
            metavar="KEY",
            help='Sort key, repeatable: e.g. "metrics.auc DESC" or start_time. Default: newest first.',
        ),
    ] = None,
    max_results: Annotated[
        int, typer.Option("--max", "-n", metavar="N", min=1, help="Show at most this many runs.")
    ] = 50,
    json_output: JsonFlag = False,
) -> None:
    """List runs, newest first, with their key metrics.

    The metric columns are those --filter and --order-by mention, then the most common ones.

    [bold]Examples:[/bold]
      gyre runs list --experiment fraud
      gyre runs list --filter "metrics.auc > 0.9" --order-by "metrics.auc DESC" --max 5
    """
    from gyre.cli.output import (
        busy,
        console,
        fmt_duration,
        fmt_float,
        fmt_time,
        print_json,
        status_text,
        table,
        text,
    )

    with busy("Loading runs…"), open_client() as client:
        runs = client.runs.list(
            experiment=experiment, filter=filter_text, order_by=order_by, max_results=max_results
        )
    if json_output:
        print_json([r.to_dict() for r in runs])
        return
    out = console()
    metrics = key_metrics(runs, [filter_text or "", *(order_by or [])], out.width)
    t = table("id", "name", "experiment", "status", "started", "duration", *metrics)
    t.columns[0].no_wrap = True
    for col in t.columns[1:3]:
        col.overflow = "ellipsis"
        col.min_width, col.max_width = 6, 24
    for col in t.columns[3:]:
        col.no_wrap = True
    for col in t.columns[6:]:
        col.justify = "right"
    for r in runs:
        t.add_row(
            text(r.id),
            text(r.name, "bold"),
            text(r.experiment),
            status_text(r.status),
            text(fmt_time(r.start_time)),
            text(fmt_duration(r.duration_s)),
            *(text(fmt_float(r.metrics.get(m))) for m in metrics),
        )
    hint = "No runs match." if (filter_text or experiment) else "No runs yet."
    out.print(t if runs else f"[dim]{hint}[/dim]")


@app.command("show")
def show_run(
    run_id: Annotated[
        str, typer.Argument(metavar="RUN_ID", help="The run's id, as 'gyre runs list' shows it.")
    ],
    json_output: JsonFlag = False,
) -> None:
    """Show one run: where it ran (git, Python, packages, host), params, metrics, tags, artifacts.

    For a pipeline run, also each step (status, cache hit, attempts, duration), the gates'
    verdicts and what became of the model. RUN_ID comes from 'gyre runs list'. --json prints
    everything, artifact digests included.

    [bold]Example:[/bold]
      gyre runs show 01JH2XKQ4M5W7Y9B3C6D8F0G2H
    """
    from rich.console import Group

    from gyre.cli.output import (
        busy,
        console,
        fmt_duration,
        fmt_float,
        fmt_size,
        fmt_timestamp,
        kv_table,
        print_json,
        short,
        status_text,
        table,
        text,
    )
    from gyre.cli.pipelines import SECTION_TAGS, pipeline_run_details, pipeline_run_sections

    with busy(f"Loading run {run_id}…"), open_client() as client:
        run = client.runs.get(run_id)
        artifacts = client.runs.artifacts(run_id)
        is_pipeline = "gyre.pipeline" in run.tags and not run.parent_run_id
        steps = client.runs.list(parent_run_id=run.id, max_results=1000) if is_pipeline else []
    details = pipeline_run_details(run, steps) if is_pipeline else None
    if json_output:
        extra = {"pipeline": details} if details is not None else {}
        print_json({**run.to_dict(), "artifacts": [a.to_dict() for a in artifacts], **extra})
        return
    git = run.git_commit or "-"
    if run.git_commit:
        git += f" (uncommitted changes {short(run.git_diff_hash)})" if run.git_diff_hash else " (clean)"
    attributes: list[tuple[str, Any]] = [
        ("id", run.id),
        ("name", run.name),
        ("experiment", f"{run.experiment} ({run.experiment_id})"),
        ("status", status_text(run.status)),
        ("user", run.user),
        ("started", fmt_timestamp(run.start_time)),
        ("ended", fmt_timestamp(run.end_time)),
        ("duration", fmt_duration(run.duration_s)),
    ]
    if run.parent_run_id:
        attributes.append(("parent run", run.parent_run_id))
    attributes += [
        ("git commit", git),
        ("python", run.python_version),
        ("packages hash", short(run.packages_hash)),
        ("host", run.host),
        ("command", run.source),
    ]
    if run.error:
        attributes.append(("error", text(_last_exception(run.error), "red")))
    parts: list[Any] = [kv_table(attributes, title=f"Run {run.name}")]
    if run.params:
        parts.append(kv_table(sorted(run.params.items()), title="Params"))
    if run.metrics:
        parts.append(
            kv_table([(k, fmt_float(v)) for k, v in sorted(run.metrics.items())], title="Metrics (latest)")
        )
    tags = {k: v for k, v in run.tags.items() if details is None or k not in SECTION_TAGS}
    if tags:
        parts.append(kv_table(sorted(tags.items()), title="Tags"))
    if artifacts:
        t = table("path", "size", "digest", title="Artifacts")
        for a in artifacts:
            t.add_row(text(a.path + ("/" if a.is_dir else "")), text(fmt_size(a.size)), text(short(a.digest)))
        parts.append(t)
    if details is not None:
        parts.append(Group(*pipeline_run_sections(details)))
    console().print(Group(*_spaced(parts)))


@app.command("compare")
def compare_runs(
    run_ids: Annotated[
        list[str], typer.Argument(metavar="RUN_ID", help="Two or more run ids.", show_default=False)
    ],
    only_diff: Annotated[
        bool,
        typer.Option("--only-diff", metavar="", help="Show only the params and metrics that differ."),
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """Put the params and metrics of runs side by side; rows that differ are highlighted (≠).

    A value a run does not have shows as -. --only-diff hides the rows that agree.

    [bold]Examples:[/bold]
      gyre runs compare 01JH2XKQ4M5W7Y9B3C6D8F0G2H 01JH2XM0P1R3T5V7X9Z1B3D5F7
      gyre runs compare RUN_A RUN_B RUN_C --only-diff
    """
    from rich.text import Text

    from gyre.cli.output import busy, console, fmt_float, print_json, table, text
    from gyre.errors import InvalidArgument

    if len(run_ids) < 2:
        raise InvalidArgument(
            "Compare needs two or more run ids, e.g. 'gyre runs compare RUN_A RUN_B'; "
            "'gyre runs list' shows them."
        )
    with busy("Loading runs…"), open_client() as client:
        runs = [client.runs.get(run_id) for run_id in run_ids]
    sections = {
        "params": compare_rows([r.params for r in runs], only_diff),
        "metrics": compare_rows([r.metrics for r in runs], only_diff),
    }
    if json_output:
        print_json(
            {
                "runs": [
                    {"id": r.id, "name": r.name, "experiment": r.experiment, "status": r.status} for r in runs
                ],
                **{
                    name: [{"key": k, "values": values, "differs": differs} for k, values, differs in rows]
                    for name, rows in sections.items()
                },
            }
        )
        return
    t = table("", *(f"{r.name}\n{r.id}" for r in runs))
    t.columns[0].no_wrap = True
    for col in t.columns[1:]:
        col.justify = "right"
        col.overflow = "fold"
    for name, rows in sections.items():
        if not rows:
            continue
        t.add_row(Text(name, style="bold underline"))
        for key, values, differs in rows:
            style = "bold yellow" if differs else ""
            marker = "≠ " if differs else "  "
            cells = [fmt_float(v) if name == "metrics" and v is not None else v for v in values]
            t.add_row(text(marker + key, style), *(text(c, style) for c in cells))
    out = console()
    if t.row_count == 0:
        what = "params or metrics that differ" if only_diff else "params or metrics"
        out.print(f"These runs have no {what}.")
        return
    out.print(t)
    if not only_diff:
        out.print("[dim]≠ marks rows whose values differ; --only-diff shows only those.[/dim]")


def compare_rows(values: list[dict[str, Any]], only_diff: bool) -> list[tuple[str, list[Any], bool]]:
    """``(key, value per run or None, differs)`` for every key any run has, sorted by key."""
    keys = sorted({k for v in values for k in v})
    rows = []
    for key in keys:
        row = [v.get(key) for v in values]
        differs = len({_same_key(x) for x in row}) > 1
        if differs or not only_diff:
            rows.append((key, row, differs))
    return rows


def key_metrics(runs: list[RunInfo], mentioned: list[str], width: int) -> list[str]:
    """The metrics worth a column: those the filter/order mention first, then the most common.

    As many as fit next to the fixed columns in ``width`` characters, at most ``KEY_METRICS``.
    """
    from gyre.cli.output import fmt_float

    present = Counter(k for r in runs for k in r.metrics)
    ranked = [k for k in present if any(f"metrics.{k}" in m or f"metrics.`{k}`" in m for m in mentioned)]
    for key, _ in sorted(present.items(), key=lambda kv: (-kv[1], kv[0])):
        if key not in ranked:
            ranked.append(key)
    chosen: list[str] = []
    used = FIXED_COLUMNS_WIDTH
    for key in ranked[:KEY_METRICS]:
        cell = max(len(key), *(len(fmt_float(r.metrics.get(key))) for r in runs)) + 2
        if used + cell > width:
            break
        chosen.append(key)
        used += cell
    return chosen


def _same_key(value: Any) -> Any:
    # NaN != NaN, but two runs that both logged NaN agree.
    return "NaN" if isinstance(value, float) and value != value else value


def _last_exception(error: str) -> str:
    """The final ``Type: message`` of a recorded traceback (lines after the last frame)."""
    lines = error.strip().splitlines()
    start = len(lines)
    while start > 0 and lines[start - 1] and not lines[start - 1][0].isspace():
        start -= 1
    tail = lines[start:] or lines[-1:]
    return " ".join(line.strip() for line in tail)


def _spaced(parts: list[Any]) -> list[Any]:
    out: list[Any] = []
    for p in parts:
        if out:
            out.append("")
        out.append(p)
    return out


def _print_or_hint(t: Any, rows: int, hint: str) -> None:
    from gyre.cli.output import console

    console().print(t if rows else f"[dim]{hint}[/dim]")
