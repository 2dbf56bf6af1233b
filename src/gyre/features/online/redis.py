"""The scale-out online store: Redis, shared by every serving replica.

Keys, under a configurable prefix (``redis://host:6379/0?prefix=myapp:``; default ``gyre:``):

* ``<prefix><view>:latest``: a hash, entity key → ``<encoded order>|<values JSON>``;
* ``<prefix><view>:ev:<entity key>``: a sorted set of events scored by event time (µs, exact
  up to 2**53, i.e. until the year 2255); a member is ``<event id>\\n<values JSON>``, so writing
  an event again is a no-op;
* ``<prefix><view>:watermark``: a hash with ``version`` and ``fingerprint``;
* ``<prefix>views``: the set of applied view names.

Batches run as Lua scripts over many keys, pipelined, so a batch is one round trip whatever its
size: keeping the greater order per key is a compare-and-set only a script can do atomically,
and a script per few thousand keys instead of a command per key is what lets a million events
be written in seconds (parsing a reply per key costs more than the write). A lookup of latest
rows only is one ``HMGET``; one that also needs events reads both with one script call.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gyre.errors import BackendUnavailable, ConfigError
from gyre.features.online.base import (
    Event,
    LatestRow,
    OnlineStore,
    Order,
    Values,
    as_encoded_order,
    decode_order,
    order_time,
)
from gyre.features.online.codec import decode_many, encode_values
from gyre.features.spec import ViewSpec

DEFAULT_PREFIX = "gyre:"

# Keys (or rows, or events) per script call, and calls per pipelined request: small enough that
# no call blocks Redis for long or builds a huge request, large enough to amortize the overhead.
_KEYS_PER_CALL = 1_000
_EVENTS_PER_CALL = 20_000
_CALLS_PER_REQUEST = 200
_SCAN_COUNT = 1_000

_SCRIPTS = {
    # KEYS[1]: the latest hash; ARGV: (key, order, values) triples. Orders are equal-length
    # digit strings, so string comparison is numeric comparison whatever collation Lua uses.
    "write_latest": """
local written = 0
for i = 1, #ARGV, 3 do
  local current = redis.call('HGET', KEYS[1], ARGV[i])
  local write = not current
  if current then
    local bar = string.find(current, '|', 1, true)
    write = string.sub(current, 1, bar - 1) < ARGV[i + 1]
  end
  if write then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1] .. '|' .. ARGV[i + 2])
    written = written + 1
  end
end
return written
""",
    # KEYS: event sets; ARGV: per key, its event count n, then n (score, member) pairs.
    "write_events": """
local p = 1
for i = 1, #KEYS do
  local n = tonumber(ARGV[p])
  p = p + 1
  while n > 0 do
    local m = math.min(n, 1000)
    redis.call('ZADD', KEYS[i], unpack(ARGV, p, p + 2 * m - 1))
    p = p + 2 * m
    n = n - m
  end
end
return #KEYS
""",
    # KEYS: event sets; ARGV[1]: the exclusive upper bound, e.g. '(1700000000000000'.
    "trim_events": """
local removed = 0
for i = 1, #KEYS do
  removed = removed + redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', ARGV[1])
end
return removed
""",
    # KEYS[1]: the latest hash, KEYS[2..]: event sets; ARGV: since (exclusive), until, what to
    # read ('L' latest, 'E' events, 'LE' both), then the entity keys (the hash's fields).
    "read_view": """
local out = {{}}
if string.find(ARGV[3], 'L', 1, true) then
  out[1] = redis.call('HMGET', KEYS[1], unpack(ARGV, 4))
end
if string.find(ARGV[3], 'E', 1, true) then
  local since = '(' .. ARGV[1]
  for i = 2, #KEYS do
    -- One string per key, not two per event: parsing reply elements is the client's main cost.
    local found = redis.call('ZRANGE', KEYS[i], since, ARGV[2], 'BYSCORE', 'WITHSCORES')
    out[i] = table.concat(found, string.char(30))
  end
end
return out
""",
}

_O = TypeVar("_O")

_GLOB_SPECIAL = re.compile(r"([\\*?\[\]])")


def _glob_escape(text: str) -> str:
    return _GLOB_SPECIAL.sub(r"\\\1", text)


def _pack(commands: list[list[bytes]]) -> bytes:
    """Commands in the Redis protocol (RESP): an array of bulk strings each."""
    out = []
    for args in commands:
        out.append(b"*%d\r\n" % len(args))
        out += [b"$%d\r\n%b\r\n" % (len(a), a) for a in args]
    return b"".join(out)


DEFAULT_TIMEOUTS = {"socket_connect_timeout": 2.0, "socket_timeout": 5.0}


class RedisOnlineStore(OnlineStore):
    """An online store in Redis (one server or a managed primary; not Redis Cluster, whose
    scripts may only touch keys of one slot).

    Args:
        url: ``redis://[[user]:password@]host:port/db`` (``rediss://`` for TLS).
        prefix: prepended to every key, so several projects can share a database.
    """

    capabilities: ClassVar[frozenset[str]] = frozenset({"multi_host"})

    def __init__(self, url: str, *, prefix: str = DEFAULT_PREFIX) -> None:
        parts = urlsplit(url)
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        # For messages: the address without credentials.
        self.address = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
        self.prefix = prefix
        try:
            # Any: with decode_responses every reply is a str, which redis-py's types cannot say.
            # Timeouts make a hung or unreachable server an error within seconds, not a hang of
            # the serving path; the URL's socket_timeout / socket_connect_timeout override them.
            query = dict(parse_qsl(parts.query))
            timeouts = {k: v for k, v in DEFAULT_TIMEOUTS.items() if k not in query}
            self._client: Any = redis.Redis.from_url(url, decode_responses=True, **timeouts)
        except ValueError as exc:
            raise ConfigError(f"Invalid Redis online store URL {self.address!r}: {exc}.") from None
        self._shas: dict[str, bytes] = {}

    @classmethod
    def from_url(cls, url: str, *, root: Path | None = None) -> RedisOnlineStore:
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        prefix = next((v for k, v in query if k == "prefix"), DEFAULT_PREFIX)
        rest = urlencode([(k, v) for k, v in query if k != "prefix"])
        return cls(urlunsplit((parts.scheme, parts.netloc, parts.path, rest, parts.fragment)), prefix=prefix)

    def __repr__(self) -> str:
        return f"RedisOnlineStore({self.address!r}, prefix={self.prefix!r})"

    # -- plumbing ------------------------------------------------------------------------------

    def _latest_key(self, view: str) -> str:
        return f"{self.prefix}{view}:latest"

    def _events_key(self, view: str, key: str) -> str:
        return f"{self.prefix}{view}:ev:{key}"

    def _watermark_key(self, view: str) -> str:
        return f"{self.prefix}{view}:watermark"

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise BackendUnavailable(
                f"Cannot reach the Redis online store at {self.address}: {exc}. Is Redis running? "
                "Check [backends] online."
            ) from exc
        except RedisError as exc:
            raise BackendUnavailable(f"The Redis online store at {self.address} failed: {exc}.") from exc

    def _run(self, script: str, calls: list[tuple[list[bytes], list[bytes]]]) -> list[Any]:
        """Call ``script`` once per ``(keys, args)``, pipelined; return the replies.

        Every script here is idempotent, so after the server lost its scripts (a restart,
        ``SCRIPT FLUSH``) the whole batch simply runs again.
        """
        with self._errors():
            for attempt in (1, 2):
                if not self._shas:
                    self._shas = {n: self._client.script_load(s).encode() for n, s in _SCRIPTS.items()}
                sha = self._shas[script]
                commands = [[b"EVALSHA", sha, b"%d" % len(keys), *keys, *args] for keys, args in calls]
                try:
                    return self._execute_packed(commands)
                except NoScriptError:
                    if attempt == 2:
                        raise
                    self._shas = {}
        raise AssertionError("unreachable")  # pragma: no cover

    def _execute_packed(self, commands: list[list[bytes]]) -> list[Any]:
        """Run ``commands`` pipelined, encoding them here rather than in redis-py.

        Why not a redis-py pipeline: it encodes every argument in Python at ~3 µs each, which
        made writing a million events take ~10 s. Replies are read with redis-py's parser; an
        error reply is raised after all replies are read, so the connection stays in step.
        """
        pool = self._client.connection_pool
        connection = pool.get_connection()
        replies: list[Any] = []
        error: Exception | None = None
        try:
            for start in range(0, len(commands), _CALLS_PER_REQUEST):
                chunk = commands[start : start + _CALLS_PER_REQUEST]
                connection.send_packed_command([_pack(chunk)])
                for _ in chunk:
                    try:
                        replies.append(connection.read_response())
                    except ResponseError as exc:
                        error = error or exc
                        replies.append(exc)
        except BaseException:
            connection.disconnect()  # replies may be left unread: never reuse this connection
            raise
        finally:
            pool.release(connection)
        if error is not None:
            raise error
        return replies

    def _scan(self, pattern: str) -> Iterator[list[str]]:
        """Keys matching ``pattern``, a page at a time."""
        cursor = 0
        while True:
            cursor, keys = self._client.scan(cursor, match=pattern, count=_SCAN_COUNT)
            if keys:
                yield keys
            if cursor == 0:
                return

    def _view_event_keys(self, view: str) -> Iterator[list[str]]:
        return self._scan(_glob_escape(self._events_key(view, "")) + "*")

    # -- views ---------------------------------------------------------------------------------

    def apply(self, views: Sequence[ViewSpec]) -> None:
        if views:
            with self._errors():
                self._client.sadd(f"{self.prefix}views", *[v.name for v in views])

    def teardown(self, view_names: Sequence[str]) -> None:
        with self._errors():
            for name in view_names:
                self._client.unlink(self._latest_key(name), self._watermark_key(name))
                for keys in self._view_event_keys(name):
                    self._client.unlink(*keys)
            if view_names:
                self._client.srem(f"{self.prefix}views", *view_names)

    # -- latest rows ---------------------------------------------------------------------------

    def write_latest(self, view: str, rows: Sequence[LatestRow]) -> int:
        if not rows:
            return 0
        target = [self._latest_key(view).encode()]
        calls = []
        for start in range(0, len(rows), _KEYS_PER_CALL):
            args: list[bytes] = []
            for key, order, values in rows[start : start + _KEYS_PER_CALL]:
                args += (key.encode(), as_encoded_order(order).encode(), encode_values(values).encode())
            calls.append((target, args))
        return sum(int(n) for n in self._run("write_latest", calls))

    def read_latest(self, view: str, keys: Sequence[str]) -> list[tuple[Order, Values] | None]:
        return _parse_latest(self._hmget(view, keys), decode_order)

    def _hmget(self, view: str, keys: Sequence[str]) -> list[str | None]:
        """The latest hash's fields for ``keys``: ``HMGET``s of up to 1,000 keys, pipelined."""
        if not keys:
            return []
        hash_key = self._latest_key(view).encode()
        commands = [
            [b"HMGET", hash_key, *(k.encode() for k in keys[start : start + _KEYS_PER_CALL])]
            for start in range(0, len(keys), _KEYS_PER_CALL)
        ]
        with self._errors():
            replies = self._execute_packed(commands)
        return replies[0] if len(replies) == 1 else [field for reply in replies for field in reply]

    # -- events --------------------------------------------------------------------------------

    def write_events(self, view: str, events: Sequence[Event]) -> int:
        if not events:
            return 0
        by_key: dict[str, list[bytes]] = {}
        for key, t, event_id, values in events:
            pairs = by_key.get(key)
            if pairs is None:
                pairs = by_key[key] = []
            pairs += (b"%d" % t, f"{event_id}\n{encode_values(values)}".encode())
        calls: list[tuple[list[bytes], list[bytes]]] = []
        keys: list[bytes] = []
        args: list[bytes] = []
        for key, pairs in by_key.items():
            keys.append(self._events_key(view, key).encode())
            args.append(b"%d" % (len(pairs) // 2))
            args += pairs
            if len(keys) >= _KEYS_PER_CALL or len(args) >= 2 * _EVENTS_PER_CALL:
                calls.append((keys, args))
                keys, args = [], []
        if keys:
            calls.append((keys, args))
        self._run("write_events", calls)
        return len(events)

    def read_events(
        self, view: str, keys: Sequence[str], since_us: int, until_us: int
    ) -> list[list[tuple[int, Values]]]:
        _, events = self.read_view(view, keys, latest=False, events=(since_us, until_us))
        assert events is not None
        return events

    def trim_events(self, view: str, before_us: int) -> int:
        bound = [b"(%d" % before_us]
        with self._errors():
            calls = [([k.encode() for k in keys], bound) for keys in self._view_event_keys(view)]
        return sum(int(n) for n in self._run("trim_events", calls)) if calls else 0

    # -- watermarks ----------------------------------------------------------------------------

    def get_watermark(self, view: str) -> int | None:
        with self._errors():
            found = self._client.hget(self._watermark_key(view), "version")
        return int(found) if found is not None else None

    def get_fingerprint(self, view: str) -> str | None:
        with self._errors():
            found: str | None = self._client.hget(self._watermark_key(view), "fingerprint")
        return found

    def set_watermark(self, view: str, version: int, *, fingerprint: str = "") -> None:
        with self._errors():
            self._client.hset(
                self._watermark_key(view), mapping={"version": version, "fingerprint": fingerprint}
            )

    # -- reading for a lookup ------------------------------------------------------------------

    def read_view(
        self, view: str, keys: Sequence[str], *, latest: bool, events: tuple[int, int] | None
    ) -> tuple[list[tuple[int, Values] | None] | None, list[list[tuple[int, Values]]] | None]:
        if events is None:  # latest rows only: a plain HMGET, no script
            return (_parse_latest(self._hmget(view, keys), order_time) if latest else None), None
        if not keys:
            return ([] if latest else None), []
        since, until = events
        head = [b"%d" % since, b"%d" % until, b"LE" if latest else b"E"]
        hash_key = self._latest_key(view).encode()
        calls = []
        for start in range(0, len(keys), _KEYS_PER_CALL):
            fields = [k.encode() for k in keys[start : start + _KEYS_PER_CALL]]
            sets = [self._events_key(view, k).encode() for k in keys[start : start + _KEYS_PER_CALL]]
            calls.append(([hash_key, *sets], [*head, *fields]))
        replies = self._run("read_view", calls)
        rows: list[tuple[int, Values] | None] | None = [] if latest else None
        found: list[list[tuple[int, Values]]] = []
        for reply in replies:
            if rows is not None:
                rows += _parse_latest(reply[0], order_time)
            found += [_parse_events(r) for r in reply[1:]]
        return rows, found

    def close(self) -> None:
        self._client.close()


def _parse_latest(raw: list[str | None], order: Callable[[str], _O]) -> list[tuple[_O, Values] | None]:
    """Hash fields ``"<encoded order>|<values JSON>"`` as ``(order(encoded order), values)``."""
    parts = [r.partition("|") if r is not None else None for r in raw]
    values = iter(decode_many([p[2] for p in parts if p is not None]))
    return [(order(p[0]), next(values)) if p is not None else None for p in parts]


def _parse_events(raw: str) -> list[tuple[int, Values]]:
    # Members and scores alternate, joined by \x1e; a member is "<event id>\n<values JSON>"
    # (compact JSON never holds a raw newline or \x1e).
    if not raw:
        return []
    parts = raw.split("\x1e")
    values = decode_many([m.rpartition("\n")[2] for m in parts[0::2]])
    return [(int(float(t)), v) for t, v in zip(parts[1::2], values, strict=True)]
