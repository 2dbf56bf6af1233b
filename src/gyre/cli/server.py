"""``gyre serve``: run the server on this project's stores: the control-plane API and the
prediction endpoints, on one port."""

from __future__ import annotations

from typing import Annotated

import typer

from gyre.cli.common import HostOption, PortOption


def serve(
    host: HostOption = None,
    port: PortOption = None,
    token: Annotated[
        str | None,
        typer.Option(
            metavar="TOKEN",
            help="Bearer token clients must send. Default: \\[server] token (GYRE_SERVER_TOKEN); "
            "prefer the variable, so the token stays out of shell history and ps.",
            show_default=False,
        ),
    ] = None,
    no_auth: Annotated[
        bool,
        typer.Option(
            "--no-auth",
            metavar="",
            help="Serve without authentication even on a non-loopback address (trusted networks only).",
        ),
    ] = False,
    workers: Annotated[int, typer.Option(metavar="N", min=1, help="Worker processes.")] = 1,
    access_log: Annotated[
        bool,
        typer.Option(
            "--access-log",
            metavar="",
            help="Log a line per request (off: every prediction is in the prediction log, and "
            "/metrics counts requests).",
        ),
    ] = False,
) -> None:
    """Serve predictions from every applied gyre.Endpoint, and the Gyre API (experiments, runs, models).

    Endpoints answer POST /v1/endpoints/NAME/predict (Gyre JSON), /v1/endpoints/NAME/invocations
    (MLflow) and /v2/models/NAME/infer (Open Inference Protocol); every prediction is logged to
    the dataset 'predictions'. Models load at start; /readyz says which endpoint is not ready
    and why. SDK clients reach the API with GYRE_SERVER_URL=http://HOST:PORT (and
    GYRE_SERVER_TOKEN). Listening on anything but loopback turns authentication on: it needs an
    API key ('gyre keys create') or a token, or --no-auth.

    [bold]Examples:[/bold]
      gyre serve
      GYRE_SERVER_TOKEN=s3cret gyre serve --host 0.0.0.0 --port 8080 --workers 4
    """
    # Imported here: the server pulls in FastAPI and uvicorn, which other commands never need.
    from gyre.api.server import run_server
    from gyre.config import load_settings

    settings = load_settings()
    run_server(
        settings,
        host=host or settings.get("server", "host"),
        port=port or settings.get("server", "port"),
        token=token or settings.get("server", "token") or None,
        allow_no_auth=no_auth,
        workers=workers,
        access_log=access_log,
    )
