"""gyre keys create | list | revoke."""

from __future__ import annotations

import json
from pathlib import Path


def test_create_list_revoke(cli, project: Path) -> None:  # type: ignore[no-untyped-def]
    created = cli("keys", "create", "--name", "fraud-service", "--role", "predictor", "--rate", "100/s")
    assert created.exit_code == 0
    key = created.stdout.strip()
    assert key.startswith("gyre_") and "not shown again" in created.stderr
    listed = json.loads(cli("keys", "list", "--json").stdout)
    assert [(k["name"], k["role"], k["rate_per_s"]) for k in listed] == [
        ("fraud-service", "predictor", 100.0)
    ]
    assert key.split("_", 2)[2] not in cli("keys", "list").stdout  # the secret is never shown again
    revoked = cli("keys", "revoke", listed[0]["id"])
    assert revoked.exit_code == 0 and "Revoked" in revoked.stdout
    assert json.loads(cli("keys", "list", "--json").stdout) == []
    assert len(json.loads(cli("keys", "list", "--all", "--json").stdout)) == 1


def test_bad_input_is_explained(cli, project: Path) -> None:  # type: ignore[no-untyped-def]
    bad_role = cli("keys", "create", "--name", "x", "--role", "viewr")
    assert bad_role.exit_code == 1 and "Did you mean 'viewer'" in bad_role.stderr
    bad_rate = cli("keys", "create", "--name", "x", "--role", "viewer", "--rate", "lots")
    assert bad_rate.exit_code == 1 and "100/s" in bad_rate.stderr
    missing = cli("keys", "revoke", "nope")
    assert missing.exit_code == 1 and "gyre keys list" in missing.stderr
