"""The SDK end to end on the scale-out backends: PostgreSQL metadata and an S3 artifact store."""

from __future__ import annotations

from pathlib import Path

import pytest

from gyre.client.client import connect
from gyre.config import load_settings
from gyre.errors import CorruptArtifact

pytestmark = [pytest.mark.integration, pytest.mark.backend("postgres"), pytest.mark.backend("s3")]


def test_runs_and_artifacts_on_postgres_and_s3(pg_url: str, s3_url: str, tmp_path: Path) -> None:
    settings = load_settings(tmp_path, overrides={"backends": {"metadata": pg_url, "store": s3_url}})
    client = connect(settings=settings)
    try:
        (tmp_path / "weights.bin").write_bytes(b"w" * 10_000)
        with client.start_run("scale") as run:
            run.log_params({"p": 1})
            for i in range(100):
                run.log_metric("loss", 1 / (i + 1), step=i)
            art = run.log_artifact(tmp_path / "weights.bin")
        assert client.runs.get(run.id).metrics["loss"] == 0.01
        assert len(client.runs.metric_history(run.id, "loss")) == 100
        out = client.runs.download_artifact(run.id, "weights.bin", tmp_path / "back.bin")
        assert out.read_bytes() == b"w" * 10_000

        store = client.backend.store
        store.fs.pipe_file(store.blob_key(art.digest), b"tampered")
        with pytest.raises(CorruptArtifact, match="weights.bin"):
            client.runs.download_artifact(run.id, "weights.bin", tmp_path / "again.bin")
    finally:
        client.close()
