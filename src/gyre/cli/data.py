"""``gyre ingest``, ``gyre validate``, ``gyre datasets …`` and ``gyre quarantine …``.

These work on the project's own stores (the lake lives beside the artifact store); the
control-plane API does not serve datasets yet.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import typer

from gyre.cli.common import JsonFlag

if TYPE_CHECKING:
    from gyre.data.lake import Lake
    from gyre.data.validation import ValidationReport
    from gyre.meta import MetaStore
    from gyre.store import ArtifactStore

datasets_app = typer.Typer(
    no_args_is_help=True, rich_markup_mode="rich", help="Datasets in the lake and their versions."
)
quarantine_app = typer.Typer(
    no_args_is_help=True, rich_markup_mode="rich", help="Batches that failed validation and were kept aside."
)

Paths = Annotated[
    list[str], typer.Argument(help="Files, globs, a folder or s3:// URLs (CSV, Parquet, JSON Lines).")
]
Format = Annotated[
    str | None, typer.Option("--format", "-f", help="csv, parquet or jsonl (default: from the extension).")
]


@dataclass
class Stores:
    meta: MetaStore
    lake: Lake
    store: ArtifactStore


@contextmanager
def open_stores() -> Iterator[Stores]:
    from gyre.config import load_settings
    from gyre.data.lake import Lake
    from gyre.meta import MetaStore
    from gyre.store import ArtifactStore

    settings = load_settings()
    meta = MetaStore(settings.metadata_url, actor=settings.actor)
    try:
        yield Stores(meta, Lake(settings.store_url), ArtifactStore(settings.store_url))
    finally:
        meta.close()


OptionalPaths = Annotated[
    list[str] | None,
    typer.Argument(help="Files, globs, a folder or s3:// URLs (CSV, Parquet, JSON Lines); or use --from."),
]
STREAM = "Stream ingest (--from)"


def ingest(
    dataset: Annotated[str, typer.Argument(help="The dataset to add a version to (created if new).")],
    paths: OptionalPaths = None,
    format: Format = None,
    keys: Annotated[
        str | None, typer.Option("--keys", help="Key columns of a new dataset, comma separated.")
    ] = None,
    event_time: Annotated[
        str | None, typer.Option("--event-time", help="Event-time column of a new dataset.")
    ] = None,
    from_url: Annotated[
        str | None,
        typer.Option(
            "--from",
            metavar="URL",
            help="Consume a NATS JetStream subject instead of files: nats://HOST:PORT/SUBJECT.",
            rich_help_panel=STREAM,
        ),
    ] = None,
    stream: Annotated[
        str | None,
        typer.Option(
            help="The JetStream stream.",
            show_default="the one capturing the subject, or a new GYRE_<DATASET>",
            rich_help_panel=STREAM,
        ),
    ] = None,
    durable: Annotated[
        str | None,
        typer.Option(
            help="Durable consumer name; the position is kept per stream and name.",
            show_default="gyre-<dataset>",
            rich_help_panel=STREAM,
        ),
    ] = None,
    batch: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Commit a group after this many messages.",
            show_default="1000",
            rich_help_panel=STREAM,
        ),
    ] = None,
    max_wait: Annotated[
        float | None,
        typer.Option(
            "--max-wait",
            min=0.01,
            metavar="SECONDS",
            help="Commit a group at most this long after its first message.",
            show_default="1",
            rich_help_panel=STREAM,
        ),
    ] = None,
    id_field: Annotated[
        str | None,
        typer.Option(
            "--id-field",
            metavar="FIELD",
            help="The record id to drop duplicates by.",
            show_default="the dataset's key",
            rich_help_panel=STREAM,
        ),
    ] = None,
    follow: Annotated[
        bool | None,
        typer.Option(
            "--follow/--no-follow",
            help="Keep consuming until Ctrl-C, or stop when nothing is pending.",
            show_default="--no-follow",
            rich_help_panel=STREAM,
        ),
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Add files to a dataset as one validated version (a failing batch is quarantined), or
    consume a NATS JetStream subject into it (--from), one version per group of messages.

    A stream's messages are JSON objects, each one record; each is committed exactly once, and
    a restarted consumer resumes after the last committed message.

    [bold]Examples:[/bold]
      gyre ingest payments data/payments-*.parquet --keys payment_id --event-time ts
      gyre ingest payments s3://bucket/drop/2026-11-26.csv
      gyre ingest payments --from nats://127.0.0.1:4222/payments --id-field payment_id --follow
    """
    from gyre.errors import InvalidArgument

    stream_options = {
        "--stream": stream,
        "--durable": durable,
        "--batch": batch,
        "--max-wait": max_wait,
        "--id-field": id_field,
        "--follow/--no-follow": follow,
    }
    if from_url is None:
        given = [name for name, value in stream_options.items() if value is not None]
        if given:
            raise InvalidArgument(f"{', '.join(given)} apply only to stream ingest with --from URL.")
        if not paths:
            raise InvalidArgument(
                "Name the files to ingest, or a stream to consume with --from nats://HOST:PORT/SUBJECT."
            )
        _ingest_files(dataset, paths, format, keys, event_time, json_output)
        return
    if paths:
        raise InvalidArgument("Pass files to ingest or --from URL, not both.")
    if format is not None or keys is not None:
        raise InvalidArgument(
            "--format and --keys apply to files; with --from, messages are JSON objects and "
            "--id-field names the record id (the key of a new dataset)."
        )
    _ingest_stream(
        dataset,
        from_url,
        stream=stream,
        durable=durable,
        batch=batch or 1000,
        max_wait=max_wait or 1.0,
        id_field=id_field,
        event_time=event_time,
        follow=bool(follow),
        json_output=json_output,
    )


def _ingest_files(
    dataset: str,
    paths: list[str],
    format: str | None,
    keys: str | None,
    event_time: str | None,
    json_output: bool,
) -> None:
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from gyre.cli.output import console, err_console, print_json
    from gyre.data.ingest import ingest_files

    err = err_console()
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TextColumn("{task.completed:,.0f} rows"),
        TextColumn("[cyan]{task.fields[rate]}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,  # scripts and pipes get the result only
    )
    with progress, open_stores() as s:
        task = progress.add_task(f"Ingesting into {dataset}", total=None, rate="")

        def advance(rows: int) -> None:
            progress.advance(task, rows)
            speed = progress.tasks[0].speed
            progress.update(task, rate=f"{speed:,.0f} rows/s" if speed else "")

        result = ingest_files(
            s.meta,
            s.lake,
            s.store,
            dataset,
            paths,
            format=format,
            keys=[k.strip() for k in keys.split(",")] if keys else None,
            event_time=event_time,
            on_rows=advance,
        )
    if json_output:
        print_json(result.to_dict())
    else:
        out = console()
        if result.accepted:
            out.print(f"[green]{dataset} version {result.version}[/green]: {result.rows:,} rows committed.")
        else:
            out.print(
                f"[red]Rejected[/red]: {result.rows:,} rows kept in quarantine {result.quarantine_id}; "
                f"{dataset} is unchanged. See 'gyre quarantine show {result.quarantine_id}'."
            )
        _print_report(result.report)
    if not result.accepted:
        raise typer.Exit(1)


def _ingest_stream(
    dataset: str,
    url: str,
    *,
    stream: str | None,
    durable: str | None,
    batch: int,
    max_wait: float,
    id_field: str | None,
    event_time: str | None,
    follow: bool,
    json_output: bool,
) -> None:
    import signal
    import threading

    from rich.markup import escape
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from gyre.cli.output import console, err_console, print_json
    from gyre.data.stream import consume_nats, parse_nats_url

    address = parse_nats_url(url)  # a bad URL fails before any store is opened
    err = err_console()
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TextColumn("{task.completed:,.0f} rows committed"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    )
    # Ctrl-C (or SIGTERM) stops the consumer after it commits what it holds; a second Ctrl-C
    # interrupts at once, which is safe too: nothing uncommitted was acknowledged.
    stop = threading.Event()
    previous: dict[signal.Signals, Any] = {}

    def request_stop(signum: int, frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        progress.console.print("Stopping after the current group…", style="yellow")

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, request_stop)
    try:
        with progress, open_stores() as s:
            mode = "Following" if follow else "Consuming"
            task = progress.add_task(f"{mode} {escape(address.source)} into {dataset}", total=None)
            result = consume_nats(
                s.meta,
                s.lake,
                dataset,
                address.server,
                subject=address.subject,
                stream=stream,
                durable=durable,
                id_field=id_field,
                event_time=event_time,
                batch=batch,
                max_wait_s=max_wait,
                follow=follow,
                on_rows=lambda rows: progress.advance(task, rows),
                stop=stop,
            )
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if json_output:
        print_json(result.to_dict())
        return
    versions = result.versions
    made = (
        f"in {len(versions)} version{'s' if len(versions) != 1 else ''} "
        f"({versions[0]}{f'-{versions[-1]}' if len(versions) > 1 else ''})"
        if versions
        else "(no new version)"
    )
    console().print(
        f"[green]{dataset}[/green]: {result.rows_committed:,} rows committed {made} from "
        f"{escape(result.source)}; {result.records_read:,} records read, "
        f"{result.duplicates_dropped:,} duplicates dropped. Stream {escape(result.stream)} is read "
        f"up to sequence {result.last_seq or 0:,}."
    )


def validate(
    dataset: Annotated[str, typer.Argument(help="The dataset whose expectations to check against.")],
    paths: Paths,
    format: Format = None,
    json_output: JsonFlag = False,
) -> None:
    """Check files against a dataset without writing anything (a dry run of 'gyre ingest').

    Exits 1 when a check of error severity fails.

    [bold]Example:[/bold]
      gyre validate payments new-batch.csv
    """
    from gyre.cli.output import busy, print_json
    from gyre.data.ingest import ingest_files

    with busy(f"Validating against {dataset}…"), open_stores() as s:
        result = ingest_files(s.meta, s.lake, s.store, dataset, paths, format=format, dry_run=True)
    if json_output:
        print_json(result.to_dict())
    else:
        _print_report(result.report)
    if not result.accepted:
        raise typer.Exit(1)


@datasets_app.command("list")
def list_datasets(json_output: JsonFlag = False) -> None:
    """List datasets with their latest version.

    [bold]Example:[/bold]
      gyre datasets list
    """
    from gyre.cli.output import console, fmt_time, print_json, table, text
    from gyre.data import catalog

    with open_stores() as s:
        datasets = catalog.list_datasets(s.meta)
    if json_output:
        print_json(datasets)
        return
    t = table("name", "latest version", "keys", "event time", "updated")
    for d in datasets:
        t.add_row(
            text(d.name, "bold"),
            text("-" if d.latest_version is None else d.latest_version),
            text(", ".join(d.keys)),
            text(d.event_time or "-"),
            text(fmt_time(d.updated_at)),
        )
    console().print(t if datasets else "No datasets yet; 'gyre ingest NAME FILE' creates one.")


@datasets_app.command("show")
def show_dataset(
    name: Annotated[str, typer.Argument(help="Dataset name.")], json_output: JsonFlag = False
) -> None:
    """Show a dataset: keys, event time, schema and expectations.

    [bold]Example:[/bold]
      gyre datasets show payments
    """
    from gyre.cli.output import console, fmt_timestamp, kv_table, print_json, table, text
    from gyre.data import catalog

    with open_stores() as s:
        d = catalog.get_dataset(s.meta, name)
    if json_output:
        print_json(d)
        return
    out = console()
    out.print(
        kv_table(
            [
                ("dataset", d.name),
                ("latest version", "-" if d.latest_version is None else d.latest_version),
                ("keys", ", ".join(d.keys) or "-"),
                ("event time", d.event_time or "-"),
                ("reference version", "previous" if d.reference_version is None else d.reference_version),
                ("created", fmt_timestamp(d.created_at)),
            ]
        )
    )
    if d.schema:
        t = table("column", "type", title="Schema")
        for c in d.schema:
            t.add_row(text(c["name"]), text(c["type"]))
        out.print(t)
    if d.expectations:
        t = table("expectation", "column", "severity", title="Expectations")
        for e in d.expectations:
            t.add_row(text(e.get("kind", "")), text(e.get("column") or "-"), text(e.get("severity", "")))
        out.print(t)


@datasets_app.command("history")
def history(
    name: Annotated[str, typer.Argument(help="Dataset name.")], json_output: JsonFlag = False
) -> None:
    """List a dataset's versions: rows, event-time range, source, who, validation.

    [bold]Example:[/bold]
      gyre datasets history payments
    """
    from gyre.cli.output import console, fmt_time, print_json, table, text
    from gyre.data import catalog

    with open_stores() as s:
        versions = catalog.list_versions(s.meta, name)
    if json_output:
        print_json([{**v.__dict__, "profile": None} for v in versions])
        return
    t = table("version", "rows", "events from", "to", "source", "by", "warnings", "created")
    for v in versions:
        t.add_row(
            text(v.version),
            text(f"{v.rows:,}"),
            text(fmt_time(v.min_event_time)),
            text(fmt_time(v.max_event_time)),
            text(v.source),
            text(v.actor),
            text(v.validation.get("warnings", 0)),
            text(fmt_time(v.created_at)),
        )
    console().print(t)


@datasets_app.command("head")
def head(
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    version: Annotated[
        int | None, typer.Option("--version", "-v", help="Read this version (time travel).")
    ] = None,
    rows: Annotated[int, typer.Option("--rows", "-n", min=1, max=1000, help="How many rows.")] = 10,
    json_output: JsonFlag = False,
) -> None:
    """Show the first rows of a dataset (optionally at an older version).

    [bold]Example:[/bold]
      gyre datasets head payments -n 5 --version 0
    """
    from gyre.cli.output import console, print_json, table, text

    with open_stores() as s:
        data = s.lake.scan(name, version).head(rows)
    records = data.to_pylist()
    if json_output:
        print_json(records)
        return
    t = table(*data.schema.names)
    for r in records:
        t.add_row(*(text(v) for v in r.values()))
    console().print(t)


@datasets_app.command("vacuum")
def vacuum(
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    older_than: Annotated[
        str,
        typer.Option("--older-than", metavar="DURATION", help="Keep files younger than this (at least 1h)."),
    ] = "1d",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", metavar="", help="List the files; delete nothing.")
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """Delete data files that no version of a dataset refers to.

    Failed or rejected ingests can leave Parquet files behind; every version stays readable
    (time travel is kept). Files younger than --older-than are kept, since an ingest in
    flight writes its files before it commits them.

    [bold]Examples:[/bold]
      gyre datasets vacuum payments --dry-run
      gyre datasets vacuum payments --older-than 7d
    """
    from gyre.cli.output import console, print_json
    from gyre.definitions import parse_duration

    age = parse_duration(older_than, "--older-than")
    with open_stores() as s:
        files = s.lake.vacuum(name, older_than=age, dry_run=dry_run)
    if json_output:
        print_json({"dataset": name, "dry_run": dry_run, "files": files})
        return
    verb = "Would delete" if dry_run else "Deleted"
    console().print(f"{verb} {len(files)} unreferenced file(s) of {name}.")
    for f in files:
        console().print(f"  {f}")


@quarantine_app.command("list")
def list_quarantine(
    dataset: Annotated[str | None, typer.Option("--dataset", "-d", help="Only this dataset.")] = None,
    json_output: JsonFlag = False,
) -> None:
    """List rejected batches, newest first.

    [bold]Example:[/bold]
      gyre quarantine list --dataset payments
    """
    from gyre.cli.output import console, fmt_time, print_json, table, text
    from gyre.data import catalog

    with open_stores() as s:
        records = catalog.list_quarantine(s.meta, dataset)
    if json_output:
        print_json(records)
        return
    t = table("id", "dataset", "rows", "source", "failed checks", "when")
    for q in records:
        checks = ", ".join(sorted({f"{r.get('check')}({r.get('column')})" for r in q.reasons}))
        t.add_row(
            text(q.id),
            text(q.dataset),
            text(f"{q.rows:,}"),
            text(q.source),
            text(checks),
            text(fmt_time(q.created_at)),
        )
    console().print(t if records else "Nothing in quarantine.")


@quarantine_app.command("show")
def show_quarantine(
    quarantine_id: Annotated[str, typer.Argument(help="The id 'gyre quarantine list' shows.")],
    json_output: JsonFlag = False,
) -> None:
    """Show why a batch was rejected, column by column, and where its files were kept.

    [bold]Example:[/bold]
      gyre quarantine show 01J…
    """
    from gyre.cli.output import console, kv_table, print_json, table, text
    from gyre.data import catalog

    with open_stores() as s:
        q = catalog.get_quarantine(s.meta, quarantine_id)
    if json_output:
        print_json(q)
        return
    out = console()
    out.print(
        kv_table(
            [("dataset", q.dataset), ("rows", q.rows), ("source", q.source), ("kept as", q.location or "-")]
        )
    )
    t = table("check", "column", "why", title="Failed checks")
    for r in q.reasons:
        t.add_row(text(r.get("check")), text(r.get("column") or "-"), text(r.get("message", "")))
    out.print(t)


def _print_report(report: ValidationReport) -> None:
    from gyre.cli.output import console, table, text

    failed = [r for r in report.results if not r.passed]
    if not report.results:
        console().print("No expectations yet: this first version proposes them ('gyre datasets show').")
        return
    if not failed:
        console().print(f"All {len(report.results)} checks passed.")
        return
    t = table("severity", "check", "column", "why")
    for r in failed:
        t.add_row(
            text(r.severity, "red" if r.severity == "error" else "yellow"),
            text(r.check),
            text(r.column or "-"),
            text(r.to_dict().get("message", "")),
        )
    console().print(t)
