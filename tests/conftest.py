"""Shared fixtures: a fresh project per test, and the real services integration tests use.

A test that needs a service fails when ``CI=true`` and the service is unreachable; outside
CI it is skipped with the reason.
"""

from __future__ import annotations

import os
import socket
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from gyre.client.client import Client, connect
from gyre.client.fluent import set_default_client
from gyre.config import Settings, load_settings
from gyre.meta import MetaStore
from gyre.store import ArtifactStore

PG_HOST = os.environ.get("GYRE_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("GYRE_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("GYRE_TEST_PG_USER", "postgres")

PROJECT_TOML = """\
[project]
name = "test"

[backends]
metadata = "sqlite:///.gyre/meta.db"
store = "file://.gyre/store"
"""


def need_service(name: str, reason: str) -> None:
    """Fail in CI, skip elsewhere: a missing service must never pass CI silently."""
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"{name} is required in CI but unavailable: {reason}")
    pytest.skip(f"{name} unavailable: {reason}")


def port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, port)) == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def unused_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on (for a server the test starts, or a refused connection)."""
    return free_port()


@pytest.fixture(scope="session")
def require_service() -> Callable[[str, str], None]:
    """:func:`need_service` for test modules (they cannot import conftest modules)."""
    return need_service


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No GYRE_* variable of the developer's shell leaks into a test; no default client survives it."""
    for name in list(os.environ):
        if (
            name.startswith("GYRE_")
            and not name.startswith("GYRE_TEST_")
            and not name.startswith("GYRE_BENCH_")
        ):
            monkeypatch.delenv(name)
    set_default_client(None)
    yield
    set_default_client(None)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh project folder with a gyre.toml on embedded defaults, as the working directory."""
    (tmp_path / "gyre.toml").write_text(PROJECT_TOML)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def settings(project: Path) -> Settings:
    return load_settings(project)


@pytest.fixture
def client(settings: Settings) -> Iterator[Client]:
    c = connect(settings=settings)
    set_default_client(c)
    yield c
    c.close()


@pytest.fixture
def define(project: Path, client: Client) -> Callable[[str], Client]:
    """``define(text)``: write the project's definitions.py and apply it, as ``gyre apply`` does."""
    from gyre.project import apply, project_definitions

    def write_and_apply(text: str) -> Client:
        (project / "definitions.py").write_text(text)
        sys.modules.pop("gyre_project.definitions", None)  # an earlier test's module is stale
        apply(client.backend.meta, project_definitions(client.settings))  # type: ignore[attr-defined]
        return client

    return write_and_apply


@pytest.fixture
def ingest_table(project: Path, client: Client) -> Callable[..., int]:
    """``ingest_table(table, name, dataset="payments")``: ingest an Arrow table from a Parquet
    file ``name``.parquet in the project, as ``gyre ingest`` does; returns the new version."""
    import pyarrow.parquet as pq

    from gyre.data.ingest import ingest_files

    def ingest(table: Any, name: str, dataset: str = "payments") -> int:
        path = project / f"{name}.parquet"
        pq.write_table(table, path)
        backend = client.backend
        result = ingest_files(
            backend.meta,  # type: ignore[attr-defined]
            client.features.lake,
            backend.store,  # type: ignore[attr-defined]
            dataset,
            [str(path)],
        )
        assert result.accepted and result.version is not None, result.report.to_dict()
        return result.version

    return ingest


@pytest.fixture(scope="session")
def redis_server() -> str:
    """A Redis server (``GYRE_TEST_REDIS_URL``, default ``redis://127.0.0.1:6379/0``) and redis-py."""
    url = os.environ.get("GYRE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        import redis  # noqa: F401
    except ImportError as exc:
        need_service("redis-py (pip install 'gyre-ml[redis]')", str(exc))
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 6379
    if not port_open(host, port):
        need_service("Redis", f"nothing listens on {host}:{port}")
    return url


@pytest.fixture(scope="session")
def pg_server() -> str:
    if not port_open(PG_HOST, PG_PORT):
        need_service("PostgreSQL", f"nothing listens on {PG_HOST}:{PG_PORT}")
    return f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}"


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    import psycopg

    name = f"gyre_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{pg_server}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"{pg_server}/{name}"
    with psycopg.connect(f"{pg_server}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """An S3-compatible server on loopback: moto's standalone server (real HTTP, S3 wire protocol).

    Chosen because it installs from PyPI with no binary download; MinIO's server is not
    on the package registries this project may use.
    """
    import subprocess
    import sys
    import time

    try:
        import moto.server  # noqa: F401
    except ImportError as exc:
        need_service("S3-compatible server (moto[server])", str(exc))
    port = free_port()
    # A separate process, so the server's memory and threads are not the test's.
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while not port_open("127.0.0.1", port):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            need_service("S3-compatible server (moto[server])", "it did not start within 30 s")
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def s3_url(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket on the loopback S3 server, with AWS_* variables pointing at it."""
    import boto3

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    bucket = f"gyre-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    return f"s3://{bucket}/store"


@pytest.fixture(
    params=[
        pytest.param("sqlite", marks=pytest.mark.backend("sqlite")),
        pytest.param("postgres", marks=[pytest.mark.integration, pytest.mark.backend("postgres")]),
    ]
)
def meta_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The metadata contract runs on SQLite and again on a real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'meta.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def meta(meta_url: str) -> Iterator[MetaStore]:
    store = MetaStore(meta_url, actor="tester")
    yield store
    store.close()


@pytest.fixture(
    params=[
        pytest.param("file", marks=pytest.mark.backend("file")),
        pytest.param("s3", marks=[pytest.mark.integration, pytest.mark.backend("s3")]),
    ]
)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The artifact store contract runs on a local folder and again on the loopback S3 server."""
    if request.param == "file":
        return f"file://{tmp_path / 'store'}"
    return request.getfixturevalue("s3_url")


@pytest.fixture
def store(store_url: str) -> ArtifactStore:
    return ArtifactStore(store_url)


@pytest.fixture
def cli() -> Callable[..., Any]:
    """``cli("runs", "list", env={...})``: run ``gyre`` in-process (typer's runner), 100 columns
    wide, no colors; returns the ``Result`` (``exit_code``, ``stdout``, ``stderr``)."""
    from typer.testing import CliRunner

    from gyre.cli.main import app

    runner = CliRunner()

    def invoke(*args: str, env: dict[str, str] | None = None) -> Any:
        return runner.invoke(app, list(args), env={"COLUMNS": "100", **(env or {})}, catch_exceptions=False)

    return invoke
