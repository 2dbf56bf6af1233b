"""``gyre serve``: its options reach ``run_server``; an open bind is refused."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import Result

Invoke = Callable[..., Result]  # the `cli` fixture


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []

    def fake_run_server(settings: Any, host: str = "127.0.0.1", port: int = 8080, **kwargs: Any) -> None:
        seen.append({"root": settings.root, "host": host, "port": port, **kwargs})

    monkeypatch.setattr("gyre.api.server.run_server", fake_run_server)
    return seen


def test_serve_defaults_come_from_settings(cli: Invoke, project: Path, calls: list[dict[str, Any]]) -> None:
    result = cli("serve", env={"GYRE_SERVER_PORT": "9123", "GYRE_SERVER_TOKEN": "t0k"})
    assert result.exit_code == 0, result.output
    assert calls == [
        {
            "root": project,
            "host": "127.0.0.1",
            "port": 9123,
            "token": "t0k",
            "allow_no_auth": False,
            "workers": 1,
            "access_log": False,
        }
    ]


def test_serve_flags_win(cli: Invoke, project: Path, calls: list[dict[str, Any]]) -> None:
    flags = ["--host", "0.0.0.0", "--port", "9000", "--no-auth", "--workers", "3", "--access-log"]
    result = cli("serve", *flags)
    assert result.exit_code == 0, result.output
    assert calls[0] | {"root": None} == {
        "root": None, "host": "0.0.0.0", "port": 9000, "token": None, "allow_no_auth": True, "workers": 3,
        "access_log": True,
    }  # fmt: skip


@pytest.mark.timeout(60)  # if the refusal ever broke, the server would start and block
def test_serve_refuses_an_open_bind_without_a_token(cli: Invoke, project: Path) -> None:
    result = cli("serve", "--host", "0.0.0.0", "--port", "1")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: Refusing to serve 0.0.0.0 without authentication")
    assert len(result.stderr.splitlines()) == 1
