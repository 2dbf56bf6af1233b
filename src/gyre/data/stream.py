"""Stream ingest: records from a NATS JetStream subject into a dataset, each committed once.

JetStream delivers at least once; the lake receives each message exactly once. Messages are
pulled by a durable consumer (explicit acks) and collected into groups; each group becomes one
Delta commit that carries, atomically with its rows, the highest *stream sequence* it covers as
the Delta app transaction ``gyre-nats:<stream>:<durable>``. Messages are acknowledged only after
their group is committed. So:

- a crash before a commit loses nothing: the messages were not acknowledged, and the next run
  starts from the committed position again;
- a crash after a commit and before the acks commits nothing twice: a redelivered message whose
  stream sequence is at or below the committed position is acknowledged without being written.

The committed position in the lake, not the consumer's ack state, is the source of truth: when
a run starts (or finds deliveries it never received, e.g. lost in a reconnect) while the durable
consumer still has unacknowledged messages, it recreates the consumer to start right after the
committed position (or the consumer's ack floor, if higher: only committed messages and
dropped duplicates are ever acknowledged). Without that, new messages would be delivered and
committed before the stale ones were redelivered, and the stale ones would then be skipped as
already committed. One consumer per durable name at a time: two processes sharing one would
reset each other.

Which duplicates are guaranteed to be dropped:

- a redelivered message (after a crash, a lost ack or an ack timeout): always, by its stream
  sequence, as above;
- a record a producer published twice, by its record id (the dataset's key, or ``id_field``):
  within a group, always (the first copy is kept);
  across groups, when the earlier copy was committed by the same run within the last
  ``dedupe_window`` distinct ids (a bounded in-memory window; a new run starts it empty, and
  records already in the lake from earlier runs or other sources are not looked up);
- a producer that sets the ``Nats-Msg-Id`` header is deduplicated by JetStream itself within
  the stream's duplicate window (two minutes by default): the copy is never stored or delivered.

A message that is not a JSON object, lacks its id, or does not fit the dataset's schema stops
the consumer before its group is committed: nothing from that group is committed and none of its
messages is acknowledged, so the next run meets the same message again until it is removed from
the stream or the dataset is changed to accept it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import pyarrow as pa

from gyre.data import catalog
from gyre.data.lake import Lake, check_dataset_name
from gyre.data.records import DatasetRules, record_commit
from gyre.errors import BackendUnavailable, ConfigError, Conflict, InvalidArgument, NotFound
from gyre.meta import MetaStore

if TYPE_CHECKING:
    from nats.aio.client import Client as NatsClient
    from nats.aio.msg import Msg
    from nats.js import JetStreamContext

log = logging.getLogger(__name__)

DEFAULT_PORT = 4222
DEDUPE_WINDOW = 100_000
INSTALL_HINT = "Stream ingest from NATS needs `pip install 'gyre-ml[nats]'`."
# Fetches wait at most this long, so a stop request is noticed within about a second.
POLL_S = 1.0
API_TIMEOUT_S = 10.0
# Re-reading after missed deliveries this many times in a row means something else is wrong.
MAX_RESYNCS = 3

# A subject: dot-separated tokens; '*' matches one token, a final '>' the rest.
_SUBJECT = re.compile(r"^(?:(?:[^\s.*>]+|\*)\.)*(?:[^\s.*>]+|\*|>)$")
_STREAM_NAME = re.compile(r"^[A-Za-z0-9_-]{1,255}$")


# -- addresses -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class NatsAddress:
    """Where to consume from: a server URL (credentials included, to connect) and a subject."""

    server: str
    subject: str
    display: str  # the server without credentials, for messages and the catalog

    @property
    def source(self) -> str:
        """``nats://host:port/subject``, as dataset versions record their source."""
        return f"{self.display}/{self.subject}"


def parse_nats_url(url: str, *, subject: str | None = None) -> NatsAddress:
    """Parse ``nats://[user:pass@]host[:port]/SUBJECT`` (``tls://`` too; port 4222 by default).

    ``subject``, when given, is used if the URL names none, and must match it if the URL does.

    Raises:
        InvalidArgument: not a nats:// URL, no host, no subject, or an invalid subject.
    """
    example = "nats://127.0.0.1:4222/payments"
    if not isinstance(url, str) or "://" not in url:
        raise InvalidArgument(f"Not a NATS URL: {url!r}; use nats://HOST:PORT/SUBJECT, e.g. {example}.")
    parts = urlsplit(url)
    if parts.scheme not in {"nats", "tls"}:
        raise InvalidArgument(
            f"Unsupported stream URL {url!r}: use nats://HOST:PORT/SUBJECT (or tls://), e.g. {example}."
        )
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise InvalidArgument(f"Invalid port in {url!r}; e.g. {example}.") from None
    if not parts.hostname:
        raise InvalidArgument(f"No host in {url!r}; use nats://HOST:PORT/SUBJECT, e.g. {example}.")
    if parts.query or parts.fragment:
        raise InvalidArgument(f"Unexpected ?query or #fragment in {url!r}; use nats://HOST:PORT/SUBJECT.")
    in_url = unquote(parts.path.lstrip("/"))
    if in_url and subject and in_url != subject:
        raise InvalidArgument(f"{url!r} names subject {in_url!r}, but subject {subject!r} was given.")
    chosen = in_url or subject
    if not chosen:
        raise InvalidArgument(
            f"{url!r} names no subject: add it as the path, nats://HOST:PORT/SUBJECT, e.g. {example}."
        )
    if not _SUBJECT.match(chosen):
        raise InvalidArgument(
            f"Invalid NATS subject {chosen!r} for {url!r}: dot-separated tokens without spaces, '*' for one "
            "token or a final '>' for the rest, e.g. 'payments' or 'payments.eu.*'."
        )
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    display = f"{parts.scheme}://{host}:{port}"
    netloc = parts.netloc.rpartition("@")[0]
    server = f"{parts.scheme}://{netloc + '@' if netloc else ''}{host}:{port}"
    return NatsAddress(server=server, subject=chosen, display=display)


# -- deduplication -------------------------------------------------------------------------------


class RecentIds:
    """The last ``maxlen`` distinct record ids seen, forgetting the oldest first.

    Adding an id that is already present refreshes it (it becomes the newest).
    """

    def __init__(self, maxlen: int = DEDUPE_WINDOW) -> None:
        if maxlen < 0:
            raise InvalidArgument(f"The dedupe window must be 0 or more ids, got {maxlen}.")
        self.maxlen = maxlen
        self._ids: OrderedDict[Hashable, None] = OrderedDict()

    def __contains__(self, key: object) -> bool:
        return key in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, key: Hashable) -> None:
        if self.maxlen == 0:
            return
        if key in self._ids:
            self._ids.move_to_end(key)
            return
        self._ids[key] = None
        if len(self._ids) > self.maxlen:
            self._ids.popitem(last=False)


def record_id(record: dict[str, Any], id_field: str) -> Hashable:
    """The dedupe key of ``record``: its ``id_field`` value (a string or a number).

    Raises:
        InvalidArgument: the field is missing, null, or not a string or number.
    """
    value = record.get(id_field)
    if value is None:
        raise InvalidArgument(f"has no '{id_field}' (the record id used to drop duplicates)")
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InvalidArgument(
            f"has a {type(value).__name__} as '{id_field}'; a record id is a string or number"
        )
    return value


# -- the consumer --------------------------------------------------------------------------------


@dataclass
class StreamResult:
    """What a consumer run did.

    ``records_read`` counts new messages (not redeliveries of committed ones, which are
    ``already_committed``). ``last_seq`` is the highest stream sequence handled when the run
    ended: committed, or acknowledged as a duplicate of a committed record (a group of duplicates
    only makes no commit, so the lake's position may be lower).
    """

    dataset: str
    source: str
    stream: str = ""
    durable: str = ""
    stream_created: bool = False
    records_read: int = 0
    duplicates_dropped: int = 0
    already_committed: int = 0
    rows_committed: int = 0
    versions: list[int] = field(default_factory=list)
    last_seq: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def consume_nats(
    meta: MetaStore,
    lake: Lake,
    dataset: str,
    url: str,
    *,
    subject: str | None = None,
    stream: str | None = None,
    durable: str | None = None,
    id_field: str | None = None,
    event_time: str | None = None,
    batch: int = 1000,
    max_wait_s: float = 1.0,
    follow: bool = False,
    dedupe_window: int = DEDUPE_WINDOW,
    connect_timeout_s: float = 5.0,
    on_rows: Callable[[int], None] | None = None,
    stop: threading.Event | None = None,
) -> StreamResult:
    """Consume a JetStream subject into ``dataset``, one Delta commit per group of messages.

    Each message is one JSON object, a record of the dataset. See the module docstring for the
    delivery and deduplication guarantees. Runs an asyncio loop of its own, so call it from
    synchronous code (or a worker thread), not from a running event loop.

    Args:
        meta, lake: the project's metadata store and lake.
        dataset: the dataset; created (with key ``id_field``) if new.
        url: the server, ``nats://host:port``; may carry the subject as its path.
        subject: the subject to consume (if ``url`` has no path).
        stream: the JetStream stream holding the subject; by default the stream that captures
            it, or a new stream ``GYRE_<DATASET>`` bound to it (which keeps messages published
            from then on). A named stream that does not exist is created for the subject.
        durable: the durable consumer's name (default ``gyre-<dataset>``): the position is kept
            per stream and durable name.
        id_field: the record id to deduplicate on; default the dataset's single key column.
        event_time: the event-time column of a new dataset.
        batch: commit a group once it holds this many messages.
        max_wait_s: commit a group at most this long after its first message arrived.
        follow: keep consuming until ``stop`` is set; otherwise stop once the consumer has no
            more pending messages.
        dedupe_window: how many committed record ids to remember for cross-group deduplication.
        connect_timeout_s: give up connecting to the server after this long.
        on_rows: called with the row count of each commit.
        stop: set it to stop after committing the current group.

    Returns:
        The run's counts and the versions it created.

    Raises:
        InvalidArgument: a bad URL or option; a message that is not a JSON object, lacks its id
            or does not fit the dataset (the message names its stream sequence; its group is
            neither committed nor acknowledged).
        ConfigError: nats-py is not installed.
        BackendUnavailable: the server cannot be reached, or JetStream is not enabled on it.
    """
    check_dataset_name(dataset)
    address = parse_nats_url(url, subject=subject)
    if not isinstance(batch, int) or batch < 1:
        raise InvalidArgument(f"batch must be a positive number of messages, got {batch!r}.")
    if not max_wait_s > 0:
        raise InvalidArgument(f"max_wait_s must be a positive number of seconds, got {max_wait_s!r}.")
    if stream is not None and not _STREAM_NAME.match(stream):
        raise InvalidArgument(f"Invalid stream name {stream!r}: use letters, digits, _ and -.")
    durable = durable or f"gyre-{dataset}"
    if not _STREAM_NAME.match(durable):
        raise InvalidArgument(f"Invalid durable consumer name {durable!r}: use letters, digits, _ and -.")
    try:
        import nats  # noqa: F401
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    key, new = _resolve_id_field(meta, dataset, id_field)
    consumer = _Consumer(
        meta,
        lake,
        dataset,
        address,
        stream=stream,
        durable=durable,
        id_field=key,
        new_dataset=new,
        event_time=event_time,
        batch=batch,
        max_wait_s=float(max_wait_s),
        follow=follow,
        window=RecentIds(dedupe_window),
        connect_timeout_s=connect_timeout_s,
        on_rows=on_rows,
        stop=stop,
    )
    return asyncio.run(consumer.run())


def _resolve_id_field(meta: MetaStore, dataset: str, id_field: str | None) -> tuple[str, bool]:
    """The dedupe field, and whether the dataset is new to the catalog."""
    try:
        info = catalog.get_dataset(meta, dataset)
    except NotFound:
        if not id_field:
            raise InvalidArgument(
                f"Dataset '{dataset}' is new: name the field that identifies a record with "
                "--id-field FIELD (id_field=); it becomes the dataset's key."
            ) from None
        return id_field, True
    if id_field:
        columns = [c["name"] for c in info.schema or []]
        if columns and id_field not in columns:
            raise InvalidArgument(
                f"Dataset '{dataset}' has no field '{id_field}'; its fields: {', '.join(columns)}."
            )
        return id_field, False
    if len(info.keys) != 1:
        has = f"keys {', '.join(info.keys)}" if info.keys else "no key"
        raise InvalidArgument(
            f"Dataset '{dataset}' has {has}; name the field that identifies a record with "
            "--id-field FIELD (id_field=)."
        )
    return info.keys[0], False


@dataclass
class _Group:
    """Messages received since the last commit, in arrival order."""

    msgs: list[Msg] = field(default_factory=list)
    seqs: set[int] = field(default_factory=set)
    records: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    ids: set[Hashable] = field(default_factory=set)
    duplicates: int = 0
    deadline: float = 0.0

    def __len__(self) -> int:
        return len(self.msgs)


class _Consumer:
    def __init__(
        self,
        meta: MetaStore,
        lake: Lake,
        dataset: str,
        address: NatsAddress,
        *,
        stream: str | None,
        durable: str,
        id_field: str,
        new_dataset: bool,
        event_time: str | None,
        batch: int,
        max_wait_s: float,
        follow: bool,
        window: RecentIds,
        connect_timeout_s: float,
        on_rows: Callable[[int], None] | None,
        stop: threading.Event | None,
    ) -> None:
        self.meta, self.lake, self.dataset, self.address = meta, lake, dataset, address
        self.stream, self.durable, self.id_field = stream or "", durable, id_field
        self.new_dataset, self.event_time = new_dataset, event_time
        self.batch, self.max_wait_s, self.follow = batch, max_wait_s, follow
        self.window, self.connect_timeout_s = window, connect_timeout_s
        self.on_rows, self.stop = on_rows, stop
        self.result = StreamResult(dataset, address.source, durable=durable)
        self.position = 0  # the highest stream sequence committed to the lake
        self.rules = DatasetRules(self.dataset, None)
        self._errors: list[BaseException] = []

    @property
    def app_id(self) -> str:
        return f"gyre-nats:{self.stream}:{self.durable}"

    def _stopping(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    # -- the run ---------------------------------------------------------------------------------

    async def run(self) -> StreamResult:
        import nats.errors

        nc = await self._connect()
        try:
            js = nc.jetstream(timeout=API_TIMEOUT_S)
            try:
                await self._consume(js)
            except nats.errors.Error as exc:
                raise BackendUnavailable(
                    f"NATS at {self.address.display} failed while consuming '{self.address.subject}': "
                    f"{exc}. Nothing uncommitted was acknowledged; run the command again to resume."
                ) from None
        finally:
            await nc.close()
        return self.result

    async def _connect(self) -> NatsClient:
        import nats

        async def on_error(exc: Exception) -> None:  # nats-py would log each one as an error
            self._errors.append(exc)
            del self._errors[:-5]

        try:
            return await asyncio.wait_for(
                nats.connect(
                    self.address.server,
                    name=f"gyre-ingest-{self.dataset}",
                    connect_timeout=self.connect_timeout_s,
                    error_cb=on_error,
                ),
                timeout=self.connect_timeout_s,
            )
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            cause = self._errors[-1] if self._errors else exc
            reason = str(cause) or type(cause).__name__
            raise BackendUnavailable(
                f"Cannot reach NATS at {self.address.display} ({reason}). Check that nats-server "
                f"runs there with JetStream enabled (nats-server -js), e.g. with "
                f"`nats --server {self.address.display} server check jetstream`."
            ) from None

    async def _consume(self, js: JetStreamContext) -> None:
        self.stream = await self._resolve_stream(js)
        self.result.stream = self.stream
        self.position = await asyncio.to_thread(self._committed_position)
        self.result.last_seq = self.position or None
        await asyncio.to_thread(self._ensure_dataset)
        sub = await self._subscribe(js)

        group = _Group()
        resyncs = 0
        drained = True  # nothing was pending the last time we looked: check before waiting
        while True:
            stopping = self._stopping()
            if group and (
                len(group) >= self.batch
                or time.monotonic() >= group.deadline
                or stopping
                or (drained and not self.follow)
            ):
                if await self._missing_deliveries(sub, group):
                    resyncs += 1
                    if resyncs > MAX_RESYNCS:
                        raise Conflict(
                            f"Consumer '{self.durable}' of stream '{self.stream}' keeps reporting "
                            "deliveries this run never received; is another process consuming with "
                            "the same durable name? Stop it, or pass another --durable NAME."
                        )
                    sub = await self._resubscribe(js, sub)
                else:
                    await self._commit(group)
                    resyncs = 0
                group = _Group()
            if stopping:
                return
            if drained and not self.follow and not group and (await sub.consumer_info()).num_pending == 0:
                return
            drained = False
            wait = POLL_S if not group else group.deadline - time.monotonic()
            try:
                msgs = await sub.fetch(self.batch - len(group), timeout=max(0.01, min(wait, POLL_S)))
            except TimeoutError:  # nats-py raises its own subclass, or asyncio's, when nothing came
                drained = True
                continue
            for msg in msgs:
                drained = msg.metadata.num_pending == 0
                await self._receive(msg, group)

    async def _receive(self, msg: Msg, group: _Group) -> None:
        seq = msg.metadata.sequence.stream
        if seq <= self.position:  # committed before (a redelivery): acknowledge, do not write
            self.result.already_committed += 1
            with contextlib.suppress(TimeoutError):  # if lost, it comes back and is skipped again
                await msg.ack_sync()
            return
        if seq in group.seqs:  # redelivered while its group is still open
            return
        if not group:
            group.deadline = time.monotonic() + self.max_wait_s
        group.msgs.append(msg)
        group.seqs.add(seq)
        record, key = self._parse(msg, seq, group)
        if key in group.ids or key in self.window:
            group.duplicates += 1
            return
        group.ids.add(key)
        group.records.append((seq, record))

    def _parse(self, msg: Msg, seq: int, group: _Group) -> tuple[dict[str, Any], Hashable]:
        try:
            record = json.loads(msg.data)
        except ValueError as exc:
            raise self._bad_message(seq, group, f"is not JSON ({exc})") from None
        if not isinstance(record, dict):
            raise self._bad_message(
                seq, group, f'is a JSON {type(record).__name__}, not an object like {{"id": 1}}'
            )
        try:
            return record, record_id(record, self.id_field)
        except InvalidArgument as exc:
            raise self._bad_message(seq, group, exc.message) from None

    def _bad_message(self, seq: int, group: _Group, problem: str) -> InvalidArgument:
        first = min(group.seqs) if group.seqs else seq
        return InvalidArgument(
            f"The message at stream sequence {seq} of stream '{self.stream}' "
            f"(subject '{self.address.subject}') {problem}. The consumer stopped before committing "
            f"its group: nothing from stream sequences {first}-{seq} was committed, and those "
            f"messages were not acknowledged. Fix the producer and remove the message "
            f"(`nats stream rmm {self.stream} {seq}`), or change the dataset to accept it, then run "
            "again to resume."
        )

    # -- committing ------------------------------------------------------------------------------

    async def _commit(self, group: _Group) -> None:
        first, last = min(group.seqs), max(group.seqs)
        self.result.records_read += len(group.seqs)
        self.result.duplicates_dropped += group.duplicates
        if group.records:
            version, rows = await asyncio.to_thread(self._commit_records, group.records, first, last)
            self.position = last
            self.result.versions.append(version)
            self.result.rows_committed += rows
            for key in group.ids:
                self.window.add(key)
        self.result.last_seq = max(last, self.result.last_seq or 0)
        # Only now: an acknowledged message must never be lost. The last ack waits for the server,
        # which handles one connection's messages in order, so the earlier acks are in too.
        for msg in group.msgs[:-1]:
            await msg.ack()
        try:
            await group.msgs[-1].ack_sync()
        except TimeoutError:  # committed anyway: a redelivery will be skipped by its sequence
            log.warning(
                "acknowledging stream sequence %d timed out; it will be redelivered and skipped", last
            )
        if group.records and self.on_rows is not None:
            self.on_rows(rows)

    def _commit_records(
        self, records: list[tuple[int, dict[str, Any]]], first: int, last: int
    ) -> tuple[int, int]:
        table = self._table(records, first, last)
        try:
            version = self.lake.append(
                self.dataset,
                table,
                custom_metadata={"gyre.source": self.address.source},
                app_transactions={self.app_id: last},
            )
        except InvalidArgument as exc:
            raise InvalidArgument(
                f"{exc.message} (stream '{self.stream}', sequences {first}-{last}: nothing from them was "
                "committed and they were not acknowledged)"
            ) from None
        record_commit(
            self.meta,
            self.dataset,
            version,
            table,
            source=self.address.source,
            offsets={"stream": self.stream, "first_seq": first, "last_seq": last},
        )
        if self.rules.schema is None:
            self.rules = DatasetRules.load(self.meta, self.lake, self.dataset)
        return version, table.num_rows

    def _table(self, records: list[tuple[int, dict[str, Any]]], first: int, last: int) -> pa.Table:
        try:
            return self.rules.table([r for _, r in records])
        except InvalidArgument as exc:
            problem = exc.message
        seq = first  # name the first record that does not fit on its own, if one does not
        for at, record in records:
            try:
                self.rules.table([record])
            except InvalidArgument as exc:
                seq, problem = at, exc.message
                break
        raise InvalidArgument(
            f"The message at stream sequence {seq} of stream '{self.stream}' does not fit dataset "
            f"'{self.dataset}': {problem} The consumer stopped before committing its group: nothing "
            f"from stream sequences {first}-{last} was committed, and those messages were not "
            f"acknowledged. Remove the message (`nats stream rmm {self.stream} {seq}`) or change the "
            "dataset to accept it, then run again to resume."
        )

    def _committed_position(self) -> int:
        committed = self.lake.transaction_version(self.dataset, self.app_id)
        self.rules = DatasetRules.load(self.meta, self.lake, self.dataset)
        return committed or 0

    def _ensure_dataset(self) -> None:
        if self.new_dataset:
            catalog.ensure_dataset(self.meta, self.dataset, keys=[self.id_field], event_time=self.event_time)

    # -- stream and consumer ---------------------------------------------------------------------

    async def _resolve_stream(self, js: JetStreamContext) -> str:
        from nats.js.errors import NotFoundError

        subject = self.address.subject
        if not self.stream:
            try:
                return await js.find_stream_name_by_subject(subject)
            except NotFoundError:
                return await self._create_stream(js, f"GYRE_{self.dataset.upper()}")
        try:
            await js.stream_info(self.stream)
        except NotFoundError:
            return await self._create_stream(js, self.stream)
        try:
            owner: str | None = await js.find_stream_name_by_subject(subject)
        except NotFoundError:
            owner = None
        if owner != self.stream:
            also = f"; stream '{owner}' does" if owner else ""
            raise InvalidArgument(
                f"Stream '{self.stream}' does not capture subject '{subject}'{also}. "
                "Pass the stream that holds the subject, or leave --stream out to find it."
            )
        return self.stream

    async def _create_stream(self, js: JetStreamContext, name: str) -> str:
        from nats.js.errors import APIError

        try:
            await js.add_stream(name=name, subjects=[self.address.subject])
        except APIError as exc:
            raise InvalidArgument(
                f"Cannot create stream '{name}' for subject '{self.address.subject}' on "
                f"{self.address.display}: {exc.description or exc}."
            ) from None
        log.info("created JetStream stream %s for subject %s", name, self.address.subject)
        self.result.stream_created = True
        return name

    async def _subscribe(
        self, js: JetStreamContext, *, reset: bool = False
    ) -> JetStreamContext.PullSubscription:
        """Bind to the durable consumer, creating it (or recreating it) to start after the position."""
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
        from nats.js.errors import NotFoundError

        subject = self.address.subject
        start = self.position + 1
        try:
            info = await js.consumer_info(self.stream, self.durable)
        except NotFoundError:
            info = None
        if info is not None:
            floor = (info.ack_floor.stream_seq if info.ack_floor else 0) or 0
            self.result.last_seq = max(self.position, floor, self.result.last_seq or 0) or None
            if info.config.filter_subject and info.config.filter_subject != subject:
                raise InvalidArgument(
                    f"Consumer '{self.durable}' of stream '{self.stream}' reads subject "
                    f"'{info.config.filter_subject}', not '{subject}'; pass another --durable NAME."
                )
            if reset or info.num_ack_pending:
                # Messages were delivered and never acknowledged (to a run that died, or lost on
                # the way). Left alone, they would be redelivered only after newer messages were
                # committed, and then skipped. Start again right after what is safe: committed,
                # or acknowledged (only committed and duplicate messages are).
                start = max(self.position, floor) + 1
                log.info(
                    "consumer %s of stream %s had %d unacknowledged messages; restarting it at "
                    "stream sequence %d",
                    self.durable,
                    self.stream,
                    info.num_ack_pending,
                    start,
                )
                await js.delete_consumer(self.stream, self.durable)
        config = ConsumerConfig(
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE if start > 1 else DeliverPolicy.ALL,
            opt_start_seq=start if start > 1 else None,
            ack_wait=max(30.0, 2 * self.max_wait_s + 30.0),
            max_ack_pending=max(1000, 2 * self.batch),
        )
        return await js.pull_subscribe(subject, durable=self.durable, stream=self.stream, config=config)

    async def _missing_deliveries(self, sub: JetStreamContext.PullSubscription, group: _Group) -> bool:
        """Whether the server has delivered messages this run never received (and so cannot commit
        past): its count of unacknowledged messages exceeds the open group's."""
        pending = (await sub.consumer_info()).num_ack_pending or 0
        if pending > len(group.seqs):
            log.warning(
                "consumer %s: %d messages delivered but not received; re-reading from stream sequence %d",
                self.durable,
                pending - len(group.seqs),
                self.position + 1,
            )
            return True
        return False

    async def _resubscribe(
        self, js: JetStreamContext, sub: JetStreamContext.PullSubscription
    ) -> JetStreamContext.PullSubscription:
        await sub.unsubscribe()
        return await self._subscribe(js, reset=True)
