"""``gyre controller``: run the loop's reactions (materialize on new data, …) until Ctrl-C."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated

import typer

from gyre.cli.common import JsonFlag

if TYPE_CHECKING:
    from gyre.controller import Controller

app = typer.Typer(
    rich_markup_mode="rich",
    invoke_without_command=True,
)


@contextlib.contextmanager
def open_controller(poll_interval: float = 0.5, finish_pipelines: bool = False) -> Iterator[Controller]:
    from gyre.config import load_settings
    from gyre.controller import Controller
    from gyre.controller.builtin import default_reactions, default_schedules
    from gyre.controller.deployments import Deployer
    from gyre.controller.pipelines import PipelineLauncher
    from gyre.data.lake import Lake
    from gyre.features.store import FeatureStore
    from gyre.meta import MetaStore
    from gyre.monitoring.engine import AlertEngine
    from gyre.project import project_definitions
    from gyre.store import ArtifactStore

    settings = load_settings()
    meta = MetaStore(settings.metadata_url, actor="controller")
    lake = Lake(settings.store_url)
    features = FeatureStore(meta, lake, settings.online_url, lambda: project_definitions(settings))
    store = ArtifactStore(settings.store_url)
    engine = AlertEngine(meta, lake, store, features=features)
    launcher = PipelineLauncher.from_settings(settings)
    deployer = Deployer(meta, store, lake, settings.root / ".gyre" / "cache" / "models")
    try:
        yield Controller(
            meta,
            default_reactions(features, engine, launcher, deployer),
            schedules=default_schedules(),
            poll_interval=poll_interval,
        )
    finally:
        # Stopping cancels the pipeline runs it started; --once waits for them instead.
        launcher.close(timeout=None if finish_pipelines else 30, cancel=not finish_pipelines)
        engine.close(timeout=10)
        features.close()
        meta.close()


@app.callback()
def run(
    ctx: typer.Context,
    once: Annotated[
        bool, typer.Option("--once", metavar="", help="Handle what is pending, then exit.")
    ] = False,
    poll: Annotated[
        float, typer.Option(metavar="SECONDS", min=0.05, help="Pause between rounds when idle.")
    ] = 0.5,
) -> None:
    """Run the controller: it reacts to events (new data, new models, alerts) until Ctrl-C.

    Each event is handled once per reaction, even across restarts and with several
    controllers on one PostgreSQL database.

    [bold]Examples:[/bold]
      gyre controller              [dim]# run until Ctrl-C[/dim]
      gyre controller --once       [dim]# catch up and exit (cron, CI)[/dim]
      gyre controller status
    """
    if ctx.invoked_subcommand is not None:
        return
    import signal
    import threading

    from gyre.cli.output import console, err_console

    stop = threading.Event()
    with open_controller(poll, finish_pipelines=once) as controller:
        if once:
            settled = controller.run_once()
            console().print(f"Handled {settled} event(s).")
            return
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
        names = ", ".join(r.name for r in controller.reactions)
        err_console().print(f"Controller {controller.name} running ({names}); Ctrl-C to stop.")
        try:
            controller.run_forever(stop)
        except KeyboardInterrupt:
            stop.set()
        finally:
            signal.signal(signal.SIGTERM, previous)
        err_console().print("Controller stopped.")


@app.command("status")
def status(json_output: JsonFlag = False) -> None:
    """Show each reaction's position in the event log and its failures.

    [bold]Example:[/bold]
      gyre controller status
    """
    from gyre.cli.output import console, fmt_time, print_json, table, text

    with open_controller() as controller:
        rows = controller.status()
        dead = controller.failures(dead=True)
    if json_output:
        print_json({"reactions": rows, "dead_letters": dead})
        return
    t = table("reaction", "position", "retrying", "dead letters", "updated")
    for r in rows:
        t.add_row(
            text(r.name, "bold"),
            text(r.position),
            text(r.retrying),
            text(r.dead_letters, "red" if r.dead_letters else ""),
            text(fmt_time(r.updated_at)),
        )
    out = console()
    out.print(t)
    for f in dead:
        out.print(f"[red]dead letter[/red] {f.reaction} event {f.event_seq} ({f.event_type}): {f.last_error}")
