"""``gyre monitor drift|quality|status|alerts|check`` and ``gyre feedback ingest``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from gyre.cli.common import JsonFlag

if TYPE_CHECKING:
    from gyre.data.lake import Lake
    from gyre.meta import MetaStore
    from gyre.monitoring.drift import DriftReport
    from gyre.store import ArtifactStore

app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode="rich",
    help="Monitoring: drift against the reference, live quality, alerts.",
)
feedback_app = typer.Typer(
    no_args_is_help=True, rich_markup_mode="rich", help="Feedback: true labels of logged predictions."
)

STATUS_STYLE = {"drift": "bold red", "ok": "green", "insufficient_data": "yellow", "skipped": "dim"}


@dataclass
class _Stores:
    meta: MetaStore
    lake: Lake
    blobs: ArtifactStore
    online_url: str
    settings: Any


@contextmanager
def open_stores() -> Iterator[_Stores]:
    from gyre.config import load_settings
    from gyre.data.lake import Lake
    from gyre.meta import MetaStore
    from gyre.store import ArtifactStore

    settings = load_settings()
    meta = MetaStore(settings.metadata_url, actor=settings.actor)
    try:
        yield _Stores(
            meta, Lake(settings.store_url), ArtifactStore(settings.store_url), settings.online_url, settings
        )
    finally:
        meta.close()


def _duration(value: str | None, what: str) -> timedelta | None:
    from gyre.definitions import parse_duration

    return parse_duration(value, what) if value is not None else None


def _when(value: str | None) -> datetime | None:
    from datetime import UTC

    from gyre.errors import InvalidArgument

    if value is None:
        return None
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidArgument(
            f"--end {value!r} is not a time; write it as ISO 8601, e.g. 2026-11-27T12:00Z."
        ) from None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


# -- drift -------------------------------------------------------------------------------------


@app.command("drift")
def drift(
    endpoint: Annotated[str | None, typer.Argument(help="The endpoint whose predictions to test.")] = None,
    window: Annotated[
        str | None, typer.Option("--window", "-w", help="Span of predictions to test, e.g. 15m, 1h, 1d.")
    ] = None,
    end: Annotated[
        str | None, typer.Option("--end", help="End of the window (ISO 8601; default now).")
    ] = None,
    dataset: Annotated[
        str | None, typer.Option("--dataset", help="Compare two versions of this dataset.")
    ] = None,
    from_version: Annotated[int | None, typer.Option("--from", help="The reference dataset version.")] = None,
    to_version: Annotated[int | None, typer.Option("--to", help="The dataset version to test.")] = None,
    no_save: Annotated[
        bool, typer.Option("--no-save", metavar="", help="Do not add the result to the drift time series.")
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """Test each feature (and the prediction) for drift against the model's reference.

    Numeric features get a Kolmogorov-Smirnov test, categorical ones chi-square, unless the
    endpoint's gyre.Monitor says otherwise. A feature with too few values in the window is
    reported as insufficient data, never as drift or no drift.

    [bold]Examples:[/bold]
      gyre monitor drift fraud --window 1h
      gyre monitor drift --dataset payments --from 3 --to 7
    """
    from gyre.errors import InvalidArgument
    from gyre.monitoring.service import dataset_drift, endpoint_drift

    with open_stores() as st:
        if dataset is not None:
            if endpoint is not None or from_version is None or to_version is None:
                raise InvalidArgument("With --dataset give --from V1 and --to V2 (and no endpoint).")
            reports = [dataset_drift(st.meta, st.lake, dataset, from_version, to_version, save=not no_save)]
        elif endpoint is None:
            raise InvalidArgument(
                "Name an endpoint (gyre monitor drift ENDPOINT) or a dataset (--dataset NAME)."
            )
        else:
            reports = endpoint_drift(
                st.meta,
                st.lake,
                st.blobs,
                endpoint,
                window=_duration(window, "--window"),
                end=_when(end),
                save=not no_save,
            )
    if json_output:
        from gyre.cli.output import print_json

        print_json([r.to_dict() for r in reports])
        return
    for r in reports:
        _print_report(r)


def _print_report(r: DriftReport) -> None:
    from gyre.cli.output import console, fmt_float, fmt_time, table, text

    out = console()
    s = r.subject
    if "dataset" in s:
        title = f"dataset {s['dataset']}: version {s['to_version']} against version {s['from_version']}"
    else:
        span = f"{fmt_time(r.window_start)} to {fmt_time(r.window_end)}" if r.window_start else ""
        title = f"{s['endpoint']}: model {s['model']} version {s['model_version']}, {span}"
        title += f", {r.rows:,} predictions"
    if s.get("error"):
        out.print(text(title, "bold"))
        out.print(text(f"  {s['error']}", "yellow"))
        return
    t = table(
        "feature",
        "kind",
        "test",
        "statistic",
        "p-value",
        "threshold",
        "status",
        "ref n",
        "cur n",
        "note",
        title=title,
    )
    for f in r.features:
        note = "" if f.status in ("drift", "ok") else f.message
        t.add_row(
            text(f.feature, "bold"),
            text(f.kind),
            text(f.method),
            text(fmt_float(f.statistic, 4)),
            text(fmt_float(f.p_value, 3)),
            text(fmt_float(f.threshold, 3)),
            text(f.status.replace("_", " "), STATUS_STYLE.get(f.status, "")),
            text(f.reference_count),
            text(f.current_count),
            text(note, "dim"),
        )
    out.print(t)
    summary = r.summary()
    verdict = (
        f"{summary['drifted']} of {summary['tested']} tested features drifted"
        + (f": {', '.join(summary['drifted_features'])}" if summary["drifted"] else "")
        + (f"; {summary['insufficient_data']} with too little data" if summary["insufficient_data"] else "")
    )
    out.print(text(verdict, "bold red" if summary["drifted"] else "green"))
    out.print()


# -- quality -----------------------------------------------------------------------------------


@app.command("quality")
def quality(
    endpoint: Annotated[str, typer.Argument(help="The endpoint.")],
    window: Annotated[
        str | None, typer.Option("--window", "-w", help="Span of predictions, e.g. 1d, 7d.")
    ] = None,
    end: Annotated[
        str | None, typer.Option("--end", help="End of the window (ISO 8601; default now).")
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Live quality per model version, from the labels received so far, with label coverage.

    [bold]Example:[/bold]
      gyre monitor quality fraud --window 7d
    """
    from gyre.cli.output import console, fmt_float, print_json, table, text
    from gyre.monitoring.quality import live_quality

    with open_stores() as st:
        reports = live_quality(
            st.meta, st.lake, endpoint, window=_duration(window, "--window"), end=_when(end)
        )
    if json_output:
        print_json([r.to_dict() for r in reports])
        return
    names = sorted({k for r in reports for k in r.metrics})
    t = table(
        "version", "task", "predictions", "labelled", "coverage", *names, title=f"{endpoint}: live quality"
    )
    for r in reports:
        t.add_row(
            text(r.model_version, "bold"),
            text(r.task),
            text(f"{r.predictions:,}"),
            text(f"{r.labelled:,}"),
            text("-" if r.coverage is None else f"{r.coverage:.0%}"),
            *(text(fmt_float(r.metrics.get(n), 4)) for n in names),
        )
    console().print(t if reports else f"No predictions or labels for {endpoint} in the window.")


# -- status ------------------------------------------------------------------------------------


@app.command("status")
def status(
    window: Annotated[str, typer.Option("--window", "-w", help="Span of the traffic figures.")] = "1h",
    json_output: JsonFlag = False,
) -> None:
    """Every endpoint on one screen: traffic, latest drift, live quality, firing alerts.

    Shows what was last computed (by gyre monitor drift/quality/check); computes no drift.

    [bold]Example:[/bold]
      gyre monitor status
    """
    from gyre.cli.output import console, fmt_float, fmt_time, print_json, table, text
    from gyre.monitoring.status import endpoint_status

    with open_stores() as st:
        rows = endpoint_status(st.meta, st.lake, window=_duration(window, "--window") or timedelta(hours=1))
    if json_output:
        print_json([r.to_dict() for r in rows])
        return
    t = table(
        "endpoint",
        "version",
        f"requests ({window})",
        "errors",
        "p99 ms",
        "drift",
        "checked",
        "quality",
        "labels",
        "alerts",
    )
    for r in rows:
        if r.drift_checked_at is None:
            drift_cell = text("-")
        elif r.drifted:
            drift_cell = text(f"{len(r.drifted)}/{r.tested}: {', '.join(r.drifted)}", "bold red")
        else:
            drift_cell = text(f"0/{r.tested}", "green")
        t.add_row(
            text(r.endpoint, "bold"),
            text(r.model_version),
            text(f"{r.requests:,}"),
            text("-" if r.error_rate is None else f"{r.error_rate:.1%}"),
            text(fmt_float(r.p99_ms, 4)),
            drift_cell,
            text(fmt_time(r.drift_checked_at)),
            text(f"{r.quality_metric} {fmt_float(r.quality, 3)}" if r.quality_metric else "-"),
            text(f"{r.labelled:,} ({r.coverage:.0%})" if r.coverage is not None else f"{r.labelled:,}"),
            text(", ".join(r.alerts) or "-", "bold red" if r.alerts else ""),
        )
    console().print(t if rows else "No endpoints yet: serve predictions, then monitor them here.")


# -- alerts ------------------------------------------------------------------------------------


@app.command("alerts")
def alerts(
    history: Annotated[
        bool, typer.Option("--history", metavar="", help="Every state change, newest first.")
    ] = False,
    rule: Annotated[str | None, typer.Option("--rule", help="Only this alert rule (with --history).")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="Rows of history to show.")] = 50,
    json_output: JsonFlag = False,
) -> None:
    """Alerts firing now, or (--history) every firing and resolution with its actions.

    [bold]Examples:[/bold]
      gyre monitor alerts
      gyre monitor alerts --history --rule fraud_drift
    """
    from gyre.cli.output import console, fmt_time, print_json, table, text
    from gyre.monitoring.engine import alert_history, list_alerts

    with open_stores() as st:
        rows = alert_history(st.meta, rule=rule, limit=limit) if history else list_alerts(st.meta)
    if json_output:
        print_json([a.to_dict() for a in rows])
        return
    t = table(
        "rule",
        "subject",
        "status",
        "since" if not history else "at",
        "message",
        *(["actions"] if history else []),
    )
    for a in rows:
        style = "bold red" if a.status == "firing" else "green"
        cells = [
            text(a.rule, "bold"),
            text(a.subject),
            text(a.status, style),
            text(fmt_time(a.at)),
            text(a.details.get("message", "")),
        ]
        if history:
            cells.append(text(", ".join(_action_summary(x) for x in a.actions) or "-"))
        t.add_row(*cells)
    console().print(t if rows else "No alerts." if not history else "No alert history.")


def _action_summary(action: dict[str, Any]) -> str:
    kind = action.get("kind", "?")
    if kind == "webhook":
        return f"webhook {action.get('status')} ({action.get('attempts', 0)} attempt(s))"
    return f"{kind} {action.get('status', '')}".strip()


@app.command("check")
def check(
    every: Annotated[
        str | None, typer.Option("--every", help="Evaluate again at this interval until Ctrl-C, e.g. 1m.")
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Evaluate the alert rules now: fire and resolve alerts, run their actions.

    Computes the drift and quality windows the rules need (adding them to the time series).

    [bold]Examples:[/bold]
      gyre monitor check
      gyre monitor check --every 5m
    """
    import time

    from gyre.cli.output import console, print_json, text
    from gyre.features.store import FeatureStore
    from gyre.monitoring.engine import AlertEngine

    interval = _duration(every, "--every")
    with open_stores() as st:
        features = FeatureStore(st.meta, st.lake, st.online_url)
        engine = AlertEngine(st.meta, st.lake, st.blobs, features=features)
        try:
            while True:
                rules = engine.rules()
                transitions = engine.evaluate(rules)
                engine.notifier.wait(60)
                if json_output:
                    print_json([t.to_dict() for t in transitions])
                else:
                    out = console()
                    for t in transitions:
                        style = "bold red" if t.status == "firing" else "green"
                        quiet = "" if t.notified else " (within cooldown: not notified)"
                        out.print(
                            text(f"{t.status.upper()} {t.rule} on {t.subject}: {t.message}{quiet}", style)
                        )
                    if not transitions:
                        out.print(f"{len(rules)} alert rule(s) evaluated; nothing changed.")
                if interval is None:
                    break
                time.sleep(interval.total_seconds())
        except KeyboardInterrupt:
            pass
        finally:
            engine.close(30)
            features.close()


# -- feedback ----------------------------------------------------------------------------------


@feedback_app.command("ingest")
def ingest(
    file: Annotated[
        Path, typer.Argument(help="CSV, JSON lines, JSON array or Parquet with prediction_id, label.")
    ],
    skip_invalid: Annotated[
        bool, typer.Option("--skip-invalid", metavar="", help="Record the good rows even if some are bad.")
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """Record true labels of logged predictions from a file.

    Columns: prediction_id, label, and optionally correction (true to replace a label recorded
    earlier). Every row is checked first; by default one bad row (unknown id, wrong label
    type, a second label without correction) rejects the file and nothing is written. Rows
    already recorded with the same label are skipped, so a file can be ingested again.

    [bold]Example:[/bold]
      gyre feedback ingest labels.csv
    """
    from gyre.cli.output import console, print_json
    from gyre.monitoring.feedback import ingest_feedback

    rows = _read_rows(file)
    with open_stores() as st:
        report = ingest_feedback(
            st.meta, st.lake, rows, source=f"file:{file.name}", skip_invalid=skip_invalid
        )
    if json_output:
        print_json(report.to_dict())
        return
    out = console()
    out.print(
        f"{report.rows:,} row(s): {report.recorded:,} recorded, {report.corrected:,} corrected, "
        f"{report.unchanged:,} already recorded, {len(report.problems):,} skipped."
    )
    for p in report.problems[:20]:
        out.print(f"  row {p.row}: {p.message}", style="yellow", markup=False)


def _read_rows(path: Path) -> list[dict[str, Any]]:
    import json

    from gyre.errors import InvalidArgument

    if not path.is_file():
        raise InvalidArgument(f"{path} is not a file.")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            import pyarrow as pa
            import pyarrow.csv as pacsv

            options = pacsv.ConvertOptions(column_types={"prediction_id": pa.string()})
            return pacsv.read_csv(path, convert_options=options).to_pylist()
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            return pq.read_table(path).to_pylist()
        if suffix in (".jsonl", ".ndjson"):
            return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        if suffix == ".json":
            data = json.loads(path.read_text())
            if not isinstance(data, list):
                raise InvalidArgument(
                    f"{path} holds a JSON {type(data).__name__}; it must be an array of objects."
                )
            return data
    except (ValueError, OSError) as exc:
        raise InvalidArgument(f"Cannot read {path}: {exc}") from None
    raise InvalidArgument(f"Cannot read {path.name}: use a .csv, .jsonl, .json or .parquet file.")


@feedback_app.command("export")
def export(
    endpoint: Annotated[str, typer.Argument(help="The endpoint whose labelled predictions to export.")],
    out: Annotated[Path, typer.Argument(help="The Parquet file to write.")],
    window: Annotated[
        str | None, typer.Option("--window", "-w", help="Only predictions this recent, e.g. 30d.")
    ] = None,
) -> None:
    """Write labelled predictions as training rows: served feature values, output, label.

    [bold]Example:[/bold]
      gyre feedback export fraud labelled.parquet --window 30d
    """
    import pyarrow.parquet as pq

    from gyre.cli.output import console
    from gyre.ids import utcnow
    from gyre.monitoring.feedback import labelled_predictions

    span = _duration(window, "--window")
    with open_stores() as st:
        now = utcnow()
        table = labelled_predictions(st.meta, st.lake, endpoint, now - span if span else None, None)
    pq.write_table(table, out)
    console().print(f"Wrote {table.num_rows:,} labelled prediction(s) of {endpoint} to {out}.")
