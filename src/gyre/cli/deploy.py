"""``gyre deploy``, ``gyre rollback`` and ``gyre deployments list | show``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import typer

from gyre.cli.common import JsonFlag

if TYPE_CHECKING:
    from gyre.data.lake import Lake
    from gyre.deploy.records import DeploymentInfo
    from gyre.meta import MetaStore
    from gyre.store import ArtifactStore

app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode="rich",
    help="Deployments: how new model versions reached (or did not reach) each endpoint.",
)


@dataclass
class _Project:
    meta: MetaStore
    store: ArtifactStore
    lake: Lake
    cache_dir: Any


@contextmanager
def _project() -> Iterator[_Project]:
    from gyre.config import load_settings
    from gyre.data.lake import Lake
    from gyre.meta import MetaStore
    from gyre.store import ArtifactStore

    settings = load_settings()
    meta = MetaStore(settings.metadata_url, actor=settings.actor)
    try:
        yield _Project(
            meta,
            ArtifactStore(settings.store_url),
            Lake(settings.store_url),
            settings.root / ".gyre" / "cache" / "models",
        )
    finally:
        meta.close()


def deploy(
    endpoint: Annotated[str, typer.Argument(help="The endpoint to roll the model out to.")],
    model: Annotated[
        str,
        typer.Option(
            "--model",
            "-m",
            help="The version to roll out: NAME@ALIAS (e.g. fraud@challenger), NAME/VERSION or VERSION.",
        ),
    ],
    strategy: Annotated[
        str | None,
        typer.Option(
            "--strategy", "-s", help="canary, blue_green or shadow. Default: the endpoint's rollout policy."
        ),
    ] = None,
    steps: Annotated[
        str | None,
        typer.Option(
            "--steps", metavar="5,25,50,100", help="A canary's traffic shares in percent, ending at 100."
        ),
    ] = None,
    interval: Annotated[
        str | None,
        typer.Option(
            "--interval", "-i", metavar="5m", help="How long each step is held before it is analysed."
        ),
    ] = None,
    reason: Annotated[str, typer.Option("--reason", help="Why, for the audit trail.")] = "",
    wait: Annotated[
        bool,
        typer.Option(
            "--wait",
            metavar="",
            help="Stay and drive the rollout to its end, printing each step (without it, the controller "
            "in 'gyre up' or 'gyre controller' drives it).",
        ),
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """Roll a model version out to an endpoint: canary, blue-green or shadow.

    The candidate is checked first (its package is fetched, verified and loaded, and predicts
    on a test row); a version that cannot serve is refused and traffic stays where it is.
    Running servers pick the split up within a second. Each step is held for its interval and
    analysed against the baseline (error rate, p99 latency, prediction distribution, live
    AUC where labels have arrived): it passes to the next step and, at the end, the
    endpoint's alias (e.g. champion) moves to the candidate — or the deployment rolls back.

    [bold]Examples:[/bold]
      gyre deploy fraud --model fraud@challenger
      gyre deploy fraud --model fraud/7 --strategy canary --steps 10,50,100 --interval 2m --wait
      gyre deploy fraud --model fraud@challenger --strategy shadow --interval 1h
    """
    from gyre.cli.output import err_console, print_json
    from gyre.definitions import parse_duration
    from gyre.deploy.rollout import start
    from gyre.errors import InvalidArgument

    plan = None
    if steps is not None:
        try:
            plan = [float(s) for s in steps.split(",") if s.strip()]
        except ValueError:
            raise InvalidArgument(
                f"--steps is a comma-separated list of percentages, e.g. 5,25,50,100; got {steps!r}."
            ) from None
    seconds = parse_duration(interval, "--interval").total_seconds() if interval is not None else None
    with _project() as p:
        d = start(
            p.meta,
            p.store,
            endpoint,
            model,
            cache_dir=p.cache_dir,
            strategy=strategy,
            steps=plan,
            interval_s=seconds,
            reason=reason,
        )
        if not json_output:
            err_console().print(
                f"[green]Started deployment {d.id}[/green]: {d.model_name} version {d.candidate_version} "
                f"({d.strategy}) on '{d.endpoint}', baseline version {d.baseline_version}; "
                f"{_share(d)}, each step held {d.interval_s:g} s."
            )
        if wait:
            d = _drive(p, d, quiet=json_output)
    if json_output:
        print_json(d.to_dict())


def _drive(p: _Project, d: DeploymentInfo, *, quiet: bool) -> DeploymentInfo:
    from gyre.cli.output import err_console
    from gyre.deploy.records import get_deployment
    from gyre.deploy.rollout import tick

    seen = len(d.history)
    last_reason = ""
    while d.running:
        time.sleep(min(1.0, d.interval_s / 4))
        tick(p.meta, p.lake)
        d = get_deployment(p.meta, d.id)
        if quiet:
            continue
        for entry in d.history[seen:]:
            at, action, share = entry["at"][11:19], entry["action"], _weight(d, entry["weight"])
            err_console().print(f"  {at}  {action:<11} {share:>6}  {entry.get('reason', '')}")
        seen = len(d.history)
        if d.running and d.reason != last_reason and d.reason.startswith("waiting"):
            err_console().print(f"  [dim]{d.reason}[/dim]")
        last_reason = d.reason
    if not quiet:
        style = "green" if d.state in ("promoted", "completed") else "red"
        err_console().print(f"[{style}]Deployment {d.id} {d.state}[/{style}]: {d.reason}")
    return d


def rollback(
    endpoint: Annotated[str, typer.Argument(help="The endpoint whose traffic goes back.")],
    reason: Annotated[str, typer.Option("--reason", help="Why, for the audit trail.")] = "",
    json_output: JsonFlag = False,
) -> None:
    """Send an endpoint's traffic back to the version it served before.

    Stops its running deployment, or undoes its last promotion (the alias moves back).
    Running servers follow within a second.

    [bold]Example:[/bold]
      gyre rollback fraud --reason "complaints about declined cards"
    """
    from gyre.cli.output import err_console, print_json
    from gyre.deploy.rollout import rollback as roll_back

    with _project() as p:
        d = roll_back(p.meta, endpoint, reason)
    if json_output:
        print_json(d.to_dict())
        return
    err_console().print(
        f"[green]Rolled back[/green] '{d.endpoint}' to {d.model_name} version {d.baseline_version} "
        f"(deployment {d.id} of version {d.candidate_version})."
    )


@app.command("list")
def list_deployments(
    endpoint: Annotated[str | None, typer.Option("--endpoint", "-e", help="Only this endpoint's.")] = None,
    state: Annotated[
        str | None,
        typer.Option("--state", help="running, promoted, rolled_back, completed or rejected."),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many, newest first.")] = 50,
    json_output: JsonFlag = False,
) -> None:
    """List deployments, newest first.

    [bold]Examples:[/bold]
      gyre deployments list
      gyre deployments list --endpoint fraud --state running --json
    """
    from gyre.cli.output import console, print_json, status_text, table
    from gyre.deploy.records import list_deployments as listed

    with _project() as p:
        rows = listed(p.meta, endpoint, state=state, limit=limit)
    if json_output:
        print_json([d.to_dict() for d in rows])
        return
    if not rows:
        hint = (
            "No deployments match."
            if (endpoint or state)
            else "No deployments yet; start one with 'gyre deploy'."
        )
        console().print(f"[dim]{hint}[/dim]")
        return
    # Fits 80 columns: when each happened and why are in 'gyre deployments show' (and --json).
    t = table("id", "endpoint", "model", "strategy", "state", "traffic")
    t.columns[0].no_wrap, t.columns[0].min_width = True, 26  # ids are what `show` takes: never cut
    for d in rows:
        t.add_row(
            d.id,
            d.endpoint,
            f"{d.model_name} {d.baseline_version} → {d.candidate_version}",
            d.strategy,
            status_text(d.state),
            _weight(d, d.weight),
        )
    console().print(t)


@app.command("show")
def show(
    ref: Annotated[str, typer.Argument(help="A deployment id, or an endpoint (its newest deployment).")],
    json_output: JsonFlag = False,
) -> None:
    """Show one deployment: its steps and each step's analysis.

    [bold]Examples:[/bold]
      gyre deployments show fraud
      gyre deployments show 01J9ZQ4W6M2Y8T5R3N0K7H1D4C --json
    """
    from gyre.cli.output import console, fmt_timestamp, kv_table, print_json, table
    from gyre.deploy.records import get_deployment

    with _project() as p:
        d = get_deployment(p.meta, ref)
    if json_output:
        print_json(d.to_dict())
        return
    out = console()
    out.print(
        kv_table(
            [
                ("id", d.id),
                ("endpoint", d.endpoint),
                ("model", f"{d.model_name}@{d.alias}: version {d.baseline_version} → {d.candidate_version}"),
                ("strategy", d.strategy),
                ("steps", ", ".join(f"{s:g}%" for s in d.steps)),
                ("interval", f"{d.interval_s:g} s"),
                ("state", d.state),
                ("traffic now", _weight(d, d.weight)),
                ("reason", d.reason),
                ("started", f"{fmt_timestamp(d.created_at)} by {d.actor}"),
                ("finished", fmt_timestamp(d.finished_at)),
            ],
            title=f"Deployment {d.id}",
        )
    )
    t = table("at", "action", "traffic", "analysis")
    for entry in d.history:
        report = entry.get("analysis") or {}
        notes = "; ".join(c["note"] for c in report.get("checks", []) if c.get("note"))
        t.add_row(
            entry["at"][:19].replace("T", " "),
            entry["action"],
            _weight(d, entry["weight"]),
            notes or entry.get("reason", ""),
        )
    out.print(t)


def _share(d: DeploymentInfo) -> str:
    if d.strategy == "shadow":
        return "the candidate sees a copy of all traffic, answers none"
    return f"the candidate answers {d.weight:g}% of entities"


def _weight(d: DeploymentInfo, weight: float) -> str:
    return "shadow copy" if d.strategy == "shadow" and weight == 0 else f"{weight:g}%"


def register(root: typer.Typer, panel: str) -> None:
    """Add ``deploy``, ``rollback`` and ``deployments`` to the ``gyre`` command."""
    root.command("deploy", rich_help_panel=panel)(deploy)
    root.command("rollback", rich_help_panel=panel)(rollback)
    root.add_typer(app, name="deployments", rich_help_panel=panel)
