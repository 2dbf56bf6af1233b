"""A live control-plane server per test: uvicorn over a real loopback socket, in a thread.

The server is configured exactly as :func:`gyre.api.server.run_server` configures it
(:func:`gyre.api.server.server_options`), on a socket bound to port 0 so tests never race
for a port.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from gyre.api.app import create_app
from gyre.api.server import server_options
from gyre.client.client import Client, connect
from gyre.config import Settings


@dataclass
class LiveServer:
    url: str
    settings: Settings
    token: str | None


@contextmanager
def serve(
    settings: Settings, *, token: str | None = None, loop: str = "auto", **limits: Any
) -> Iterator[LiveServer]:
    """Run the API for ``settings`` until the block ends (``loop="asyncio"`` to avoid uvloop)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = create_app(settings, token=token, **limits)
    options = {**server_options("127.0.0.1", port, log_level="warning"), "loop": loop}
    server = uvicorn.Server(uvicorn.Config(app, **options))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.005)
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", settings, token)
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


@pytest.fixture
def start_server(settings: Settings) -> Iterator[Callable[..., LiveServer]]:
    """Start servers (with a token, limits, another loop) for this test's project; all stop after it."""
    with ExitStack() as stack:
        yield lambda **kwargs: stack.enter_context(serve(settings, **kwargs))


@pytest.fixture
def server(start_server: Callable[..., LiveServer]) -> LiveServer:
    return start_server()


@pytest.fixture
def remote(server: LiveServer, settings: Settings) -> Iterator[Client]:
    """A client of the live server, as ``gyre.connect(url)`` makes it."""
    client = connect(server.url, settings=settings)
    yield client
    client.close()


@pytest.fixture
def start_gyre(project: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """``start_gyre(port, command, *extra)``: run ``gyre serve --port PORT`` (or ``command``, with
    ``extra`` arguments) in the test's project as a real process
    and wait until ``/readyz`` answers 200; processes still running are killed after the test."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(port: int, command: str = "serve", *extra: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gyre.cli.main", command, "--port", str(port), *extra],
            cwd=project,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(proc)
        deadline = time.monotonic() + 60
        while True:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1)
                if ready.status_code == 200:
                    return proc
            except httpx.TransportError:
                ready = None
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait(10)
                answer = ready.text if ready is not None else "no answer"
                pytest.fail(f"gyre {command} did not become ready: {answer}")
            time.sleep(0.1)

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
