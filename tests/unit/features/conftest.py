"""Online stores for the feature tests: SQLite in ``tmp_path``, and a real Redis.

Redis tests use a key prefix of their own and delete only its keys afterwards, so they can share
a server (and database) with anything else (the server: ``redis_server`` in tests/conftest.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from gyre.features.online import OnlineStore, open_online_store


@pytest.fixture
def redis_url(redis_server: str) -> Iterator[str]:
    """The test server with a fresh key prefix; the prefix's keys are deleted afterwards."""
    import redis

    prefix = f"gyre-test-{uuid.uuid4().hex[:12]}:"
    yield f"{redis_server}?prefix={prefix}"
    client = redis.Redis.from_url(redis_server)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for start in range(0, len(keys), 1000):
            client.unlink(*keys[start : start + 1000])
    finally:
        client.close()


@pytest.fixture(
    params=[
        pytest.param("sqlite", marks=pytest.mark.backend("sqlite")),
        pytest.param("redis", marks=[pytest.mark.integration, pytest.mark.backend("redis")]),
    ]
)
def online_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The online store contract runs on SQLite and again on a real Redis."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'online.db'}"
    url: str = request.getfixturevalue("redis_url")
    return url


@pytest.fixture
def online_store(online_url: str) -> Iterator[OnlineStore]:
    store = open_online_store(online_url)
    yield store
    store.close()
