"""``gyre run``, ``gyre pipelines list | show``, and ``gyre models approve | reject`` (human review)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from gyre.cli.common import ComputeOption, JsonFlag, open_client

if TYPE_CHECKING:
    from rich.console import Console

    from gyre.pipelines.definition import Pipeline
    from gyre.pipelines.runner import PipelineRun, StepEvent
    from gyre.tracking.entities import RunInfo

app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode="rich",
    help="Pipelines: the project's declared pipelines and their runs.",
)

EVENT_MARKS = {
    "started": ("▶", "cyan"),
    "cached": ("↺", "blue"),
    "finished": ("✓", "green"),
    "retrying": ("…", "yellow"),
    "failed": ("✗", "red"),
    "cancelled": ("■", "magenta"),
}
DECISION_STYLES = {
    "registered": "green",
    "held": "yellow",
    "rejected": "red",
    "no_model": "dim",
    "not_registered": "dim",
}
STEP_STYLES = {
    "finished": "green",
    "cached": "blue",
    "failed": "red",
    "cancelled": "magenta",
    "skipped": "dim",
}


def run(
    name: Annotated[
        str,
        typer.Argument(metavar="PIPELINE", help="The pipeline's name, as 'gyre pipelines list' shows it."),
    ],
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", metavar="NAME=VALUE", help="A parameter value; repeatable."),
    ] = None,
    compute: ComputeOption = None,
    json_output: JsonFlag = False,
) -> None:
    """Run a pipeline of the project now, showing each step as it starts and ends.

    Parameters are checked against the pipeline function's signature before anything runs.
    Steps whose code, inputs and params are unchanged are served from the cache (↺). Exits
    1 if a step failed; the run, its step runs and the gates' verdicts are recorded.

    If a run of the pipeline is already running, its concurrency policy applies, as for runs
    the controller starts: skip (nothing runs; exits 0 saying so), queue (waits for it to
    end) or cancel-previous (cancels it, then runs).

    [bold]Examples:[/bold]
      gyre run fraud-train
      gyre run fraud-train --param n_estimators=300 --param max_depth=6
    """
    from gyre.cli.output import console, err_console, print_json
    from gyre.pipelines.concurrency import admit
    from gyre.pipelines.params import parse_assignments
    from gyre.pipelines.runner import run_pipeline

    given = parse_assignments(param or [])
    pipe = project_pipeline(name)
    out = err_console() if json_output else console()
    with open_client() as client:
        pipe.bind(given, from_text=True)  # a bad parameter fails before anything is recorded
        admission = admit(
            client, pipe, on_wait=lambda d: out.print(f"[yellow]Queued:[/yellow] {_esc(d.reason)}; waiting…")
        )
        if not admission.start:
            if json_output:
                print_json({"pipeline": pipe.name, "skipped": True, "reason": admission.reason})
            else:
                out.print(f"[yellow]Not started:[/yellow] {_esc(admission.reason)}.")
            return
        if admission.cancelled:
            out.print(
                f"[magenta]Cancelled[/magenta] run(s) {', '.join(admission.cancelled)} (concurrency "
                "'cancel-previous')."
            )
        out.print(f"Running pipeline [bold]{_esc(pipe.name)}[/bold] ({len(pipe.graph)} steps)…")
        result = run_pipeline(
            client,
            pipe,
            given,
            compute=compute,
            reason="" if admission.action == "start" else admission.reason,
            params_from_text=True,
            on_event=lambda e: print_event(out, e),
        )
    if json_output:
        print_json(result.to_dict())
    else:
        _print_summary(out, result)
    if not result.ok:
        raise typer.Exit(1)


@app.command("list")
def list_pipelines(json_output: JsonFlag = False) -> None:
    """List the project's pipelines (declared or registered) with their last run.

    Declared means in the project's definitions modules; 'gyre apply' registers them.

    [bold]Example:[/bold]
      gyre pipelines list
    """
    from gyre.cli.output import console, fmt_time, print_json, status_text, table, text
    from gyre.pipelines.runner import pipeline_runs

    specs = _all_specs()
    rows = []
    with open_client() as client:
        for name, (spec, where) in sorted(specs.items()):
            latest = pipeline_runs(client, name, max_results=1)
            rows.append((name, spec, where, latest[0] if latest else None))
    if json_output:
        print_json(
            [
                {
                    "name": name,
                    "declared": "code" in where,
                    "registered": "registry" in where,
                    "steps": [s["name"] for s in spec["steps"]],
                    "triggers": spec["triggers"],
                    "gates": spec["gates"],
                    "concurrency": spec["concurrency"],
                    "last_run": _run_brief(last),
                }
                for name, spec, where, last in rows
            ]
        )
        return
    if not rows:
        console().print(
            "[dim]No pipelines yet; declare one with @gyre.pipeline in the definitions modules.[/dim]"
        )
        return
    t = table("name", "steps", "triggers", "gates", "last run", "status", "outcome")
    for name, spec, where, last in rows:
        t.add_row(
            text(name + ("" if "registry" in where else " *"), "bold"),
            text(len(spec["steps"])),
            text(", ".join(_trigger_text(x) for x in spec["triggers"]) or "manual"),
            text(len(spec["gates"])),
            text(fmt_time(last.start_time) if last else "-"),
            status_text(last.status) if last else text("-"),
            text(last.tags.get("gyre.outcome", "-") if last else "-"),
        )
    out = console()
    out.print(t)
    if any("registry" not in where for _, _, where, _ in rows):
        out.print("[dim]* declared, not registered yet: 'gyre apply' registers it.[/dim]")


@app.command("show")
def show(
    target: Annotated[
        str, typer.Argument(metavar="NAME|RUN_ID", help="A pipeline's name, or the id of one of its runs.")
    ],
    json_output: JsonFlag = False,
) -> None:
    """Show a pipeline (steps, triggers, gates, recent runs) or one run of it (steps, gates, outcome).

    For a run: each step's status, whether it came from the cache, attempts and duration,
    then every gate's verdict with its reason, and what became of the model.

    [bold]Examples:[/bold]
      gyre pipelines show fraud-train
      gyre pipelines show 01JH2XKQ4M5W7Y9B3C6D8F0G2H
    """
    from gyre.errors import NotFound

    specs = _all_specs()
    if target in specs:
        _show_pipeline(target, specs[target][0], json_output)
        return
    with open_client() as client:
        try:
            run_info = client.runs.get(target)
        except NotFound:
            run_info = None
        if run_info is None or "gyre.pipeline" not in run_info.tags or run_info.parent_run_id:
            from gyre.errors import did_you_mean

            raise NotFound(
                f"'{target}' is neither a pipeline of this project nor a pipeline run's id."
                + did_you_mean(target, specs)
                + " 'gyre pipelines list' shows the pipelines."
            )
        steps = client.runs.list(parent_run_id=run_info.id, max_results=1000)
    _show_run(run_info, steps, json_output)


def approve_model(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The registered model's name.")],
    version: Annotated[int, typer.Argument(metavar="VERSION", help="The version held for review.")],
    reason: Annotated[
        str, typer.Option("--reason", "-r", metavar="TEXT", help="Why; kept in the audit log.")
    ] = "",
) -> None:
    """Approve a model version a pipeline held for review: it becomes the challenger.

    Only versions registered by a pipeline declared with review=True wait for a decision.

    [bold]Example:[/bold]
      gyre models approve fraud 7 --reason "checked the drift report"
    """
    from gyre.cli.output import console
    from gyre.pipelines import review

    with _meta() as meta:
        result = review.approve(meta, name, version, reason)
    console().print(
        f"[green]Approved[/green] {_esc(name)} version {version}: it is now the challenger "
        f"(run {result.run_id})."
    )


def reject_model(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The registered model's name.")],
    version: Annotated[int, typer.Argument(metavar="VERSION", help="The version held for review.")],
    reason: Annotated[
        str, typer.Option("--reason", "-r", metavar="TEXT", help="Why; kept in the audit log.")
    ] = "",
) -> None:
    """Reject a model version a pipeline held for review: it stays registered, with no alias.

    [bold]Example:[/bold]
      gyre models reject fraud 7 --reason "worse on the new segment"
    """
    from gyre.cli.output import console
    from gyre.pipelines import review

    with _meta() as meta:
        review.reject(meta, name, version, reason)
    console().print(f"[red]Rejected[/red] {_esc(name)} version {version}; no alias points at it.")


# -- helpers --------------------------------------------------------------------------------


def project_pipeline(name: str) -> Pipeline:
    from gyre.config import load_settings
    from gyre.pipelines.definition import Pipeline
    from gyre.project import project_definitions

    found = project_definitions(load_settings()).get("pipeline", name)
    assert isinstance(found, Pipeline)
    return found


def _all_specs() -> dict[str, tuple[dict[str, Any], set[str]]]:
    """name -> (spec, where it is: {"code", "registry"}); the code's spec wins."""
    from gyre.config import load_settings
    from gyre.meta import MetaStore
    from gyre.meta.registry import list_registered
    from gyre.project import project_definitions

    settings = load_settings()
    out: dict[str, tuple[dict[str, Any], set[str]]] = {}
    meta = MetaStore(settings.metadata_url, actor=settings.actor)
    try:
        for r in list_registered(meta, "pipeline"):
            out[r.name] = (r.spec, {"registry"})
    finally:
        meta.close()
    for d in project_definitions(settings).of_kind("pipeline"):
        out[d.name] = (d.spec(), out.get(d.name, ({}, set()))[1] | {"code"})
    return out


class _meta:
    def __enter__(self) -> Any:
        from gyre.config import load_settings
        from gyre.meta import MetaStore

        settings = load_settings()
        self.store = MetaStore(settings.metadata_url, actor=settings.actor)
        return self.store

    def __exit__(self, *exc: object) -> None:
        self.store.close()


def print_event(out: Console, e: StepEvent) -> None:
    from rich.text import Text

    mark, style = EVENT_MARKS.get(e.kind, ("·", ""))
    line = Text(f"  {mark} ", style=style)
    line.append(e.step, style="bold")
    if e.kind == "started" and e.attempt > 1:
        line.append(f" (attempt {e.attempt})")
    elif e.kind == "finished":
        line.append(f"  {_dur(e.duration_s)}")
    elif e.kind == "cached":
        line.append(f"  cached ({e.message})", style="dim")
    elif e.message:
        line.append(f"  {e.message}", style=style)
    out.print(line, soft_wrap=True)


def _print_summary(out: Console, result: PipelineRun) -> None:
    from gyre.cli.output import status_text, table, text

    out.print()
    status = status_text(result.status)
    status.append(f"  run {result.run_id}", style="")
    out.print(text("Pipeline run: ", "bold") + status)
    if result.error:
        out.print(text(result.error.strip().splitlines()[0], "red"))
    if result.outcome is not None:
        if result.outcome.gates:
            t = table("gate", "", "reason", title="Gates")
            t.columns[2].overflow = "fold"
            for g in result.outcome.gates:
                t.add_row(
                    text(g.gate),
                    text("pass" if g.passed else "FAIL", "green" if g.passed else "red"),
                    text(g.reason),
                )
            out.print(t)
        decision = result.outcome.decision
        out.print(
            text("Outcome: ", "bold")
            + text(decision, DECISION_STYLES.get(decision, ""))
            + text(f" — {result.outcome.reason}")
        )
    out.print(f"[dim]Details: gyre pipelines show {result.run_id}[/dim]")


def _show_pipeline(name: str, spec: dict[str, Any], json_output: bool) -> None:
    from rich.console import Group

    from gyre.cli.output import (
        console,
        fmt_duration,
        fmt_time,
        kv_table,
        print_json,
        status_text,
        table,
        text,
    )
    from gyre.pipelines.runner import pipeline_runs

    with open_client() as client:
        runs = pipeline_runs(client, name, max_results=10)
    if json_output:
        print_json({"name": name, "spec": spec, "runs": [_run_brief(r) for r in runs]})
        return
    attrs: list[tuple[str, Any]] = [
        ("description", spec.get("description") or "-"),
        (
            "params",
            ", ".join(
                f"{k}: {v['type']}" + (f" = {v['default']}" if "default" in v else "")
                for k, v in spec["params"].items()
            )
            or "-",
        ),
        ("triggers", ", ".join(_trigger_text(t) for t in spec["triggers"]) or "manual only"),
        ("concurrency", spec["concurrency"]),
        (
            "registers",
            spec["register_as"] + (" (held for review)" if spec.get("review") else " as challenger"),
        ),
        ("experiment", spec["experiment"]),
    ]
    parts: list[Any] = [kv_table(attrs, title=f"Pipeline {name}")]
    t = table("step", "after", "retries", "timeout", "cache", "resources", title="Steps")
    for s in spec["steps"]:
        resources = ", ".join(
            x for x in (f"{s['cpus']:g} cpu" if s.get("cpus") else "", _mem(s.get("memory"))) if x
        )
        t.add_row(
            text(s["name"], "bold"),
            text(", ".join(s["after"]) or "-"),
            text(s["retries"]),
            text(fmt_duration(s["timeout_s"]) if s.get("timeout_s") else "-"),
            text("on" if s["cache"] else "off"),
            text(resources or "-"),
        )
    parts += ["", t]
    if spec["gates"]:
        g = table("gate", "settings", title="Gates")
        for gate in spec["gates"]:
            settings = {k: v for k, v in gate.items() if k != "kind" and v is not None}
            g.add_row(text(gate["kind"]), text(settings))
        parts += ["", g]
    r = table("run", "status", "trigger", "started", "duration", "outcome", title="Recent runs")
    r.columns[0].no_wrap = True
    for run_info in runs:
        r.add_row(
            text(run_info.id),
            status_text(run_info.status),
            text(run_info.tags.get("gyre.pipeline.trigger", "-")),
            text(fmt_time(run_info.start_time)),
            text(fmt_duration(run_info.duration_s)),
            text(run_info.tags.get("gyre.outcome", "-")),
        )
    parts += ["", r if runs else "[dim]No runs yet: 'gyre run " + name + "' starts one.[/dim]"]
    console().print(Group(*parts))


def _show_run(run_info: RunInfo, step_runs: list[RunInfo], json_output: bool) -> None:
    from rich.console import Group

    from gyre.cli.output import (
        console,
        fmt_duration,
        fmt_timestamp,
        kv_table,
        print_json,
        status_text,
        text,
    )

    details = pipeline_run_details(run_info, step_runs)
    if json_output:
        print_json({"run": run_info.to_dict(), **details})
        return
    attrs: list[tuple[str, Any]] = [
        ("pipeline", run_info.tags.get("gyre.pipeline")),
        ("status", status_text(run_info.status)),
        ("trigger", run_info.tags.get("gyre.pipeline.trigger", "-") + _reason(run_info)),
        ("started", fmt_timestamp(run_info.start_time)),
        ("duration", fmt_duration(run_info.duration_s)),
        ("params", dict(run_info.params) or "-"),
    ]
    if run_info.tags.get("gyre.reproduces"):
        attrs.append(("reproduces", run_info.tags["gyre.reproduces"]))
    if run_info.error:
        attrs.append(("error", text(run_info.error.strip().splitlines()[0], "red")))
    parts: list[Any] = [kv_table(attrs, title=f"Pipeline run {run_info.id}")]
    console().print(Group(*parts, "", *pipeline_run_sections(details)))


# Tags shown as their own sections for a pipeline run, not in the list of tags.
SECTION_TAGS = ("gyre.gates", "gyre.pipeline.graph", "gyre.outcome.reason")


def pipeline_run_details(run_info: RunInfo, step_runs: list[RunInfo]) -> dict[str, Any]:
    """A pipeline run's steps (status, cache, attempts, duration), gates and outcome, as JSON."""
    by_step = {r.tags.get("gyre.step", r.name): r for r in step_runs}
    try:
        graph = json.loads(run_info.tags.get("gyre.pipeline.graph", "[]"))
    except ValueError:
        graph = []
    order = [n for n, _ in graph] or sorted(by_step, key=lambda n: by_step[n].start_time)
    steps = []
    for name in order:
        r = by_step.get(name)
        steps.append(
            {
                "step": name,
                "status": _step_status(r),
                "cache": r.tags.get("gyre.cache") if r else None,
                "attempts": int(r.tags.get("gyre.attempts", "0") or 0) if r else 0,
                "duration_s": r.duration_s if r else None,
                "run_id": r.id if r else None,
                "error": _last_line(r.error) if r and r.error else None,
            }
        )
    try:
        gates = json.loads(run_info.tags.get("gyre.gates", "[]"))
    except ValueError:
        gates = []
    outcome = {
        "decision": run_info.tags.get("gyre.outcome"),
        "reason": run_info.tags.get("gyre.outcome.reason"),
        "model": run_info.tags.get("gyre.model"),
        "review": run_info.tags.get("gyre.review"),
    }
    return {"steps": steps, "gates": gates, "outcome": outcome}


def pipeline_run_sections(details: dict[str, Any]) -> list[Any]:
    """The Steps table, step errors, the Gates table and the outcome line, for Rich."""
    from gyre.cli.output import fmt_duration, table, text

    t = table("step", "status", "cache", "attempts", "duration", "run", title="Steps")
    t.columns[5].no_wrap = True
    for s in details["steps"]:
        t.add_row(
            text(s["step"], "bold"),
            text(s["status"], STEP_STYLES.get(s["status"], "")),
            text(s["cache"] or "-"),
            text(s["attempts"] or "-"),
            text(fmt_duration(s["duration_s"])),
            text(s["run_id"] or "-"),
        )
    parts: list[Any] = [t]
    for s in details["steps"]:
        if s["error"]:
            parts.append(text(f"{s['step']}: {s['error']}", "red"))
    if details["gates"]:
        g = table("gate", "", "reason", title="Gates")
        g.columns[2].overflow = "fold"
        for gate in details["gates"]:
            g.add_row(
                text(gate["gate"]),
                text("pass" if gate["passed"] else "FAIL", "green" if gate["passed"] else "red"),
                text(gate["reason"]),
            )
        parts += ["", g]
    outcome = details["outcome"]
    if outcome["decision"]:
        line = text("Outcome: ", "bold") + text(
            outcome["decision"], DECISION_STYLES.get(outcome["decision"] or "", "")
        )
        line += text(f" — {outcome['reason']}")
        parts += ["", line]
    return parts


def _step_status(r: RunInfo | None) -> str:
    if r is None:
        return "skipped"
    if r.tags.get("gyre.cache") == "hit":
        return "cached"
    return {"FINISHED": "finished", "FAILED": "failed", "KILLED": "cancelled"}.get(r.status, r.status.lower())


def _run_brief(r: RunInfo | None) -> dict[str, Any] | None:
    if r is None:
        return None
    return {
        "id": r.id,
        "status": r.status,
        "started": r.start_time.isoformat(),
        "trigger": r.tags.get("gyre.pipeline.trigger"),
        "outcome": r.tags.get("gyre.outcome"),
    }


def _trigger_text(spec: dict[str, Any]) -> str:
    kind = spec.get("kind")
    if kind == "schedule":
        return f"cron {spec['cron']}"
    if kind == "new_data":
        every = f", every {spec['min_interval']}+" if spec.get("min_interval") else ""
        return f"new data {spec['dataset']} (≥{spec['min_new_rows']} rows{every})"
    if kind == "alert":
        rule = f" {spec['rule']}" if spec.get("rule") else ""
        return "alert" + rule + (f" on {spec['monitor']}" if spec.get("monitor") else "")
    return str(kind)


def _reason(r: RunInfo) -> str:
    reason = r.tags.get("gyre.pipeline.reason")
    return f" ({reason})" if reason else ""


def _mem(value: int | None) -> str:
    from gyre.cli.output import fmt_size

    return fmt_size(value) if value else ""


def _dur(seconds: float | None) -> str:
    from gyre.cli.output import fmt_duration

    return fmt_duration(seconds)


def _last_line(error: str) -> str:
    lines = [line.strip() for line in error.strip().splitlines() if line.strip()]
    return lines[-1] if lines else error


def _esc(value: str) -> str:
    from rich.markup import escape

    return escape(value)
