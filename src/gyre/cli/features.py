"""``gyre apply`` (register the project's definitions) and ``gyre features …``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from gyre.cli.common import JsonFlag

if TYPE_CHECKING:
    from gyre.features.store import FeatureStore, Freshness

app = typer.Typer(
    no_args_is_help=True, rich_markup_mode="rich", help="Feature views: list, inspect, materialize online."
)

ACTION_STYLE = {"create": ("+", "green"), "update": ("~", "yellow"), "delete": ("-", "red")}


@contextmanager
def open_feature_store() -> Iterator[FeatureStore]:
    from gyre.config import load_settings
    from gyre.data.lake import Lake
    from gyre.features.store import FeatureStore
    from gyre.meta import MetaStore
    from gyre.project import project_definitions

    settings = load_settings()
    meta = MetaStore(settings.metadata_url, actor=settings.actor)
    store = FeatureStore(
        meta, Lake(settings.store_url), settings.online_url, lambda: project_definitions(settings)
    )
    try:
        yield store
    finally:
        store.close()
        meta.close()


def apply(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", "--plan", metavar="", help="Show what would change; write nothing.")
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """Register the definitions in the project's modules (datasets, entities, feature views…).

    Shows what will be created (+), updated (~) and deleted (-) — definitions removed from
    the modules are unregistered; a dataset's data is always kept — then applies it in one
    transaction. Applying again with nothing changed does nothing.

    [bold]Examples:[/bold]
      gyre apply --dry-run     [dim]# only show the plan[/dim]
      gyre apply
    """
    from gyre.cli.output import console, print_json
    from gyre.config import load_settings
    from gyre.meta import MetaStore
    from gyre.project import apply as apply_plan
    from gyre.project import plan, project_definitions

    settings = load_settings()
    definitions = project_definitions(settings)
    meta = MetaStore(settings.metadata_url, actor=settings.actor)
    try:
        the_plan = plan(meta, definitions)
        if not dry_run:
            apply_plan(meta, definitions, the_plan)
    finally:
        meta.close()
    if json_output:
        print_json({"applied": not dry_run, **the_plan.to_dict()})
        return
    out = console()
    if not the_plan:
        out.print(f"Nothing to change: {len(the_plan.unchanged)} definition(s) are registered as declared.")
        return
    for c in the_plan.changes:
        mark, style = ACTION_STYLE[c.action]
        detail = f" ({', '.join(c.fields)})" if c.action == "update" else ""
        out.print(f"[{style}]{mark} {c.kind.replace('_', ' ')} {c.name}[/{style}]{detail}")
    counts = [sum(c.action == a for c in the_plan.changes) for a in ACTION_STYLE]
    if dry_run:
        out.print(
            "Plan: {} to create, {} to update, {} to delete. Nothing was written; "
            "run 'gyre apply' to apply it.".format(*counts)
        )
    else:
        out.print("Applied: {} created, {} updated, {} deleted.".format(*counts))


@app.command("list")
def list_features(json_output: JsonFlag = False) -> None:
    """List registered feature views and their features.

    [bold]Example:[/bold]
      gyre features list
    """
    from gyre.cli.output import console, print_json, table, text

    with open_feature_store() as fs:
        views = fs.views()
        stale = {f.view for f in fs.freshness() if f.stale}
    if json_output:
        print_json(
            [
                {
                    "view": v.name,
                    "entity": v.entity,
                    "source": v.source,
                    "features": v.feature_names,
                    "stale": v.name in stale,
                }
                for v in views.values()
            ]
        )
        return
    t = table("view", "entity", "source", "features")
    for v in views.values():
        label = text(f"{v.name} (stale)", "bold red") if v.name in stale else text(v.name, "bold")
        t.add_row(label, text(v.entity), text(v.source), text(", ".join(v.feature_names)))
    console().print(t if views else "No feature views registered; declare some and run 'gyre apply'.")


@app.command("show")
def show(
    view: Annotated[str, typer.Argument(help="Feature view name.")], json_output: JsonFlag = False
) -> None:
    """Show a feature view: entity, source dataset, TTL, each feature, online freshness.

    [bold]Example:[/bold]
      gyre features show user_activity
    """
    from datetime import timedelta

    from gyre.cli.output import console, fmt_timestamp, kv_table, print_json, table, text
    from gyre.definitions import format_duration
    from gyre.meta.registry import get_registered

    with open_feature_store() as fs:
        reg = get_registered(fs.meta, "feature_view", view)
        fresh = next((f for f in fs.freshness() if f.view == view), None)
    if json_output:
        print_json({**reg.to_dict(), "freshness": fresh})
        return

    spec = reg.spec
    out = console()
    out.print(
        kv_table(
            [
                ("feature view", reg.name),
                ("entity", f"{spec['entity']} ({', '.join(spec['join_keys'])})"),
                ("source", f"{spec['source']} (event time: {spec.get('event_time') or '-'})"),
                ("ttl", format_duration(timedelta(seconds=spec["ttl_s"])) if spec.get("ttl_s") else "none"),
                ("online", "yes" if spec.get("online", True) else "no"),
                ("owner", spec.get("owner") or "-"),
                ("tags", ", ".join(f"{k}={v}" for k, v in (spec.get("tags") or {}).items()) or "-"),
                ("description", spec.get("description") or "-"),
                ("registered", f"version {reg.version}, {fmt_timestamp(reg.updated_at)}"),
                *_freshness_rows(fresh),
            ]
        )
    )
    t = table("feature", "kind", "column", "dtype", "window", title="Features")
    for f in spec["features"]:
        window = format_duration(timedelta(seconds=f["window_s"])) if f["kind"] == "aggregate" else "-"
        kind = f["function"] if f["kind"] == "aggregate" else "latest"
        t.add_row(
            text(f["name"], "bold"), text(kind), text(f["column"]), text(f.get("dtype") or "-"), text(window)
        )
    out.print(t)


def _freshness_rows(fresh: Freshness | None) -> list[tuple[str, Any]]:
    from gyre.cli.output import fmt_duration, fmt_timestamp, text

    if fresh is None:
        return [("online", "no (online=False)")]
    behind = fresh.versions_behind
    state = text("STALE", "bold red") if fresh.stale else text("fresh" if fresh.max_lag_s else "-")
    online_up_to = "never materialized"
    if fresh.materialized_version is not None:
        online_up_to = f"dataset version {fresh.materialized_version}"
        online_up_to += f" ({behind} behind)" if behind else " (current)"
    return [
        ("dataset version", "-" if fresh.dataset_version is None else fresh.dataset_version),
        ("online up to", online_up_to),
        ("newest event online", fmt_timestamp(fresh.last_event_time) if fresh.last_event_time else "-"),
        ("lag", fmt_duration(fresh.lag_s) if fresh.lag_s is not None else "-"),
        ("max lag", fmt_duration(fresh.max_lag_s) if fresh.max_lag_s else "not set"),
        ("freshness", state),
    ]


@app.command("materialize")
def materialize(
    views: Annotated[
        list[str] | None, typer.Argument(help="Views to materialize (default: all online views).")
    ] = None,
    full: Annotated[
        bool,
        typer.Option("--full", metavar="", help="Rebuild from every version instead of from the watermark."),
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """Copy feature values from the lake into the online store, for serving.

    Incremental by default: only dataset versions added since the last run are read.

    [bold]Examples:[/bold]
      gyre features materialize
      gyre features materialize user_activity --full
    """
    from gyre.cli.output import busy, console, print_json, table, text

    with busy("Materializing…"), open_feature_store() as fs:
        results = fs.materialize(views, full=full)
    if json_output:
        print_json(results)
        return
    t = table("view", "read", "rows", "keys updated", "events", "up to version", "seconds")
    for name, r in results.items():
        read = f"all ({r.reason})" if r.full else f"since version {r.since}"
        t.add_row(
            text(name, "bold"),
            text(read),
            text(r.rows),
            text(r.latest_written),
            text(r.events_written),
            text(r.version),
            text(f"{r.seconds:.2f}"),
        )
    console().print(t if results else "No online feature views to materialize.")
