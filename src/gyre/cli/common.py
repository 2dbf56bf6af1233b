"""What every command group shares: the ``--json`` flag and opening a client."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from gyre.client.client import Client

HostOption = Annotated[
    str | None,
    typer.Option(
        metavar="ADDR", help="Address to listen on. Default: \\[server] host, 127.0.0.1.", show_default=False
    ),
]
PortOption = Annotated[
    int | None,
    typer.Option(
        metavar="PORT",
        min=1,
        max=65535,
        help="Port to listen on. Default: \\[server] port, 8080.",
        show_default=False,
    ),
]
ComputeOption = Annotated[
    str | None,
    typer.Option(
        "--compute",
        metavar="URL",
        help="Executor: local, ray:local, ray://host:port. Default: \\[backends] compute.",
    ),
]
JsonFlag = Annotated[
    bool,
    typer.Option("--json", metavar="", help="Print JSON to stdout instead of a table (for scripts and jq)."),
]


@contextmanager
def open_client() -> Iterator[Client]:
    """``gyre.connect()``: local stores from ``gyre.toml``, or the server in ``GYRE_SERVER_URL``."""
    import gyre

    client = gyre.connect()
    try:
        yield client
    finally:
        client.close()
