"""gyre ingest --from: the options, and errors that are one line and change nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from gyre.data.lake import Lake


def test_help_describes_stream_ingest(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("ingest", "--help", env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for option in ("--from", "--stream", "--durable", "--batch", "--max-wait", "--id-field", "--follow"):
        assert option in result.stdout
    assert "nats://" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "nats://127.0.0.1:4222"], "names no subject"),
        (["--from", "http://127.0.0.1:4222/events"], "Unsupported stream URL"),
        (["--from", "nats://127.0.0.1:4222/events", "data.csv"], "not both"),
        ([], "Name the files to ingest"),
        (["data.csv", "--follow"], "--follow/--no-follow apply only"),
        (["data.csv", "--id-field", "id"], "--id-field apply only"),
        (["--from", "nats://127.0.0.1:4222/events", "--keys", "id"], "--id-field names the record id"),
    ],
)
def test_errors_are_one_line(cli, project: Path, args: list[str], message: str) -> None:  # type: ignore[no-untyped-def]
    result = cli("ingest", "events", *args)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert "Traceback" not in result.stderr
    assert not Lake(f"file://{project / '.gyre' / 'store'}").exists("events")


def test_a_new_dataset_needs_an_id_field(cli, project: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli("ingest", "events", "--from", "nats://127.0.0.1:1/events")
    assert result.exit_code == 1 and "--id-field" in result.stderr
