"""``gyre init`` (scaffold a project) and ``gyre config show`` (the resolved settings)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated

import typer

from gyre.cli.common import JsonFlag

config_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode="rich",
    help="Show the settings Gyre uses here (from gyre.toml, GYRE_* variables and defaults).",
)

GYRE_TOML = """\
# Gyre project settings. Every key can be overridden by an environment variable
# GYRE_<SECTION>_<KEY>, e.g. GYRE_BACKENDS_METADATA. 'gyre config show' prints them all.

[project]
name = {name}
definitions = ["definitions.py"]

# Where Gyre keeps things. The defaults below run on this machine alone; uncomment and
# change a line to scale out (relative paths are relative to this file's folder).
# [backends]
# metadata = "sqlite:///.gyre/meta.db"     # or "postgresql://user@host:5432/db"
# store    = "file://.gyre/store"          # or "s3://bucket/prefix"
# online   = "sqlite:///.gyre/online.db"   # or "redis://host:6379/0"
# stream   = "local"                       # or "nats://host:4222"
# compute  = "local"                       # or "ray:local", "ray://host:10001"
"""

DEFINITIONS_PY = '''\
"""Definitions of the {name} project.

Gyre reads the modules listed under [project] definitions in gyre.toml: 'gyre apply'
registers the datasets, entities and feature views declared here ('gyre features list'
shows them). Importing this module does not train anything. Train and register the
example model with:

    python definitions.py

then look at what it recorded with 'gyre runs list' and 'gyre models show {model}'.
"""

import gyre

# -- data and features ------------------------------------------------------------------
# A dataset of card payments, and per-user features computed from it: the same definition
# serves training (point in time, 'client.get_training_set') and serving (online store).
payments = gyre.Dataset("payments", keys=["payment_id"], event_time="ts")
user = gyre.Entity("user", join_keys=["user_id"])
user_activity = gyre.FeatureView(
    "user_activity",
    entity=user,
    source=payments,
    ttl="30d",
    features=[
        gyre.Field("country"),
        gyre.Aggregate("amount", "sum", window="1h"),
        gyre.Aggregate("payment_id", "count", window="1d", name="payments_1d"),
    ],
)

# -- a model ----------------------------------------------------------------------------

EXPERIMENT = {model_literal}
MODEL_NAME = {model_literal}


def train(n_estimators: int = 100, seed: int = 0):
    """Train a small classifier on generated data; log params, a metric and the model."""
    # Imported here so that importing this module stays fast and needs no scikit-learn.
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split

    x, y = make_classification(n_samples=2_000, n_features=10, random_state=seed)
    x_train, x_test, y_train, y_test = train_test_split(x, y, random_state=seed)

    with gyre.start_run(experiment=EXPERIMENT) as run:
        run.log_params({{"n_estimators": n_estimators, "seed": seed}})
        model = RandomForestClassifier(n_estimators=n_estimators, random_state=seed)
        model.fit(x_train, y_train)
        run.log_metric("auc", roc_auc_score(y_test, model.predict_proba(x_test)[:, 1]))
        # Stores the model with the run and registers it as the next version of MODEL_NAME;
        # the input example gives it a signature, so an endpoint can serve and check requests.
        return run.log_model(model, "model", register_as=MODEL_NAME, input_example=x_test[:5])


if __name__ == "__main__":
    version = train()
    print(f"Registered {{MODEL_NAME}} version {{version.version}}")
'''

GITIGNORE_LINE = ".gyre/"


def init(
    directory: Annotated[
        Path,
        typer.Argument(
            metavar="DIR", help="Folder to set up; created if missing.", show_default="current folder"
        ),
    ] = Path("."),
    force: Annotated[
        bool,
        typer.Option("--force", metavar="", help="Replace an existing gyre.toml (definitions.py is kept)."),
    ] = False,
) -> None:
    """Set up a Gyre project: gyre.toml, an example definitions.py and .gitignore.

    The project is named after its folder. Gyre keeps everything under .gyre/ by default.

    [bold]Examples:[/bold]
      gyre init fraud        [dim]# creates ./fraud/ and sets it up[/dim]
      gyre init              [dim]# sets up the current folder[/dim]
    """
    from gyre.cli.output import console
    from gyre.errors import AlreadyExists, InvalidArgument

    folder = directory.resolve()
    if folder.exists() and not folder.is_dir():
        raise InvalidArgument(f"{directory} is a file; give a folder to set up the project in.")
    toml = folder / "gyre.toml"
    if toml.exists() and not force:
        raise AlreadyExists(
            f"{_shown(toml)} already exists; this folder is a Gyre project. Use --force to replace gyre.toml."
        )
    name = folder.name or "gyre"
    model = _model_name(name)

    folder.mkdir(parents=True, exist_ok=True)
    report: list[tuple[str, str]] = [("replaced" if toml.exists() else "created", "gyre.toml")]
    toml.write_text(GYRE_TOML.format(name=json.dumps(name, ensure_ascii=False)))

    definitions = folder / "definitions.py"
    if definitions.exists():
        report.append(("kept", "definitions.py (already there)"))
    else:
        definitions.write_text(
            DEFINITIONS_PY.format(name=model, model=model, model_literal=json.dumps(model))
        )
        report.append(("created", "definitions.py"))

    gitignore = folder / ".gitignore"
    existing = gitignore.read_text() if gitignore.exists() else ""
    if GITIGNORE_LINE in {line.strip() for line in existing.splitlines()}:
        report.append(("kept", ".gitignore (already ignores .gyre/)"))
    else:
        sep = "" if not existing or existing.endswith("\n") else "\n"
        gitignore.write_text(f"{existing}{sep}# Gyre's local stores\n{GITIGNORE_LINE}\n")
        report.append(("updated" if existing else "created", ".gitignore"))

    out = console()
    out.print(f"Gyre project [bold]{_escape(name)}[/bold] in {_escape(_shown(folder))}")
    for verb, what in report:
        out.print(f"  {verb:8} {_escape(what)}")
    out.print("\nNext:")
    steps = []
    if folder != Path.cwd().resolve():
        steps.append((f"cd {_shown(folder)}", ""))
    steps += [
        ("python definitions.py", "train the example model and register it"),
        ("gyre runs list", "the run it recorded"),
        (f"gyre models show {model}", "the registered version"),
    ]
    width = max(len(cmd) for cmd, _ in steps)
    for cmd, why in steps:
        comment = f"  [dim]# {why}[/dim]" if why else ""
        out.print(f"  [bold]{_escape(cmd.ljust(width))}[/bold]{comment}")


@config_app.command("show")
def config_show(json_output: JsonFlag = False) -> None:
    """Show every setting, its value, its environment variable and where the value came from.

    Precedence: GYRE_* variable, then gyre.toml, then the default. Secrets are masked.

    [bold]Examples:[/bold]
      gyre config show
      GYRE_BACKENDS_METADATA=postgresql://me@db:5432/gyre gyre config show --json
    """
    from gyre.cli.output import console, kv_table, print_json, table, text
    from gyre.config import load_settings

    settings = load_settings()
    rows = settings.describe()
    if json_output:
        print_json(
            {
                "root": str(settings.root),
                "config_file": str(settings.config_file) if settings.config_file else None,
                "settings": rows,
            }
        )
        return
    out = console()
    out.print(
        kv_table(
            [
                ("project root", str(settings.root)),
                ("config file", str(settings.config_file) if settings.config_file else "none"),
            ]
        )
    )
    out.print()
    t = table("setting", "value", "environment variable", "source")
    t.columns[0].no_wrap = True
    t.columns[1].overflow = "fold"
    for row in rows:
        source = row["source"]
        if settings.config_file and source == str(settings.config_file):
            source = "gyre.toml"
        style = "dim" if source == "default" else ""
        t.add_row(
            text(row["key"]),
            text(row["value"] if row["value"] != "" else '""', style),
            text(row["env"], "dim"),
            text(source, "cyan" if source.startswith("env:") else style),
        )
    out.print(t)


def _model_name(name: str) -> str:
    """A valid model name from a folder name (letters, digits, _ - . only)."""
    cleaned = re.sub(r"[^\w\-.]+", "-", name).strip("-.")[:200] or "model"
    return cleaned if re.match(r"[A-Za-z0-9]", cleaned) else f"m-{cleaned}"


def _shown(path: Path) -> str:
    """A path as the user would type it: relative to the working folder when inside it."""
    try:
        rel = path.relative_to(Path.cwd().resolve())
    except ValueError:
        return str(path)
    return str(rel) if str(rel) != "." else "."


def _escape(value: str) -> str:
    from rich.markup import escape

    return escape(value)
