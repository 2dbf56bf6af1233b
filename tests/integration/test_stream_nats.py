"""Stream ingest from a real NATS JetStream server: dedupe, resume, kill -9, bad messages.

The server is found at ``GYRE_TEST_NATS_URL`` (default ``nats://127.0.0.1:4222``, with JetStream
enabled); if it is unreachable the tests fail in CI and are skipped elsewhere. Each test uses a
subject and stream of its own and deletes the stream afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gyre.config import Settings
from gyre.data import catalog
from gyre.data.lake import Lake
from gyre.data.stream import consume_nats
from gyre.errors import BackendUnavailable, InvalidArgument
from gyre.meta import MetaStore

pytestmark = pytest.mark.integration

NATS_URL = os.environ.get("GYRE_TEST_NATS_URL", "nats://127.0.0.1:4222")


@dataclass
class Topic:
    """A fresh subject and the stream that holds it (deleted after the test)."""

    subject: str
    stream: str

    @property
    def url(self) -> str:
        return f"{NATS_URL}/{self.subject}"


async def _jetstream_call(fn: Any) -> Any:
    import nats

    nc = await nats.connect(NATS_URL, connect_timeout=2, max_reconnect_attempts=1)
    try:
        return await fn(nc.jetstream())
    finally:
        await nc.close()


def jetstream(fn: Any) -> Any:
    """Run ``await fn(js)`` on a fresh connection."""
    return asyncio.run(_jetstream_call(fn))


def publish(subject: str, payloads: list[Any]) -> None:
    """Publish records (dicts as JSON; bytes as they are), each acknowledged by JetStream."""

    async def send(js: Any) -> None:
        for p in payloads:
            await js.publish(subject, p if isinstance(p, bytes) else json.dumps(p).encode())

    jetstream(send)


def delete_stream(name: str) -> None:
    from nats.js.errors import NotFoundError

    async def delete(js: Any) -> None:
        with contextlib.suppress(NotFoundError):
            await js.delete_stream(name)

    jetstream(delete)


@pytest.fixture(scope="session")
def nats_server(require_service: Callable[[str, str], None]) -> str:
    try:
        jetstream(lambda js: js.account_info())
    except Exception as exc:
        require_service("NATS with JetStream", f"{NATS_URL}: {type(exc).__name__}: {exc}")
    return NATS_URL


@pytest.fixture
def topic(nats_server: str) -> Iterator[Topic]:
    tag = uuid.uuid4().hex[:12]
    t = Topic(f"gyre.test.{tag}", f"GYRE_TEST_{tag.upper()}")
    jetstream(lambda js: js.add_stream(name=t.stream, subjects=[t.subject]))
    yield t
    delete_stream(t.stream)


@pytest.fixture
def stores(settings: Settings) -> Iterator[tuple[MetaStore, Lake]]:
    meta = MetaStore(settings.metadata_url, actor="tester")
    yield meta, Lake(settings.store_url)
    meta.close()


def ids(lake: Lake, dataset: str = "events") -> list[int]:
    return lake.read(dataset, columns=["id"])["id"].to_pylist() if lake.exists(dataset) else []


def test_distinct_records_become_versions_with_offsets(stores: tuple[MetaStore, Lake], topic: Topic) -> None:
    meta, lake = stores
    records = [{"id": i, "v": i * 0.5} for i in range(25)]
    repeats = [{"id": i, "v": -1.0} for i in range(5)]  # a producer sending records again, later
    publish(topic.subject, [*records[:12], records[3], *records[12:], *repeats])

    result = consume_nats(
        meta, lake, "events", NATS_URL, subject=topic.subject, stream=topic.stream, id_field="id", batch=10
    )

    assert sorted(ids(lake)) == list(range(25))
    assert lake.read("events", columns=["v"])["v"].to_pylist().count(-1.0) == 0, "the first copy is kept"
    assert (result.records_read, result.duplicates_dropped, result.rows_committed) == (31, 6, 25)
    assert result.last_seq == 31, "the last group held duplicates only: read and acknowledged"
    assert lake.transaction_version("events", f"gyre-nats:{topic.stream}:gyre-events") == 30
    versions = catalog.list_versions(meta, "events")
    assert [v.version for v in versions] == result.versions
    assert sum(v.rows for v in versions) == 25
    assert all(v.source == topic.url for v in versions)
    offsets = [v.offsets for v in versions]
    assert offsets[0]["first_seq"] == 1 and offsets[-1]["last_seq"] == 30
    assert all(o["stream"] == topic.stream for o in offsets)
    assert all(a["last_seq"] + 1 == b["first_seq"] for a, b in itertools.pairwise(offsets))
    assert catalog.get_dataset(meta, "events").keys == ["id"]

    again = consume_nats(meta, lake, "events", topic.url, stream=topic.stream)  # the key is the id now
    assert (again.records_read, again.versions, again.last_seq) == (0, [], 31)


def test_a_restarted_consumer_resumes_after_its_last_commit(
    stores: tuple[MetaStore, Lake], nats_server: str
) -> None:
    meta, lake = stores
    dataset = f"events_{uuid.uuid4().hex[:8]}"
    subject = f"gyre.test.{dataset}"
    stop = threading.Event()
    try:
        # No stream captures the subject yet: the consumer creates GYRE_<DATASET> for it.
        first = consume_nats(meta, lake, dataset, NATS_URL, subject=subject, id_field="id")
        assert first.stream_created and first.stream == f"GYRE_{dataset.upper()}" and first.versions == []
        publish(subject, [{"id": i} for i in range(30)])
        part = consume_nats(
            meta, lake, dataset, NATS_URL, subject=subject, batch=10, on_rows=lambda _: stop.set(), stop=stop
        )
        assert 0 < part.rows_committed < 30, "stopped part of the way"
        publish(subject, [{"id": i} for i in range(30, 45)])
        rest = consume_nats(meta, lake, dataset, NATS_URL, subject=subject, batch=10)

        assert rest.already_committed == 0 and rest.duplicates_dropped == 0
        assert part.rows_committed + rest.rows_committed == 45
        assert sorted(ids(lake, dataset)) == list(range(45))
        versions = {v.version: v.offsets for v in catalog.list_versions(meta, dataset)}
        assert versions[rest.versions[0]]["first_seq"] > versions[part.versions[-1]]["last_seq"]
        assert versions[rest.versions[-1]]["last_seq"] == 45
    finally:
        delete_stream(f"GYRE_{dataset.upper()}")


def test_kill_9_mid_stream_loses_nothing_and_commits_nothing_twice(project: Path, topic: Topic) -> None:
    command = [
        sys.executable,
        "-m",
        "gyre.cli.main",
        "ingest",
        "events",
        "--from",
        topic.url,
        "--stream",
        topic.stream,
        "--id-field",
        "id",
        "--batch",
        "1000",
        "--max-wait",
        "0.3",
    ]
    lake = Lake(f"file://{project / '.gyre' / 'store'}")
    published: list[int] = []
    stop = threading.Event()

    async def produce() -> None:
        import nats

        nc = await nats.connect(NATS_URL)
        js = nc.jetstream()
        n = 0
        while not stop.is_set():
            for _ in range(10):
                await js.publish(topic.subject, json.dumps({"id": n, "v": 1.0}).encode())
                published.append(n)  # JetStream has stored it
                n += 1
            await asyncio.sleep(0.02)
        await nc.close()

    log = project / "consumer.log"
    with log.open("wb") as err:
        consumer = subprocess.Popen(
            [*command, "--follow"], cwd=project, stdout=subprocess.DEVNULL, stderr=err
        )
    producer = threading.Thread(target=asyncio.run, args=(produce(),))
    producer.start()
    try:
        deadline = time.monotonic() + 60
        while not lake.exists("events") or lake.version("events") < 3:
            assert consumer.poll() is None, f"the consumer exited: {log.read_text()}"
            assert time.monotonic() < deadline, "the consumer committed nothing"
            time.sleep(0.05)
        # Groups are committed by age, so the consumer spends most of its time holding one:
        # delivered, not yet committed or acknowledged.
        time.sleep(0.13)
        os.kill(consumer.pid, signal.SIGKILL)
        consumer.wait(10)
        time.sleep(0.5)  # more records arrive while it is down
    finally:
        stop.set()
        producer.join(30)
        if consumer.poll() is None:
            consumer.kill()
    committed_before = len(ids(lake))
    assert 0 < committed_before < len(published)

    rerun = subprocess.run(
        [*command, "--no-follow", "--json"], cwd=project, capture_output=True, text=True, timeout=120
    )
    assert rerun.returncode == 0, rerun.stderr
    rows = ids(lake)
    assert len(rows) == len(set(rows)), "a record was committed twice"
    assert sorted(rows) == sorted(published), "a published record is missing"
    assert json.loads(rerun.stdout)["rows_committed"] == len(published) - committed_before


def test_a_bad_message_stops_the_consumer_before_its_group_is_committed(
    stores: tuple[MetaStore, Lake], topic: Topic
) -> None:
    meta, lake = stores
    publish(topic.subject, [{"id": i} for i in range(5)])
    consume_nats(meta, lake, "events", topic.url, stream=topic.stream, id_field="id")
    publish(topic.subject, [{"id": 5}, {"id": 6}, b"not json {", {"id": 7}])  # sequences 6-9

    for _ in range(2):  # the message was not acknowledged: a second run meets it again
        with pytest.raises(InvalidArgument, match="stream sequence 8") as info:
            consume_nats(meta, lake, "events", topic.url, stream=topic.stream)
        assert "nothing from stream sequences 6-8 was committed" in info.value.message
        assert "not acknowledged" in info.value.message
        assert sorted(ids(lake)) == list(range(5))
        assert len(catalog.list_versions(meta, "events")) == 1


def test_a_record_that_does_not_fit_names_its_sequence(stores: tuple[MetaStore, Lake], topic: Topic) -> None:
    meta, lake = stores
    publish(topic.subject, [{"id": 1, "v": 1.0}])
    consume_nats(meta, lake, "events", topic.url, stream=topic.stream, id_field="id")
    publish(topic.subject, [{"id": 2, "v": 2.0}, {"id": 3, "v": "three"}, {"id": 4, "v": 4.0}])

    with pytest.raises(InvalidArgument, match="stream sequence 3 .* does not fit dataset 'events'"):
        consume_nats(meta, lake, "events", topic.url, stream=topic.stream)
    assert ids(lake) == [1]
    with pytest.raises(InvalidArgument, match="has no 'id'"):
        publish(topic.subject, [{"v": 5.0}])
        consume_nats(meta, lake, "events", topic.url, stream=topic.stream, durable="other", id_field="id")


def test_an_unreachable_server_is_a_clear_error(stores: tuple[MetaStore, Lake], unused_port: int) -> None:
    meta, lake = stores
    url = f"nats://127.0.0.1:{unused_port}"
    started = time.monotonic()
    with pytest.raises(BackendUnavailable, match="Cannot reach NATS at") as info:
        consume_nats(meta, lake, "events", f"{url}/events", id_field="id", connect_timeout_s=1.0)
    assert time.monotonic() - started < 5
    assert url in info.value.message and "nats-server" in info.value.message
    assert catalog.list_datasets(meta) == [], "nothing was created"
