"""``gyre up``: the whole platform in one process, on the project's stores."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Annotated

import typer

from gyre.cli.common import HostOption, PortOption

if TYPE_CHECKING:
    from gyre.controller import Controller, Schedule


@contextlib.contextmanager
def running_controller(
    *, enabled: bool = True, schedules: Sequence[Schedule] | None = None, poll_interval: float = 0.5
) -> Iterator[Controller]:
    """The project's controller running on a thread of its own until the block ends (what
    ``gyre up`` runs beside its server); ``gyre demo`` passes faster ``schedules``.

    On exit the controller finishes the event in hand and its pipeline runs are stopped.
    """
    import threading

    from gyre.cli.controller import open_controller

    stop = threading.Event()
    with open_controller(poll_interval) as controller:
        if schedules is not None:
            controller.schedules = list(schedules)
        thread = None
        if enabled:
            thread = threading.Thread(
                target=controller.run_forever, args=(stop,), name="gyre-controller", daemon=True
            )
            thread.start()
        try:
            yield controller
        finally:
            stop.set()
            if thread is not None:
                thread.join(timeout=30)


def up(
    host: HostOption = None,
    port: PortOption = None,
    no_controller: Annotated[
        bool, typer.Option("--no-controller", metavar="", help="Serve only; run 'gyre controller' elsewhere.")
    ] = False,
) -> None:
    """Start the platform: the API (with HTTP ingestion) and the controller, until Ctrl-C.

    Prints where everything is. Ctrl-C stops cleanly: pushed records are committed, the
    controller finishes the event in hand (or leaves it for the next start), and nothing
    acknowledged is lost.

    [bold]Examples:[/bold]
      gyre up
      GYRE_SERVER_TOKEN=s3cret gyre up --host 0.0.0.0
    """
    from gyre.api.server import api_keys_exist, check_bind, is_loopback, run_server
    from gyre.cli.output import err_console, kv_table
    from gyre.config import load_settings, mask_url_password

    settings = load_settings()
    host = host or settings.get("server", "host")
    port = port or settings.get("server", "port")
    token = settings.get("server", "token") or None
    check_bind(
        host, token, allow_no_auth=False, keys_exist=not is_loopback(host) and api_keys_exist(settings)
    )
    err = err_console()
    base = f"http://{host}:{port}"
    with running_controller(enabled=not no_controller) as controller:
        err.print(
            kv_table(
                [
                    ("API", f"{base}/api/v1  (docs: {base}/api/v1/docs)"),
                    ("predict", f"POST {base}/v1/endpoints/NAME/predict  (OIP: {base}/v2/models/NAME/infer)"),
                    ("ingest", f"POST {base}/v1/datasets/NAME/records"),
                    ("feedback", f"POST {base}/v1/feedback"),
                    ("health", f"{base}/healthz, {base}/readyz, {base}/metrics"),
                    ("metadata", mask_url_password(settings.metadata_url)),
                    ("store + lake", mask_url_password(settings.store_url)),
                    ("online features", mask_url_password(settings.online_url)),
                    (
                        "controller",
                        "off (--no-controller)"
                        if no_controller
                        else ", ".join(r.name for r in controller.reactions),
                    ),
                    (
                        "auth",
                        "none (loopback only)" if is_loopback(host) and not token else "API keys or token",
                    ),
                ],
                title=f"Gyre is up — project {settings.get('project', 'name')!r}; Ctrl-C to stop",
            )
        )
        run_server(settings, host=host, port=port, token=token, log_level="warning")
    err.print("Gyre stopped.")
