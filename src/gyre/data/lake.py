"""The lake: one Delta Lake table per dataset under the project's store, written with ``deltalake``.

Layout: dataset ``name`` lives at ``<store>/lake/<name>`` (a local folder or ``s3://bucket/prefix``).
Every :meth:`Lake.append` is one atomic Delta commit, so one dataset version; readers see a version
whole or not at all, and any earlier version stays readable (time travel).

Concurrent writers: appends that race each other are retried by ``deltalake`` against the new head
of the log (appends never conflict logically), so both land with distinct versions. This needs an
atomic "create the commit file only if it does not exist":

* local folders: a hard link / rename-no-replace, which every POSIX filesystem has;
* S3: a conditional ``PUT`` with ``If-None-Match: *``. AWS S3 has had it since August 2024 and
  ``deltalake`` >= 1.0 uses it by default (it removed the DynamoDB lock). An S3-compatible server
  without conditional writes would let two writers both "win" the same version and lose one
  commit; on such a server run a single writer per dataset. ``AWS_S3_ALLOW_UNSAFE_RENAME=true``
  (read by ``deltalake`` from the environment) switches to a check-then-copy that is unsafe under
  concurrency; Gyre never sets it.

S3 settings come from the standard AWS variables (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_REGION`` / ``AWS_DEFAULT_REGION``), as for
the artifact store.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs

from gyre.errors import BackendUnavailable, Conflict, InvalidArgument, NotFound
from gyre.ids import new_id

DATASET_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_COMMIT_FILE = re.compile(r"^\d{20}\.json$")

# Commits that lose a race are retried this often before giving up. deltalake's default (15) is
# low for many concurrent appenders; a retry of an append only re-reads the log, never the data.
MAX_COMMIT_RETRIES = 100

# Every commit Gyre makes carries a unique, time-sortable id in its commitInfo, so a commit can
# be found again (which version did my append get? did a commit interrupted by a crash land?).
COMMIT_ID_KEY = "gyre.commit_id"

# Keys deltalake itself writes into a commit's ``commitInfo``; custom metadata shares that object,
# so these names are refused as custom keys (they would be overwritten or clobber the record).
_COMMIT_INFO_KEYS = frozenset(
    {
        "timestamp",
        "operation",
        "operationParameters",
        "operationMetrics",
        "engineInfo",
        "clientVersion",
        "version",
        "readVersion",
        "isolationLevel",
        "isBlindAppend",
        "userMetadata",
        "userId",
        "userName",
        "inCommitTimestamp",
        "txnId",
        COMMIT_ID_KEY,
    }
)

# Delta has no unsigned integers: deltalake casts uint32 to int32 and fails on large values, so
# unsigned columns are widened to the next signed type (uint64 to int64, checked) before writing.
_WIDEN_UNSIGNED = {
    pa.uint8(): pa.int16(),
    pa.uint16(): pa.int32(),
    pa.uint32(): pa.int64(),
    pa.uint64(): pa.int64(),
}


def check_dataset_name(name: str) -> str:
    """Return ``name`` if it is a valid dataset name, else raise :class:`InvalidArgument`.

    Names are lowercase letters, digits and ``_``, start with a letter, at most 63 characters;
    so a name can never climb out of the lake's folder.
    """
    if not isinstance(name, str) or not DATASET_NAME.match(name):
        raise InvalidArgument(
            f"Invalid dataset name {name!r}: use lowercase letters, digits and _, "
            "starting with a letter (at most 63 characters), e.g. 'payments'."
        )
    return name


# -- S3 settings -----------------------------------------------------------------------------


@dataclass(frozen=True)
class S3Settings:
    """S3 connection settings, read from the standard ``AWS_*`` environment variables."""

    endpoint_url: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None
    region: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> S3Settings:
        env = os.environ if environ is None else environ
        return cls(
            endpoint_url=env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None,
            access_key_id=env.get("AWS_ACCESS_KEY_ID") or None,
            secret_access_key=env.get("AWS_SECRET_ACCESS_KEY") or None,
            session_token=env.get("AWS_SESSION_TOKEN") or None,
            # The AWS SDKs give AWS_REGION precedence over AWS_DEFAULT_REGION.
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
        )

    @property
    def allow_http(self) -> bool:
        return bool(self.endpoint_url and self.endpoint_url.startswith("http://"))

    def delta_storage_options(self) -> dict[str, str]:
        """Storage options for ``deltalake`` (only the settings that are set)."""
        options = {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_SESSION_TOKEN": self.session_token,
            "AWS_REGION": self.region,
        }
        out = {k: v for k, v in options.items() if v}
        if self.allow_http:
            out["AWS_ALLOW_HTTP"] = "true"
        return out

    def pyarrow_filesystem(self) -> pafs.S3FileSystem:
        """A native pyarrow S3 filesystem with these settings."""
        kwargs: dict[str, Any] = {
            "access_key": self.access_key_id,
            "secret_key": self.secret_access_key,
            "session_token": self.session_token,
            # Without a region pyarrow asks AWS where the bucket is, which a custom endpoint
            # cannot answer; us-east-1 is what S3-compatible servers expect by default.
            "region": self.region or ("us-east-1" if self.endpoint_url else None),
        }
        if self.endpoint_url:
            parsed = urlparse(self.endpoint_url)
            kwargs["endpoint_override"] = parsed.netloc or parsed.path
            kwargs["scheme"] = parsed.scheme or "https"
        return pafs.S3FileSystem(**{k: v for k, v in kwargs.items() if v is not None})


# -- schemas ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataFile:
    """One Parquet file of a dataset: the version that added it, when, its path in the table."""

    version: int
    committed_at: datetime
    path: str
    rows: int


@dataclass(frozen=True)
class SchemaDiff:
    """How an incoming schema differs from a table's: columns missing, extra, or of another type."""

    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    retyped: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (table, incoming)

    def __bool__(self) -> bool:
        return bool(self.missing or self.extra or self.retyped)

    def describe(self) -> str:
        parts = []
        if self.missing:
            parts.append("missing columns " + ", ".join(repr(c) for c in self.missing))
        if self.extra:
            parts.append("extra columns " + ", ".join(repr(c) for c in self.extra))
        for name, (want, got) in self.retyped.items():
            parts.append(f"column {name!r} is {got} but the table has {want}")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "missing": list(self.missing),
            "extra": list(self.extra),
            "retyped": {k: {"expected": a, "actual": b} for k, (a, b) in self.retyped.items()},
        }


def _delta_type(arrow_type: pa.DataType) -> str:
    """The Delta type an Arrow type is stored as, for comparing schemas the way the table does."""
    from deltalake import Schema as DeltaSchema

    if pa.types.is_timestamp(arrow_type):
        # deltalake stores every timestamp unit as microseconds; compare on that.
        arrow_type = pa.timestamp("us", arrow_type.tz)
    arrow_type = _WIDEN_UNSIGNED.get(arrow_type, arrow_type)
    try:
        return str(DeltaSchema.from_arrow(pa.schema([("c", arrow_type)])).fields[0].type)
    except Exception:  # a type Delta cannot store: compare on the Arrow name, refuse later
        return f"arrow:{arrow_type}"


def new_table_schema(
    name: str,
    incoming: pa.Schema,
    remedy: str = "Declare the dataset's schema or pass column types when reading the source.",
) -> pa.Schema:
    """The schema a new table of dataset ``name`` gets from data of schema ``incoming``
    (unsigned integers widened); ``remedy`` ends the message about all-null columns.

    Raises:
        InvalidArgument: a column holding only nulls (its type is unknown), or of a type Delta
            cannot store.
    """
    null_cols = [f.name for f in incoming if pa.types.is_null(f.type)]
    if null_cols:
        raise InvalidArgument(
            f"Cannot create dataset {name!r}: column(s) {', '.join(map(repr, null_cols))} "
            f"hold only nulls, so their type is unknown. {remedy}"
        )
    fields = [pa.field(f.name, _WIDEN_UNSIGNED.get(f.type, f.type)) for f in incoming]
    bad = [f"{f.name!r} ({f.type})" for f in fields if _delta_type(f.type).startswith("arrow:")]
    if bad:
        raise InvalidArgument(
            f"Cannot store column(s) {', '.join(bad)} of dataset {name!r} in a Delta table: "
            "cast them to a supported type (integers, floats, decimal, string, binary, "
            "boolean, date, timestamp, list, struct, map)."
        )
    return pa.schema(fields)


def schema_diff(table: pa.Schema, incoming: pa.Schema) -> SchemaDiff:
    """Compare by column name and stored (Delta) type; order and nullability do not matter.

    An incoming all-null column (Arrow type ``null``) matches any type.
    """
    incoming_types = {f.name: f.type for f in incoming}
    table_types = {f.name: f.type for f in table}
    missing = [n for n in table_types if n not in incoming_types]
    extra = [n for n in incoming_types if n not in table_types]
    retyped = {}
    for name, want in table_types.items():
        got = incoming_types.get(name)
        if got is None or pa.types.is_null(got):
            continue
        if _delta_type(want) != _delta_type(got):
            retyped[name] = (str(want), str(got))
    return SchemaDiff(missing, extra, retyped)


# -- the lake --------------------------------------------------------------------------------


class Lake:
    """Delta Lake tables under a store URL (``file:///path`` or ``s3://bucket/prefix``).

    Args:
        store_url: the project's store (``[backends] store``); tables go under ``<store_url>/lake``.
    """

    def __init__(self, store_url: str) -> None:
        scheme, _, rest = store_url.partition("://")
        if scheme not in {"file", "s3"} or not rest:
            raise InvalidArgument(
                f"Unsupported lake store URL {store_url!r}; use file:///path or s3://bucket/prefix."
            )
        self.url = store_url
        self.scheme = scheme
        if scheme == "file":
            # deltalake takes plain paths; a relative one is fixed now so a later chdir cannot move it.
            self.root = os.path.abspath(rest)
            self._options: dict[str, str] = {}
            self._s3: S3Settings | None = None
        else:
            self.root = rest.rstrip("/")
            self._s3 = S3Settings.from_env()
            self._options = self._s3.delta_storage_options()
        self._fs: pafs.FileSystem | None = None
        self._heads = threading.local()

    def __repr__(self) -> str:
        return f"Lake({self.url!r})"

    def _head(self, name: str) -> Any:
        """The table at its latest version, or None if it has none: kept per thread and brought
        up to date incrementally, for writers and position reads that come back every second
        (a push flusher, a stream consumer). Loading a table afresh reads its log from the
        last checkpoint, ~20 ms at a few hundred versions; catching up reads only new commits.
        Per thread because a ``DeltaTable`` is not safe to share between threads, and only for
        the uses here, which never hand the object out."""
        heads: dict[str, Any] = self._heads.__dict__.setdefault("tables", {})
        table = heads.get(name)
        if table is None:
            table = self._open_or_none(name)
            if table is not None:
                heads[name] = table
            return table
        try:
            table.update_incremental()
        except Exception:  # e.g. the table was deleted and made again: load it afresh
            heads.pop(name, None)
            return self._head(name)
        return table

    # -- locations -----------------------------------------------------------------------------

    def table_uri(self, name: str) -> str:
        """Where dataset ``name``'s Delta table lives (a path, or an ``s3://`` URI)."""
        check_dataset_name(name)
        if self.scheme == "file":
            return str(Path(self.root) / "lake" / name)
        return f"s3://{self.root}/lake/{name}"

    def _table_path(self, name: str) -> str:
        """The table's path for the native pyarrow filesystem (``bucket/prefix/...`` on S3)."""
        return self.table_uri(name) if self.scheme == "file" else f"{self.root}/lake/{name}"

    @property
    def filesystem(self) -> pafs.FileSystem:
        """A native pyarrow filesystem for the store (local, or S3 from the AWS_* settings)."""
        if self._fs is None:
            self._fs = pafs.LocalFileSystem() if self._s3 is None else self._s3.pyarrow_filesystem()
        return self._fs

    # -- writing -------------------------------------------------------------------------------

    def exists(self, name: str) -> bool:
        """Whether dataset ``name`` has a table (at least one committed version)."""
        from deltalake import DeltaTable

        uri = self.table_uri(name)
        return self._call(name, lambda: DeltaTable.is_deltatable(uri, storage_options=self._options))

    def append(
        self,
        name: str,
        data: pa.RecordBatchReader | pa.Table,
        *,
        custom_metadata: dict[str, str] | None = None,
        app_transactions: Mapping[str, int] | None = None,
    ) -> int:
        """Append ``data`` as one atomic commit; return the new table version.

        The first append creates the table with ``data``'s schema. Later appends must have the
        same columns (any order) with the same stored types; otherwise :class:`InvalidArgument`
        names the missing, extra and retyped columns and nothing is written. Batches are streamed
        to Parquet files, so a reader larger than memory appends in bounded memory. If the reader
        raises, its exception propagates and nothing is committed.

        Args:
            name: the dataset.
            data: the rows; a reader is consumed once.
            custom_metadata: string pairs recorded in the commit (see :meth:`history`).
            app_transactions: ``{app_id: version}`` recorded atomically with the data, so a
                stream consumer can store its position in the same commit (see
                :meth:`transaction_version`).

        Raises:
            InvalidArgument: bad name, no rows, schema mismatch, or a type Delta cannot store.
            Conflict: the commit lost the race against other writers too many times.
            BackendUnavailable: the store cannot be reached.
        """
        from deltalake import Transaction

        check_dataset_name(name)
        if not isinstance(data, pa.Table | pa.RecordBatchReader):
            raise InvalidArgument(
                f"Cannot append a {type(data).__name__}: pass a pyarrow Table or RecordBatchReader."
            )
        metadata = _check_custom_metadata(custom_metadata)
        txns = []
        for app_id, app_version in (app_transactions or {}).items():
            if not isinstance(app_id, str) or not app_id or type(app_version) is not int:
                raise InvalidArgument(
                    f"app_transactions must map app ids to integer versions, got {app_transactions!r}."
                )
            txns.append(Transaction(app_id, app_version))

        # A Table can be written again, so a commit that lost a race deltalake does not retry
        # (see _append_once) is retried here; a reader was consumed, so its caller must retry.
        attempts = 3 if isinstance(data, pa.Table) else 1
        for attempt in range(attempts):
            try:
                return self._append_once(name, data, metadata, txns)
            except Conflict:
                if attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _append_once(
        self, name: str, data: pa.RecordBatchReader | pa.Table, metadata: dict[str, str], txns: list[Any]
    ) -> int:
        table = self._head(name)
        if table is not None:
            return self._write(name, table, data, metadata, txns)
        # Creating the table. Two first appends racing each other cannot both commit version 0,
        # and deltalake cannot always rebase the loser (its commit carries the table's metadata;
        # it may also make appends racing with it fail on "metadata changed"). Threads of one
        # process take turns here; a race with another process ends in Conflict for the loser,
        # with nothing committed.
        with _creation_lock(self.table_uri(name)):
            table = self._open_or_none(name)
            try:
                return self._write(name, table, data, metadata, txns)
            except Conflict:
                if table is None and self._open_or_none(name) is not None:
                    raise Conflict(
                        f"Dataset {name!r} was created by another writer while this first append "
                        "was running; nothing from this append was committed. Retry it: it will "
                        "append to the new table."
                    ) from None
                raise

    def _write(
        self,
        name: str,
        table: Any,
        data: pa.RecordBatchReader | pa.Table,
        metadata: dict[str, str],
        txns: list[Any],
    ) -> int:
        """One write_deltalake call: append to ``table``, or create the table when it is None."""
        from deltalake import CommitProperties, PostCommitHookProperties
        from deltalake import write_deltalake as write

        uri = self.table_uri(name)
        target = self._target_schema(name, table, data.schema)
        captured: list[BaseException] = []
        reader = _conformed(data, target, captured)
        if reader is None:
            raise InvalidArgument(f"Nothing to append to dataset {name!r}: the data has no rows.")

        commit_id = new_id()
        properties = CommitProperties(
            custom_metadata={**metadata, COMMIT_ID_KEY: commit_id},
            app_transactions=txns or None,
            max_commit_retries=MAX_COMMIT_RETRIES,
        )
        # Keep every log entry: versions are pinned by training runs and must stay reachable by
        # time travel, so expired-log cleanup (30 days by default) is off. Checkpoints still happen.
        hooks = PostCommitHookProperties(create_checkpoint=True, cleanup_expired_logs=False)
        try:
            write(
                # Writing through a DeltaTable object leaves it at the version this write
                # committed, even after retries against other writers; re-reading the head
                # afterwards could return someone else's version.
                table if table is not None else uri,
                reader,
                mode="append",
                name=name if table is None else None,
                storage_options=(self._options or None) if table is None else None,
                commit_properties=properties,
                post_commithook_properties=hooks,
            )
        except Exception as exc:
            if captured:  # the source failed: its own (actionable) error, not deltalake's wrapper
                raise captured[0] from None
            raise _translate(exc, name, uri) from exc
        if table is not None:
            version = table.version()
            assert version is not None
            return int(version)
        # This call created the table: find our commit, oldest first (it is almost always 0).
        for version in self._log_versions(name):
            commit, _ = self._commit_actions(name, version)
            if commit.get(COMMIT_ID_KEY) == commit_id:
                return version
        raise BackendUnavailable(  # pragma: no cover - the commit succeeded, so it is in the log
            f"Dataset {name!r}: commit {commit_id} succeeded but is not in the table's log."
        )

    def _target_schema(self, name: str, table: Any, incoming: pa.Schema) -> pa.Schema:
        """The schema batches are cast to before writing: the table's column order, unsigned
        integers widened, all-null columns given the table's type."""
        if table is None:
            return new_table_schema(name, incoming)
        current = self._arrow_schema(table)
        diff = schema_diff(current, incoming)
        if diff:
            raise InvalidArgument(
                f"The data does not match dataset {name!r}: {diff.describe()}. Nothing was written. "
                f"The dataset's columns are: {', '.join(f'{f.name} {f.type}' for f in current)}."
            )
        by_name = {f.name: f.type for f in incoming}
        fields = []
        for f in current:
            got = by_name[f.name]
            if pa.types.is_null(got):
                got = f.type
            fields.append(pa.field(f.name, _WIDEN_UNSIGNED.get(got, got)))
        return pa.schema(fields)

    # -- reading -------------------------------------------------------------------------------

    def version(self, name: str) -> int:
        """The latest committed version of dataset ``name`` (the first is 0)."""
        # The log's file names say it without loading the table's state (every file's stats).
        return self._log_versions(name)[-1]

    def transaction_version(self, name: str, app_id: str) -> int | None:
        """The last ``app_transaction`` version committed by ``app_id`` to ``name``, or ``None``.

        A stream consumer commits its position with each append and resumes from here.
        """
        table = self._head(name)
        if table is None:
            return None
        return self._call(name, lambda: table.transaction_version(app_id))

    def history(self, name: str, limit: int | None = None) -> list[dict[str, Any]]:
        """The commits of ``name``, newest first (the latest ``limit`` if given).

        Each entry: ``version``, ``timestamp`` (UTC datetime), ``operation`` (e.g. ``"WRITE"``),
        ``commit_id`` (unique per commit Gyre made), ``metadata`` (the custom metadata given to
        :meth:`append`) and ``metrics`` (deltalake's operation metrics, e.g. ``num_added_rows``).
        """
        # Read from the log files, not DeltaTable.history(): that numbers commits by counting
        # down from the version it loaded, so a commit landing meanwhile shifts every number
        # (it returned version -1 under concurrent appends).
        versions = self._log_versions(name)
        chosen = versions[::-1][:limit] if limit is not None else versions[::-1]
        if len(chosen) <= 2:
            return [_history_entry(self._commit_actions(name, v)[0]) for v in chosen]
        with ThreadPoolExecutor(max_workers=8) as pool:  # one GET per commit on S3
            actions = list(pool.map(lambda v: self._commit_actions(name, v)[0], chosen))
        return [_history_entry(a) for a in actions]

    def commit_info(self, name: str, version: int) -> dict[str, Any]:
        """What one commit did: ``rows`` and ``bytes`` added, ``files``, ``app_transactions``,
        plus the fields of a :meth:`history` entry. Reads that version's log file only."""
        commit, actions = self._commit_actions(name, version)
        info: dict[str, Any] = {"rows": 0, "bytes": 0, "files": 0, "app_transactions": {}}
        for action in actions:
            if "add" in action:
                add = action["add"]
                info["files"] += 1
                info["bytes"] += int(add.get("size") or 0)
                stats = json.loads(add["stats"]) if add.get("stats") else {}
                info["rows"] += int(stats.get("numRecords") or 0)
            elif "txn" in action:
                info["app_transactions"][action["txn"]["appId"]] = int(action["txn"]["version"])
        return {**_history_entry(commit), **info}

    def data_files(self, name: str, *, since: int | None = None, upto: int | None = None) -> list[DataFile]:
        """The Parquet files of version ``upto`` (default: the latest) added after ``since``.

        In commit order, each with the version that added it and that commit's time: what an
        incremental reader needs (rows of versions ``since+1 .. upto``), and what tells when
        each row became known (point-in-time reads "as known at" a time). Reads the log files
        of those versions only; open the files with :meth:`open_files`.
        """
        versions = [v for v in self._log_versions(name) if (since is None or v > since)]
        if upto is not None:
            if upto not in versions and (since is None or upto > since):
                self._commit_actions(name, upto)  # NotFound naming the latest version
            versions = [v for v in versions if v <= upto]
        if not versions:
            return []
        live = {
            uri.rsplit("/", 1)[-1]
            for uri in self._call(name, lambda: self._open(name, versions[-1]).file_uris())
        }
        out: list[DataFile] = []
        for v in versions:
            commit, actions = self._commit_actions(name, v)
            ts = commit.get("timestamp")
            when = (
                datetime.fromtimestamp(ts / 1000, UTC) if ts is not None else datetime.fromtimestamp(0, UTC)
            )
            for action in actions:
                add = action.get("add")
                if add and add["path"].rsplit("/", 1)[-1] in live:
                    stats = json.loads(add["stats"]) if add.get("stats") else {}
                    out.append(DataFile(v, when, add["path"], int(stats.get("numRecords") or 0)))
        return out

    def open_files(self, name: str, files: list[DataFile]) -> pads.Dataset:
        """A lazy pyarrow dataset over ``files`` (from :meth:`data_files`), in their order."""
        fs = pafs.SubTreeFileSystem(self._table_path(name), self.filesystem)
        schema = self.schema(name, max(f.version for f in files)) if files else None
        return pads.dataset([f.path for f in files], schema=schema, format="parquet", filesystem=fs)

    def vacuum(
        self, name: str, *, older_than: timedelta = timedelta(days=1), dry_run: bool = False
    ) -> list[str]:
        """Delete data files no version of ``name`` refers to (left by failed or rejected appends).

        Files any version refers to are kept, so time travel to every version still works;
        the log is not touched (no new version). Files younger than ``older_than`` are kept
        too: an append in flight writes its files before it commits them. Returns the paths
        deleted (or that would be, with ``dry_run``), relative to the table.
        """
        if older_than < timedelta(hours=1):
            raise InvalidArgument(
                f"older_than={older_than} is too short: an append in flight could lose its files. "
                "Use at least 1 hour."
            )
        versions = self._log_versions(name)
        referenced: set[str] = set()
        with ThreadPoolExecutor(max_workers=8) as pool:  # one GET per commit on S3
            for _, actions in pool.map(lambda v: self._commit_actions(name, v), versions):
                referenced.update(a["add"]["path"] for a in actions if "add" in a)
        root = self._table_path(name)
        try:
            infos = self.filesystem.get_file_info(pafs.FileSelector(root, recursive=True))
        except OSError as exc:
            raise self._unavailable(exc) from exc
        cutoff = datetime.now(UTC) - older_than
        orphans = []
        for info in infos:
            rel = info.path[len(root) :].lstrip("/")
            if (
                info.type == pafs.FileType.File
                and rel.endswith(".parquet")
                and not rel.startswith("_delta_log/")
                and rel not in referenced
                and info.mtime is not None
                and info.mtime.replace(tzinfo=info.mtime.tzinfo or UTC) < cutoff
            ):
                orphans.append(rel)
        if not dry_run:
            for rel in orphans:
                try:
                    self.filesystem.delete_file(f"{root}/{rel}")
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    raise self._unavailable(exc) from exc
        return sorted(orphans)

    def _log_versions(self, name: str) -> list[int]:
        """The committed versions, from the names of the table's log files, ascending."""
        log = f"{self._table_path(name)}/_delta_log"
        try:
            infos = self.filesystem.get_file_info(pafs.FileSelector(log, allow_not_found=True))
        except OSError as exc:
            raise self._unavailable(exc) from exc
        versions = sorted(int(i.base_name[:20]) for i in infos if _COMMIT_FILE.match(i.base_name))
        if not versions:
            check_dataset_name(name)
            raise NotFound(
                f"Dataset {name!r} has no data in the lake at {self.table_uri(name)}: ingest some "
                "first (gyre ingest DATASET PATH)."
            )
        return versions

    def _commit_actions(self, name: str, version: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """A commit's ``commitInfo`` (with its ``version``) and all its actions."""
        path = f"{self._table_path(name)}/_delta_log/{version:020d}.json"
        try:
            with self.filesystem.open_input_stream(path) as f:
                actions = [json.loads(line) for line in f.read().decode().splitlines() if line.strip()]
        except FileNotFoundError:
            latest = self._log_versions(name)[-1]  # NotFound for a missing dataset
            raise NotFound(f"Dataset {name!r} has no version {version}; its latest is {latest}.") from None
        except OSError as exc:
            raise self._unavailable(exc) from exc
        commit: dict[str, Any] = next((a["commitInfo"] for a in actions if "commitInfo" in a), {})
        return {**commit, "version": version}, actions

    def add_columns(self, name: str, fields: list[pa.Field]) -> int:
        """Add nullable ``fields`` to the table's schema (older rows read them as null); one
        commit, the new version. For datasets whose writer gained columns, e.g. the
        prediction log; a column that exists already is an error."""
        from deltalake import Schema as DeltaSchema

        table = self._open(name)
        present = set(self._arrow_schema(table).names)
        clash = [f.name for f in fields if f.name in present]
        if clash:
            raise InvalidArgument(f"Dataset {name!r} already has column(s) {', '.join(clash)}.")
        delta = DeltaSchema.from_arrow(pa.schema([f.with_nullable(True) for f in fields])).fields
        self._call(name, lambda: table.alter.add_columns(list(delta)))
        return int(self._open(name).version())

    def schema(self, name: str, version: int | None = None) -> pa.Schema:
        """The Arrow schema of ``name`` (at ``version``, or the latest)."""
        return self._arrow_schema(self._open(name, version))

    def scan(self, name: str, version: int | None = None, *, as_of: datetime | None = None) -> pads.Dataset:
        """A lazy pyarrow dataset over one version, for streaming reads and DuckDB.

        DuckDB queries it directly: ``duckdb.sql("select count(*) from ds")`` with ``ds`` in scope.
        """
        table = self._open(name, self._resolve_version(name, version, as_of))
        # The native filesystem, not deltalake's default Python-backed one: reading through the
        # latter can abort the interpreter at exit ("terminate called without an active
        # exception", delta-io/delta-rs#2184), and native reads do not take the GIL.
        fs = pafs.SubTreeFileSystem(self._table_path(name), self.filesystem)
        return self._call(name, lambda: table.to_pyarrow_dataset(filesystem=fs))

    def read(
        self,
        name: str,
        *,
        version: int | None = None,
        as_of: datetime | None = None,
        columns: list[str] | None = None,
        filter: pc.Expression | None = None,
    ) -> pa.Table:
        """Read ``name`` into memory, as it was at ``version`` or at time ``as_of``.

        Args:
            version: a committed version; the latest if neither this nor ``as_of`` is given.
            as_of: the latest version committed at or before this time (a naive datetime is
                taken as UTC); earlier than the first commit is :class:`NotFound`.
            columns: the columns to read, in this order.
            filter: a row filter, e.g. ``pc.field("amount") > 100``; files whose statistics
                exclude it are skipped.
        """
        ds = self.scan(name, version, as_of=as_of)
        if columns is not None:
            unknown = [c for c in columns if c not in ds.schema.names]
            if unknown:
                raise InvalidArgument(
                    f"Dataset {name!r} has no column(s) {', '.join(map(repr, unknown))}; "
                    f"its columns are {', '.join(ds.schema.names)}."
                )
        try:
            return ds.to_table(columns=columns, filter=filter)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            raise InvalidArgument(f"Cannot read dataset {name!r} with that filter: {exc}") from None
        except OSError as exc:
            raise self._unavailable(exc) from exc

    # -- internals -----------------------------------------------------------------------------

    def _resolve_version(self, name: str, version: int | None, as_of: datetime | None) -> int | None:
        if version is not None and as_of is not None:
            raise InvalidArgument("Pass either version or as_of, not both.")
        if as_of is None:
            return version
        when = as_of if as_of.tzinfo else as_of.replace(tzinfo=UTC)
        # Resolved from the commits' own timestamps (those history() shows), not deltalake's
        # load_as_version(datetime): that one uses the log files' modification times (second
        # precision on some S3 servers) and silently returns version 0 for a time before the
        # table existed. Binary search, as Delta does: commit times increase with versions.
        versions = self._log_versions(name)

        def committed(v: int) -> datetime:
            ts = self._commit_actions(name, v)[0].get("timestamp") or 0
            return datetime.fromtimestamp(ts / 1000, UTC)

        lo, hi, found = 0, len(versions) - 1, None
        while lo <= hi:
            mid = (lo + hi) // 2
            if committed(versions[mid]) <= when:
                found, lo = versions[mid], mid + 1
            else:
                hi = mid - 1
        if found is None:
            raise NotFound(
                f"Dataset {name!r} has no version at or before {when.isoformat()}; its first version "
                f"was committed at {committed(versions[0]).isoformat()}."
            )
        return found

    def _open(self, name: str, version: int | None = None) -> Any:
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError

        uri = self.table_uri(name)
        try:
            table = DeltaTable(uri, storage_options=self._options or None)
        except TableNotFoundError:
            raise NotFound(
                f"Dataset {name!r} has no data in the lake at {uri}: ingest some first "
                "(gyre ingest DATASET PATH)."
            ) from None
        except Exception as exc:
            raise _translate(exc, name, uri) from exc
        if version is not None:
            latest = table.version()
            if not isinstance(version, int) or version < 0 or latest is None or version > latest:
                raise NotFound(f"Dataset {name!r} has no version {version!r}; its latest is {latest}.")
            if version != latest:
                self._call(name, lambda: table.load_as_version(version))
        return table

    def _open_or_none(self, name: str) -> Any:
        try:
            table = self._open(name)
        except NotFound:
            return None
        version = table.version()
        return table if version is not None and version >= 0 else None

    @staticmethod
    def _arrow_schema(table: Any) -> pa.Schema:
        # deltalake returns an arro3 schema; pyarrow takes it through the Arrow C interface.
        return pa.schema(table.schema().to_arrow())

    def _call(self, name: str, fn: Any) -> Any:
        try:
            return fn()
        except (NotFound, InvalidArgument):
            raise
        except Exception as exc:
            raise _translate(exc, name, self.table_uri(name)) from exc

    def _unavailable(self, exc: BaseException) -> BackendUnavailable:
        return BackendUnavailable(
            f"Cannot reach the lake at {self.url}: {exc}. Check [backends] store and the AWS_* "
            "credentials and endpoint."
        )


_CREATION_LOCKS: dict[str, threading.Lock] = {}
_CREATION_LOCKS_GUARD = threading.Lock()


def _creation_lock(uri: str) -> threading.Lock:
    with _CREATION_LOCKS_GUARD:
        return _CREATION_LOCKS.setdefault(uri, threading.Lock())


def _check_custom_metadata(metadata: dict[str, str] | None) -> dict[str, str]:
    if not metadata:
        return {}
    out = {}
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidArgument(
                f"Custom commit metadata must map strings to strings; got {key!r}: {value!r}."
            )
        if key in _COMMIT_INFO_KEYS:
            raise InvalidArgument(
                f"Custom commit metadata key {key!r} is reserved for the commit record; use another "
                "name, e.g. 'source' or 'gyre.actor'."
            )
        out[key] = value
    return out


def _conformed(
    data: pa.RecordBatchReader | pa.Table, target: pa.Schema, captured: list[BaseException]
) -> pa.RecordBatchReader | None:
    """A reader of ``data`` cast to ``target``, or ``None`` when ``data`` has no rows.

    Exceptions raised by the source are recorded in ``captured``: deltalake reports them as a
    generic DeltaError, and the caller re-raises the original.
    """
    if isinstance(data, pa.Table):
        if data.num_rows == 0:
            return None
        batches: Iterator[pa.RecordBatch] = iter(data.to_batches())
    else:
        batches = iter(data)
    # Look for the first non-empty batch now: an empty source must not become an empty commit.
    first = None
    for batch in batches:
        if batch.num_rows:
            first = batch
            break
    if first is None:
        return None

    def cast(batch: pa.RecordBatch) -> pa.RecordBatch:
        batch = batch.select(target.names)
        if batch.schema.equals(target):
            return batch
        try:
            return batch.cast(target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise InvalidArgument(f"Cannot convert the data to the dataset's types: {exc}") from None

    def stream() -> Iterator[pa.RecordBatch]:
        try:
            yield cast(first)
            for batch in batches:
                if batch.num_rows:
                    yield cast(batch)
        except BaseException as exc:
            captured.append(exc)
            raise

    return pa.RecordBatchReader.from_batches(target, stream())


def _history_entry(raw: dict[str, Any]) -> dict[str, Any]:
    ts = raw.get("timestamp")
    return {
        "version": int(raw["version"]),
        "timestamp": datetime.fromtimestamp(ts / 1000, UTC) if ts is not None else None,
        "operation": raw.get("operation"),
        "commit_id": raw.get(COMMIT_ID_KEY),
        "metadata": {k: v for k, v in raw.items() if k not in _COMMIT_INFO_KEYS},
        "metrics": dict(raw.get("operationMetrics") or {}),
    }


def _translate(exc: BaseException, name: str, uri: str) -> Exception:
    """deltalake's errors as Gyre's, with what to do about them."""
    from deltalake.exceptions import CommitFailedError, SchemaMismatchError, TableNotFoundError

    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, TableNotFoundError):
        return NotFound(f"Dataset {name!r} has no data in the lake at {uri}.")
    if isinstance(exc, SchemaMismatchError):
        return InvalidArgument(f"The data does not match dataset {name!r}: {text}. Nothing was written.")
    if isinstance(exc, CommitFailedError):
        return Conflict(
            f"Could not commit to dataset {name!r}: other writers kept winning the race "
            f"({text}). Nothing was written; retry."
        )
    if "failed validation check" in text:
        return InvalidArgument(
            f"The data breaks a constraint of dataset {name!r} (e.g. nulls in a non-nullable "
            f"column): {text}. Nothing was written."
        )
    if "Cast error" in text or "Schema error" in text:
        return InvalidArgument(f"Cannot store the data in dataset {name!r}: {text}. Nothing was written.")
    return BackendUnavailable(
        f"The lake at {uri} failed: {text}. Check [backends] store and the AWS_* credentials and endpoint."
    )
