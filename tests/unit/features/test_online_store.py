"""The online store contract, on SQLite and again on a real Redis (``online_store``)."""

from __future__ import annotations

import itertools
import math
import random
import socket
import sqlite3
import sys
import threading
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gyre.errors import BackendUnavailable, ConfigError
from gyre.features.online import BACKENDS, OnlineStore, open_online_store
from gyre.features.online.base import decode_order, encode_order
from gyre.features.online.codec import encode_values, entity_key
from gyre.features.spec import ColumnFeature, ViewSpec, WindowFeature


def view(name: str) -> ViewSpec:
    return ViewSpec(
        name=name,
        entity="user",
        join_keys=("user_id",),
        source="payments",
        event_time="ts",
        ttl_s=None,
        columns=(ColumnFeature("country", "country"),),
        windows=(WindowFeature("amount_sum_1h", "amount", "sum", 3600),),
    )


@pytest.fixture
def store(online_store: OnlineStore) -> OnlineStore:
    online_store.apply([view("v"), view("other")])
    return online_store


# -- latest rows -------------------------------------------------------------------------------


def test_latest_keeps_the_greatest_order(store: OnlineStore) -> None:
    assert store.write_latest("v", [("a", (10, 0, 0, 0), {"country": "US"})]) == 1
    assert store.write_latest("v", [("a", (9, 5, 5, 5), {"country": "older"})]) == 0
    assert store.write_latest("v", [("a", (10, 0, 0, 1), {"country": "DE"})]) == 1
    assert store.read_latest("v", ["a"]) == [((10, 0, 0, 1), {"country": "DE"})]
    # An equal order changes nothing (the same row written again).
    assert store.write_latest("v", [("a", (10, 0, 0, 1), {"country": "DE"})]) == 0


def test_latest_is_idempotent_and_order_independent(online_store: OnlineStore) -> None:
    rng = random.Random(7)
    rows = [(f"k{rng.randrange(5)}", (rng.randrange(4), rng.randrange(3), 0, i), {"x": i}) for i in range(40)]
    states = []
    for n, attempt in enumerate(range(4)):
        name = f"perm{n}"
        online_store.apply([view(name)])
        shuffled = rows[:]
        rng.shuffle(shuffled)
        # In one batch, and again in several small batches: the same state.
        online_store.write_latest(name, shuffled)
        for start in range(0, len(shuffled), 7 + attempt):
            online_store.write_latest(name, shuffled[start : start + 7 + attempt])
        states.append(online_store.read_latest(name, [f"k{i}" for i in range(5)]))
    expected = [max(((o, v) for k, o, v in rows if k == f"k{i}"), key=lambda r: r[0]) for i in range(5)]
    assert all(state == expected for state in states)


def test_orders_compare_as_numbers_including_negative_times(store: OnlineStore) -> None:
    orders = [(-(10**15), 0, 0, 0), (-1, 0, 0, 0), (0, 0, 0, 0), (1, 0, 0, 0), (10**15, 2**40, 3, 10**9)]
    for a, b in itertools.pairwise(orders):
        assert encode_order(a) < encode_order(b)
        assert decode_order(encode_order(a)) == a
    for order in reversed(orders):
        store.write_latest("v", [("k", order, {"o": list(order)})])
    assert store.read_latest("v", ["k"])[0] == (orders[-1], {"o": list(orders[-1])})


def test_orders_may_be_given_encoded(store: OnlineStore) -> None:
    assert store.write_latest("v", [("a", encode_order((5, 1, 0, 0)), {"x": 1})]) == 1
    assert store.write_latest("v", [("a", (5, 0, 9, 9), {"x": 2})]) == 0  # an older row
    assert store.read_latest("v", ["a"]) == [((5, 1, 0, 0), {"x": 1})]
    assert store.read_view("v", ["a"], latest=True, events=None) == ([(5, {"x": 1})], None)


def test_latest_values_round_trip(store: OnlineStore) -> None:
    values = {
        "int": 2**62,
        "float": 0.1,
        "nan": math.nan,
        "inf": -math.inf,
        "none": None,
        "bool": True,
        "text": 'é "quoted" \\ \n\t\x01 ✓',
        "naive": datetime(2024, 5, 1, 12, 30, 0, 123456),
        "aware": datetime(2024, 5, 1, 12, 30, tzinfo=UTC),
        "date": date(2024, 5, 1),
        "delta": timedelta(seconds=90, microseconds=5),
        "decimal": Decimal("12.3400"),
        "bytes": b"\x00\xff",
        "list": [1, None, "x"],
        "struct": {"a": 1, "b": [True]},
    }
    store.write_latest("v", [("k", (1, 0, 0, 0), values)])
    [(order, got)] = store.read_latest("v", ["k"])  # type: ignore[misc]
    assert order == (1, 0, 0, 0)
    assert math.isnan(got.pop("nan")) and math.isnan(values.pop("nan"))
    assert got == values
    assert type(got["naive"]) is datetime and got["aware"].tzinfo is not None


def test_latest_accepts_values_as_json_text(store: OnlineStore) -> None:
    store.write_latest("v", [("k", (1, 0, 0, 0), encode_values({"country": "FR", "n": 1.0}))])
    assert store.read_latest("v", ["k"]) == [((1, 0, 0, 0), {"country": "FR", "n": 1.0})]


latest_rows_st = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c"]),
        st.tuples(st.integers(-(2**63), 2**63 - 1), st.integers(0, 3)),
        st.dictionaries(st.sampled_from(["x", "y"]), st.one_of(st.none(), st.integers(), st.text())),
    ),
    max_size=6,
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(latest_rows_st, max_size=3))
def test_latest_written_as_columns_equals_written_as_rows(
    online_store: OnlineStore, batches: list[list[tuple[str, tuple[int, int], dict[str, Any]]]]
) -> None:
    """Rows given as encoded columns (materialization's form) leave what the same rows do."""
    online_store.teardown(["rows", "columns"])
    online_store.apply([view("rows"), view("columns")])
    for batch in batches:
        by_rows = online_store.write_latest("rows", batch)
        by_columns = online_store.write_latest_columns(
            "columns",
            [key for key, _, _ in batch],
            [order[0] for _, order, _ in batch],
            [encode_order(order) for _, order, _ in batch],
            [encode_values(values) for _, _, values in batch],
        )
        assert by_columns == by_rows
    keys = ["a", "b", "c"]
    assert online_store.read_latest("columns", keys) == online_store.read_latest("rows", keys)
    assert online_store.read_view("columns", keys, latest=True, events=None) == online_store.read_view(
        "rows", keys, latest=True, events=None
    )


def test_read_latest_answers_per_key_in_order(store: OnlineStore) -> None:
    keys = [entity_key([i]) for i in range(3000)]  # more than one script call / statement
    store.write_latest("v", [(k, (i, 0, 0, 0), {"i": i}) for i, k in enumerate(keys) if i % 2 == 0])
    asked = [keys[5], keys[4], "missing", keys[4], *keys]
    got = store.read_latest("v", asked)
    assert got[:4] == [None, ((4, 0, 0, 0), {"i": 4}), None, ((4, 0, 0, 0), {"i": 4})]
    assert [g is None for g in got[4:]] == [i % 2 == 1 for i in range(3000)]
    assert store.read_latest("v", []) == []


def test_reading_a_view_never_written_is_empty(online_store: OnlineStore) -> None:
    assert online_store.read_latest("nothing", ["a", "b"]) == [None, None]
    assert online_store.read_events("nothing", ["a"], 0, 10) == [[]]
    assert online_store.get_watermark("nothing") is None
    assert online_store.get_fingerprint("nothing") is None
    assert online_store.trim_events("nothing", 10) == 0


# -- events ------------------------------------------------------------------------------------


def test_events_are_idempotent_by_id(store: OnlineStore) -> None:
    events = [("a", 10, "f:0", {"amount": 1.5}), ("a", 20, "f:1", {"amount": None}), ("b", 10, "f:2", {})]
    store.write_events("v", events)
    store.write_events("v", events[::-1])
    store.write_events("v", [events[0]])
    assert store.read_events("v", ["a", "b"], 0, 100) == [
        [(10, {"amount": 1.5}), (20, {"amount": None})],
        [(10, {})],
    ]


def test_event_ranges_exclude_since_and_include_until(store: OnlineStore) -> None:
    store.write_events("v", [("a", t, f"e{t}", {"t": t}) for t in (-5, 0, 5, 10, 15)])
    assert store.read_events("v", ["a"], 0, 10) == [[(5, {"t": 5}), (10, {"t": 10})]]
    assert store.read_events("v", ["a"], -6, -5) == [[(-5, {"t": -5})]]
    assert store.read_events("v", ["a"], 15, 100) == [[]]
    assert store.read_events("v", ["a", "zz", "a"], 9, 10) == [[(10, {"t": 10})], [], [(10, {"t": 10})]]


def test_events_come_back_by_time(store: OnlineStore) -> None:
    times = list(range(0, 500, 5))
    random.Random(3).shuffle(times)
    store.write_events("v", [("a", t, f"id{t}", {"t": t}) for t in times])
    got = store.read_events("v", ["a"], -1, 1000)[0]
    assert [t for t, _ in got] == sorted(times) and all(v["t"] == t for t, v in got)


def test_events_at_realistic_times_are_exact(store: OnlineStore) -> None:
    # Microseconds since the epoch in this century need 51 bits; a score is a double.
    t = 1_704_067_200_123_457
    store.write_events("v", [("a", t, "x", {"amount": 1}), ("a", t + 1, "y", {"amount": 2})])
    assert store.read_events("v", ["a"], t - 1, t) == [[(t, {"amount": 1})]]
    assert store.read_events("v", ["a"], t, t + 1) == [[(t + 1, {"amount": 2})]]


def test_trim_deletes_events_before_a_time(store: OnlineStore) -> None:
    store.write_events("v", [(k, t, f"{k}{t}", {}) for k in ("a", "b") for t in (1, 2, 3)])
    store.write_events("other", [("a", 1, "a1", {})])
    assert store.trim_events("v", 2) == 2
    assert store.read_events("v", ["a", "b"], 0, 10) == [[(2, {}), (3, {})], [(2, {}), (3, {})]]
    assert store.trim_events("v", 100) == 4
    assert store.read_events("v", ["a", "b"], 0, 10) == [[], []]
    assert store.read_events("other", ["a"], 0, 10) == [[(1, {})]]


# -- watermarks, views -------------------------------------------------------------------------


def test_watermarks(store: OnlineStore) -> None:
    assert store.get_watermark("v") is None
    store.set_watermark("v", 3, fingerprint="abc")
    store.set_watermark("other", 0)
    store.set_watermark("v", 4, fingerprint="def")
    assert (store.get_watermark("v"), store.get_fingerprint("v")) == (4, "def")
    assert (store.get_watermark("other"), store.get_fingerprint("other")) == (0, "")


def test_teardown_deletes_one_view_only(store: OnlineStore) -> None:
    for name in ("v", "other"):
        store.write_latest(name, [("a", (1,), {"x": 1})])
        store.write_events(name, [("a", 1, "e", {}), ("b", 2, "e2", {})])
        store.set_watermark(name, 1, fingerprint="f")
    store.teardown(["v"])
    assert store.read_latest("v", ["a"]) == [None]
    assert store.read_events("v", ["a", "b"], 0, 10) == [[], []]
    assert store.get_watermark("v") is None and store.get_fingerprint("v") is None
    assert store.read_latest("other", ["a"]) == [((1,), {"x": 1})]
    assert store.read_events("other", ["a", "b"], 0, 10) == [[(1, {})], [(2, {})]]
    # The view can be applied and written again.
    store.apply([view("v")])
    store.write_latest("v", [("a", (0,), {"x": 0})])
    assert store.read_latest("v", ["a"]) == [((0,), {"x": 0})]


def test_apply_is_idempotent(store: OnlineStore) -> None:
    store.write_latest("v", [("a", (1,), {"x": 1})])
    store.apply([view("v")])
    assert store.read_latest("v", ["a"]) == [((1,), {"x": 1})]


def test_read_view_combines_both_reads(store: OnlineStore) -> None:
    # A lookup gets the event time (the order's first element), not the whole order.
    store.write_latest("v", [("a", (5, 1, 2, 3), {"x": 1})])
    store.write_events("v", [("a", 5, "e", {"y": 2})])
    assert store.read_view("v", ["a", "b"], latest=True, events=(0, 5)) == (
        [(5, {"x": 1}), None],
        [[(5, {"y": 2})], []],
    )
    assert store.read_view("v", ["a"], latest=False, events=(0, 5)) == (None, [[(5, {"y": 2})]])
    assert store.read_view("v", ["b", "a", "a"], latest=True, events=None) == (
        [None, (5, {"x": 1}), (5, {"x": 1})],
        None,
    )
    assert store.read_view("v", [], latest=True, events=(0, 1)) == ([], [])
    assert store.read_view("v", [], latest=True, events=None) == ([], None)
    assert store.read_view("never", ["a"], latest=True, events=None) == ([None], None)
    assert store.read_view("never", ["a"], latest=True, events=(0, 1)) == ([None], [[]])


def test_concurrent_writers_and_readers(store: OnlineStore) -> None:
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(20):
                store.write_latest("v", [(f"k{n}", (i,), {"i": i})])
                store.write_events("v", [(f"k{n}", i, f"{n}:{i}", {})])
                store.read_view("v", [f"k{n}"], latest=True, events=(-1, 100))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert store.read_latest("v", [f"k{n}" for n in range(4)]) == [((19,), {"i": 19})] * 4
    assert [len(e) for e in store.read_events("v", [f"k{n}" for n in range(4)], -1, 100)] == [20] * 4


def test_capabilities_are_declared(online_store: OnlineStore) -> None:
    assert isinstance(online_store.capabilities, frozenset)
    assert ("multi_host" in online_store.capabilities) == online_store.__class__.__name__.startswith("Redis")


# -- opening by URL ----------------------------------------------------------------------------


def test_unknown_scheme_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"redis://, sqlite://.*Did you mean 'redis'"):
        open_online_store("rediss2://localhost")
    with pytest.raises(ConfigError, match="Unsupported online store URL"):
        open_online_store("/just/a/path")
    assert sorted(BACKENDS) == ["redis", "sqlite"]


def test_sqlite_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="sqlite:///relative/path.db"):
        open_online_store("sqlite:///")
    relative = open_online_store("sqlite:///sub/online.db", root=tmp_path)
    relative.close()
    assert (tmp_path / "sub" / "online.db").exists()
    monkeypatch.chdir(tmp_path)
    in_cwd = open_online_store("sqlite:///cwd.db")
    in_cwd.close()
    assert (tmp_path / "cwd.db").exists()
    memory = open_online_store("sqlite:///:memory:")
    memory.apply([view("v")])
    memory.write_latest("v", [("a", (1,), {})])
    assert memory.read_latest("v", ["a"]) == [((1,), {})]
    memory.close()


def test_sqlite_page_cache_is_set_by_the_url(tmp_path: Path) -> None:
    def cache_kib(url: str) -> int:
        store = open_online_store(url)
        try:
            return -int(store._conn.execute("PRAGMA cache_size").fetchone()[0])  # type: ignore[attr-defined]
        finally:
            store.close()

    assert cache_kib(f"sqlite:///{tmp_path / 'a.db'}") == 64 * 1024
    assert cache_kib(f"sqlite:///{tmp_path / 'a.db'}?cache_mb=8") == 8 * 1024
    with pytest.raises(ConfigError, match="cache_mb must be a whole number of MiB, not '1.5'"):
        open_online_store(f"sqlite:///{tmp_path / 'a.db'}?cache_mb=1.5")


def test_sqlite_upgrades_a_file_of_the_older_layout(tmp_path: Path) -> None:
    """Files written before latest rows had a ``t`` column keep their rows and watermarks."""
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE gyre_watermarks
            (view TEXT PRIMARY KEY, version INTEGER NOT NULL, fingerprint TEXT NOT NULL);
        CREATE TABLE "latest__v" (key TEXT PRIMARY KEY, ord TEXT NOT NULL, vals TEXT NOT NULL) WITHOUT ROWID;
        CREATE TABLE "events__v" (key TEXT NOT NULL, t INTEGER NOT NULL, id TEXT NOT NULL, vals TEXT NOT NULL,
            PRIMARY KEY (key, t, id)) WITHOUT ROWID;
        INSERT INTO gyre_watermarks VALUES ('v', 4, 'fp');
        """
    )
    conn.executemany(
        'INSERT INTO "latest__v" VALUES (?, ?, ?)',
        [("[1]", encode_order((-7, 0, 0, 3)), '{"x":1}'), ("[2]", encode_order((2**62, 2, 0, 0)), '{"x":2}')],
    )
    conn.execute("""INSERT INTO "events__v" VALUES ('[1]', 5, 'e', '{}')""")
    conn.commit()
    conn.close()
    for _ in range(2):  # upgraded once; opening it again changes nothing
        with open_online_store(f"sqlite:///{path}") as store:
            assert store.read_view("v", ["[1]", "[2]", "[3]"], latest=True, events=(0, 5)) == (
                [(-7, {"x": 1}), (2**62, {"x": 2}), None],
                [[(5, {})], [], []],
            )
            assert store.read_latest("v", ["[1]"]) == [((-7, 0, 0, 3), {"x": 1})]
            assert (store.get_watermark("v"), store.get_fingerprint("v")) == (4, "fp")
    with open_online_store(f"sqlite:///{path}") as store:
        store.write_latest("v", [("[1]", (-6, 0, 0, 0), {"x": 3}), ("[3]", (1, 0, 0, 0), {"x": 4})])
        assert store.read_view("v", ["[1]", "[3]"], latest=True, events=None) == (
            [(-6, {"x": 3}), (1, {"x": 4})],
            None,
        )


def test_sqlite_write_to_a_view_not_applied(tmp_path: Path) -> None:
    from gyre.errors import NotFound

    with (
        open_online_store(f"sqlite:///{tmp_path}/o.db") as store,
        pytest.raises(NotFound, match="no feature view 'v'"),
    ):
        store.write_latest("v", [("a", (1,), {})])


def test_missing_redis_client_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)  # `import redis` now raises ImportError
    monkeypatch.delitem(sys.modules, "gyre.features.online.redis", raising=False)
    with pytest.raises(ConfigError, match=r"Redis online store needs `pip install 'gyre-ml\[redis\]'`"):
        open_online_store("redis://localhost:6379/0")


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.usefixtures("redis_server")
def test_unreachable_redis_is_backend_unavailable() -> None:
    port = closed_port()
    store = open_online_store(f"redis://127.0.0.1:{port}/0")
    with pytest.raises(
        BackendUnavailable, match=f"Cannot reach the Redis online store at redis://127.0.0.1:{port}/0"
    ):
        store.read_latest("v", ["a"])
    with pytest.raises(BackendUnavailable):
        store.write_latest("v", [("a", (1,), {})])
    store.close()


@pytest.mark.usefixtures("redis_server")
def test_redis_url_prefix_and_credentials_stay_out_of_messages() -> None:
    store = open_online_store("redis://:s3cret@127.0.0.1:1/2?prefix=team-a:")
    assert "s3cret" not in repr(store) and "team-a:" in repr(store)
    store.close()


@pytest.mark.integration
def test_redis_outage_fails_fast_and_the_same_store_recovers(tmp_path: Path) -> None:
    """Reads against a Redis that is down fail within seconds, and work again once it is back."""
    import os
    import shutil
    import subprocess
    import time

    from gyre.errors import BackendUnavailable

    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is required in CI") if os.environ.get("CI") else pytest.skip(
            "redis-server is not installed"
        )
    assert binary is not None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = open_online_store(f"redis://127.0.0.1:{port}/0")
    started = time.monotonic()
    with pytest.raises(BackendUnavailable, match="Cannot reach the Redis online store"):
        store.read_latest("v", ["k"])
    assert time.monotonic() - started < 3

    # A server that accepts connections but never answers: the read times out, it does not hang.
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(1)
        silent = open_online_store(f"redis://127.0.0.1:{hung.getsockname()[1]}/0?socket_timeout=0.5")
        started = time.monotonic()
        with pytest.raises(BackendUnavailable):
            silent.read_latest("v", ["k"])
        assert time.monotonic() - started < 3
        silent.close()

    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                assert store.read_latest("v", ["k"]) == [None]
                break
            except BackendUnavailable:
                assert time.monotonic() < deadline, "the store did not recover once Redis was back"
                time.sleep(0.1)
    finally:
        store.close()
        proc.terminate()
        proc.wait(10)
