"""The platform the demo runs on: ``gyre up``'s server and controller, in this process.

The controller is :func:`gyre.cli.up.running_controller`, with the schedules sped up to the
demo's pace; the server is the app ``gyre up`` serves (:func:`gyre.api.app.create_app`,
configured by :func:`gyre.api.server.server_options`), on a free loopback port and a thread
of its own, because the demo's own thread drives the traffic and prints the timeline.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx

from gyre.config import Settings
from gyre.controller import Controller, Schedule
from gyre.demo.pace import Pace
from gyre.errors import BackendUnavailable

START_TIMEOUT_S = 30.0


def schedules(pace: Pace) -> list[Schedule]:
    """The controller's schedules, with alert rules and rollouts checked at the demo's pace."""
    from gyre.controller.builtin import default_schedules
    from gyre.controller.deployments import DEPLOYMENTS_SCHEDULE, deployments_schedule

    kept = [
        s
        for s in default_schedules(monitor_every=timedelta(seconds=pace.monitor_every_s))
        if s.name != DEPLOYMENTS_SCHEDULE
    ]
    return [*kept, deployments_schedule(timedelta(seconds=pace.deployments_every_s))]


@contextlib.contextmanager
def controller_running(pace: Pace) -> Iterator[Controller]:
    """The project's controller, as ``gyre up`` runs it, on the demo's schedules."""
    from gyre.cli.up import running_controller

    with running_controller(schedules=schedules(pace), poll_interval=0.2) as controller:
        yield controller


@contextlib.contextmanager
def serving(settings: Settings) -> Iterator[str]:
    """The API, ingestion and prediction endpoints on a free loopback port; yields the base URL.

    On exit the server stops as on Ctrl-C: acknowledged records and logged predictions are
    committed to the lake.
    """
    import uvicorn

    from gyre.api.app import create_app
    from gyre.api.server import server_options

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # log_config=None: uvicorn's messages go where the demo's logging sends them, not to the terminal.
    options = {**server_options("127.0.0.1", port, log_level="warning"), "log_config": None}
    server = uvicorn.Server(uvicorn.Config(create_app(settings), **options))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="gyre-demo-server", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise BackendUnavailable("The demo's server did not start; run 'gyre demo --debug' to see why.")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def wait_ready(base_url: str, timeout_s: float) -> None:
    """Wait until ``/readyz`` says every endpoint's model is loaded."""
    deadline = time.monotonic() + timeout_s
    answer = ""
    while time.monotonic() < deadline:
        r = httpx.get(f"{base_url}/readyz", timeout=5)
        if r.status_code == 200:
            return
        answer = r.text
        time.sleep(0.1)
    raise BackendUnavailable(f"The server did not become ready within {timeout_s:.0f} s: {answer[:500]}")


@contextlib.contextmanager
def logging_to(path: Path) -> Iterator[None]:
    """Send the platform's log (alerts, pipeline runs, server errors) to ``path`` rather than
    the terminal, where the timeline is."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    # The traffic's own HTTP client would log every request.
    quiet = [logging.getLogger(name) for name in ("httpx", "httpcore")]
    levels = [(logger, logger.level) for logger in (root, *quiet)]
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    for logger in quiet:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        root.removeHandler(handler)
        for logger, level in levels:
            logger.setLevel(level)
        handler.close()


@contextlib.contextmanager
def inside(folder: Path) -> Iterator[None]:
    """Work in ``folder`` with no ``GYRE_*`` variable in the environment (restored after).

    The demo's project keeps its own embedded stores: a ``GYRE_BACKENDS_METADATA`` or
    ``GYRE_SERVER_URL`` of the user's shell must not send the demo's data elsewhere. Pipeline
    workers inherit both the folder and the environment.
    """
    saved = {k: v for k, v in os.environ.items() if k.startswith("GYRE_")}
    previous = Path.cwd()
    for k in saved:
        del os.environ[k]
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(previous)
        os.environ.update(saved)
