"""The ``gyre`` command: the app, its root options, and how errors reach the user.

A :class:`~gyre.errors.GyreError` prints as one red line, ``error: <message>``, on stderr
and exits 1; any other exception prints one line too, with a hint, and exits 2. ``--debug``
adds the traceback. Command groups live in their own modules; heavy imports (SQLAlchemy,
the client, Rich) happen inside the commands, so this module imports quickly.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

from gyre.cli import (
    controller,
    data,
    db,
    demo,
    deploy,
    features,
    keys,
    models,
    monitor,
    pipelines,
    project,
    reproduce,
    runs,
    score,
    server,
    up,
)
from gyre.errors import GyreError

EXIT_ERROR = 1  # a GyreError: the message says what to do
EXIT_UNEXPECTED = 2  # a bug or an environment problem Gyre did not anticipate


# The order of `gyre --help`: the loop from setting up to serving.
COMMAND_ORDER = (
    "demo",
    "init",
    "config",
    "db",
    "apply",
    "ingest",
    "validate",
    "datasets",
    "quarantine",
    "features",
    "experiments",
    "runs",
    "run",
    "pipelines",
    "reproduce",
    "models",
    "up",
    "serve",
    "score",
    "keys",
    "monitor",
    "feedback",
    "controller",
)


class GyreGroup(TyperGroup):
    """The root group: turns exceptions from any subcommand into a one-line message."""

    def list_commands(self, ctx: Any) -> list[str]:
        names = super().list_commands(ctx)
        rank = {name: i for i, name in enumerate(COMMAND_ORDER)}
        return sorted(names, key=lambda n: rank.get(n, len(rank)))

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.TyperException, typer.Exit, typer.Abort):
            raise  # usage errors, --help, explicit exits: Typer prints and exits as usual
        except BrokenPipeError:
            _quiet_broken_pipe()
        except GyreError as exc:
            _fail(ctx, exc, exc.message, EXIT_ERROR)
        except Exception as exc:
            hint = "" if _debug(ctx) else " (re-run with --debug to see the traceback)"
            _fail(ctx, exc, f"unexpected {type(exc).__name__}: {exc}{hint}", EXIT_UNEXPECTED)


def _debug(ctx: typer.Context) -> bool:
    return bool(ctx.params.get("debug"))


def _quiet_broken_pipe() -> NoReturn:
    """The reader went away (``gyre runs list --json | head``): stop without a message."""
    try:
        # Python would complain again when flushing stdout at exit; point it at /dev/null.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout without a file descriptor (tests)
        pass
    raise typer.Exit(EXIT_ERROR)


def _fail(ctx: typer.Context, exc: BaseException, message: str, code: int) -> NoReturn:
    from gyre.cli.output import print_error

    if _debug(ctx):
        traceback.print_exception(exc, file=sys.stderr)
    print_error(message)
    raise typer.Exit(code) from None


app = typer.Typer(
    name="gyre",
    cls=GyreGroup,
    no_args_is_help=True,
    rich_markup_mode="rich",
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

PROJECT, DATA, FEATURES = "Project", "Data", "Features"
TRACKING, REGISTRY, SERVING = "Tracking", "Model registry", "Serving"

app.command("init", rich_help_panel=PROJECT)(project.init)
app.add_typer(project.config_app, name="config", rich_help_panel=PROJECT)
app.add_typer(db.app, name="db", rich_help_panel=PROJECT)
app.command("apply", rich_help_panel=PROJECT)(features.apply)
app.command("ingest", rich_help_panel=DATA)(data.ingest)
app.command("validate", rich_help_panel=DATA)(data.validate)
app.add_typer(data.datasets_app, name="datasets", rich_help_panel=DATA)
app.add_typer(data.quarantine_app, name="quarantine", rich_help_panel=DATA)
app.add_typer(features.app, name="features", rich_help_panel=FEATURES)
app.add_typer(runs.experiments_app, name="experiments", rich_help_panel=TRACKING)
app.add_typer(runs.app, name="runs", rich_help_panel=TRACKING)
app.command("run", rich_help_panel="Pipelines")(pipelines.run)
app.add_typer(pipelines.app, name="pipelines", rich_help_panel="Pipelines")
app.command("reproduce", rich_help_panel="Pipelines")(reproduce.reproduce)
# Human review of the models pipelines hold lives with the pipelines, under `gyre models`.
models.app.command("approve")(pipelines.approve_model)
models.app.command("reject")(pipelines.reject_model)
app.add_typer(models.app, name="models", rich_help_panel=REGISTRY)
app.command("up", rich_help_panel=PROJECT)(up.up)
app.command("demo", rich_help_panel=PROJECT)(demo.demo)
app.command("serve", rich_help_panel=SERVING)(server.serve)
app.command("score", rich_help_panel=SERVING)(score.score)
app.add_typer(keys.app, name="keys", rich_help_panel=SERVING)
deploy.register(app, "Deployment")
app.add_typer(monitor.app, name="monitor", rich_help_panel="Monitoring")
app.add_typer(monitor.feedback_app, name="feedback", rich_help_panel="Monitoring")
app.add_typer(controller.app, name="controller", rich_help_panel=PROJECT)


def _print_version(value: bool) -> None:
    if value:
        from gyre import __version__

        typer.echo(f"gyre {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            metavar="",
            callback=_print_version,
            is_eager=True,
            help="Print Gyre's version and exit.",
        ),
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", metavar="", help="Show the full traceback when a command fails.")
    ] = False,
) -> None:
    """Gyre: track experiments, register models and serve them, from one install.

    [bold]Get started:[/bold]
      gyre demo                       [dim]# the whole loop on a drifting fraud stream[/dim]
      gyre init fraud && cd fraud     [dim]# a project folder with gyre.toml[/dim]
      python definitions.py           [dim]# train and register an example model[/dim]
      gyre runs list                  [dim]# what was recorded[/dim]
      gyre models show fraud          [dim]# the registered versions[/dim]

    Every command has --help; list, show and compare commands take --json.
    """


def main() -> None:
    """Entry point of the ``gyre`` console script."""
    app(prog_name="gyre")


if __name__ == "__main__":
    main()
