"""Run the control plane under uvicorn (httptools and uvloop when installed), secure by default.

Binding to anything but loopback needs a bearer token, or an explicit ``allow_no_auth``.
Every accepted connection gets ``TCP_NODELAY``: without it a response written in two parts
(headers, then body) waits for the client's delayed ACK on a reused connection, ~40 ms a
request. uvloop sets it itself, and asyncio only for listening sockets it created; uvicorn's
own socket (used with ``workers > 1``) has ``proto == 0``, which asyncio skips.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import logging
import os
import socket
from pathlib import Path
from typing import Any

import uvicorn

from gyre.api.app import DEFAULT_MAX_BLOB_SIZE, DEFAULT_MAX_BODY_SIZE, create_app
from gyre.config import Settings, Value
from gyre.errors import InvalidArgument

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _HttpProtocol
except ImportError:  # httptools is optional in uvicorn; h11 is always there
    from uvicorn.protocols.http.h11_impl import H11Protocol as _HttpProtocol  # type: ignore[assignment]

log = logging.getLogger(__name__)

KEEP_ALIVE_S = 30  # longer than the client's pool expiry, so the client closes idle connections first
_WORKER_ARGS = "_GYRE_API_WORKER_ARGS"  # how settings reach worker processes (spawned, not forked)


class NoDelayHttpProtocol(_HttpProtocol):
    """uvicorn's HTTP protocol, with ``TCP_NODELAY`` set on each accepted TCP connection."""

    def connection_made(self, transport: Any) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)


def run_server(
    settings: Settings,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    token: str | None = None,
    allow_no_auth: bool = False,
    workers: int = 1,
    log_level: str = "info",
    access_log: bool = False,
    max_blob_size: int = DEFAULT_MAX_BLOB_SIZE,
    max_body_size: int = DEFAULT_MAX_BODY_SIZE,
) -> None:
    """Serve the control-plane API until interrupted.

    Args:
        settings: the project whose metadata database and artifact store are served.
        host: interface to bind; anything but loopback needs ``token`` or ``allow_no_auth``.
        port: TCP port.
        token: bearer token clients must send; default ``[server] token`` / ``GYRE_SERVER_TOKEN``.
        allow_no_auth: serve a non-loopback interface without a token (say so on purpose).
        workers: server processes; one is enough for most teams and keeps memory small.
        log_level: uvicorn's log level (``debug``, ``info``, ``warning``, ``error``).
        access_log: a log line per request. Off by default: predictions are in the prediction
            log and /metrics counts requests, and a line per request cost ~10% of a
            single-connection prediction's time when measured.
        max_blob_size: largest artifact upload in bytes.
        max_body_size: largest other request body in bytes.

    Raises:
        InvalidArgument: a non-loopback ``host`` without a token and without ``allow_no_auth``.
    """
    token = token if token is not None else (settings.get("server", "token") or None)
    auth = bool(token) or not (is_loopback(host) or allow_no_auth)
    if auth and not token:
        check_bind(host, token, allow_no_auth, keys_exist=api_keys_exist(settings))
    if workers < 1:
        raise InvalidArgument(f"workers must be 1 or more, got {workers}.")
    limits: dict[str, Any] = {
        "max_blob_size": max_blob_size,
        "max_body_size": max_body_size,
        "auth": auth,
        "flush_process": True,
        "freeze_gc": True,
    }
    if workers == 1:
        app: Any = create_app(settings, token=token, **limits)
        factory = False
    else:
        # uvicorn starts workers by importing the app; they rebuild it from these arguments.
        os.environ[_WORKER_ARGS] = _encode_worker_args(settings, token, limits)
        app, factory = f"{__name__}:_worker_app", True
    log.info("Gyre API on http://%s:%s (%s)", host, port, "credentials required" if auth else "no auth")
    options = server_options(host, port, workers=workers, log_level=log_level, access_log=access_log)
    uvicorn.run(app, factory=factory, **options)


def server_options(
    host: str, port: int, *, workers: int = 1, log_level: str = "info", access_log: bool = False
) -> dict[str, Any]:
    """The uvicorn settings :func:`run_server` uses (tests start servers with the same ones)."""
    return {
        "host": host,
        "port": port,
        "workers": workers,
        "log_level": log_level,
        "access_log": access_log,
        "http": NoDelayHttpProtocol,
        "loop": "auto",
        "ws": "none",
        "lifespan": "on",
        "server_header": False,
        "timeout_keep_alive": KEEP_ALIVE_S,
        "proxy_headers": False,
    }


def check_bind(host: str, token: str | None, allow_no_auth: bool, *, keys_exist: bool = False) -> None:
    """Refuse to serve a non-loopback interface without credentials unless told to."""
    if token or keys_exist or allow_no_auth or is_loopback(host):
        return
    raise InvalidArgument(
        f"Refusing to serve {host} without authentication: anyone who can reach it could read and "
        "change every run and model. Create an API key ('gyre keys create --name NAME --role ROLE') "
        "or set GYRE_SERVER_TOKEN (or pass --token) to a secret clients send as a bearer token, "
        "bind to 127.0.0.1, or pass --no-auth to serve it open on purpose."
    )


def api_keys_exist(settings: Settings) -> bool:
    """Whether the project has an active API key (then a public bind needs no shared token)."""
    from gyre.api.keys import has_keys
    from gyre.meta import MetaStore

    meta = MetaStore(settings.metadata_url)
    try:
        return has_keys(meta)
    finally:
        meta.close()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name other than localhost: it may resolve to anything
        return False


def _encode_worker_args(settings: Settings, token: str | None, limits: dict[str, Any]) -> str:
    values = {f"{s}.{k}": v.value for (s, k), v in settings.values.items()}
    data = {"root": str(settings.root), "values": values, "token": token, "limits": limits}
    return base64.b64encode(json.dumps(data).encode()).decode()


def _worker_app() -> Any:
    data = json.loads(base64.b64decode(os.environ[_WORKER_ARGS]))
    values = {tuple(key.split(".", 1)): Value(v, "server") for key, v in data["values"].items()}
    settings = Settings(root=Path(data["root"]), config_file=None, values=values)
    return create_app(settings, token=data["token"], **data["limits"])
