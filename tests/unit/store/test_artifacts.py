import hashlib
import io
import json
import os
import tracemalloc
from pathlib import Path

import pytest

from gyre.errors import CorruptArtifact, InvalidArgument, NotFound
from gyre.store import ArtifactStore, check_relative_path


def corrupt(store: ArtifactStore, digest: str) -> None:
    """Change the stored bytes behind a digest, as bit rot or tampering would."""
    key = store.blob_key(digest)
    data = store.fs.cat_file(key)
    store.fs.pipe_file(key, b"X" + data[1:])


def test_file_round_trip_and_dedup(store: ArtifactStore, tmp_path: Path) -> None:
    src = tmp_path / "a.bin"
    src.write_bytes(os.urandom(3000))
    blob = store.put_file(src)
    assert blob.digest == hashlib.sha256(src.read_bytes()).hexdigest()
    assert blob.size == 3000
    assert store.put_file(src) == blob
    out = store.get_file(blob.digest, tmp_path / "out" / "a.bin")
    assert out.read_bytes() == src.read_bytes()


def test_stream_and_bytes(store: ArtifactStore) -> None:
    blob = store.put_stream(io.BytesIO(b"hello world"))
    assert store.put_bytes(b"hello world") == blob
    assert store.read_bytes(blob.digest) == b"hello world"


def test_tree_round_trip(store: ArtifactStore, tmp_path: Path) -> None:
    src = tmp_path / "pkg"
    (src / "sub").mkdir(parents=True)
    (src / "model.bin").write_bytes(b"m" * 100)
    (src / "sub" / "meta.json").write_text("{}")
    tree = store.put_tree(src)
    assert tree.size == 102
    assert [e.path for e in store.read_tree(tree.digest)] == ["model.bin", "sub/meta.json"]
    dest = store.get_tree(tree.digest, tmp_path / "copy")
    assert (dest / "model.bin").read_bytes() == b"m" * 100
    assert (dest / "sub" / "meta.json").read_text() == "{}"


def test_corruption_detected_on_read_names_the_artifact(store: ArtifactStore, tmp_path: Path) -> None:
    blob = store.put_bytes(b"precious model bytes")
    corrupt(store, blob.digest)
    with pytest.raises(CorruptArtifact, match="runs:/r1/model.bin is corrupt"):
        store.read_bytes(blob.digest, name="runs:/r1/model.bin")
    dest = tmp_path / "out.bin"
    with pytest.raises(CorruptArtifact):
        store.get_file(blob.digest, dest, name="model.bin")
    assert not dest.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".gyre-")]


def test_missing_blob_is_not_found(store: ArtifactStore) -> None:
    with pytest.raises(NotFound, match="missing"):
        store.read_bytes("0" * 64, name="model")


@pytest.mark.parametrize("bad", ["../x", "/etc/passwd", "a/../../b", "", "a\\b", "a//b", "./."[1:] + "/.."])
def test_paths_cannot_escape(bad: str) -> None:
    with pytest.raises(InvalidArgument):
        check_relative_path(bad)


def test_digest_keys_are_validated(store: ArtifactStore) -> None:
    for bad in ["../../etc/passwd", "ABC", "g" * 64]:
        with pytest.raises(InvalidArgument):
            store.blob_key(bad)


def test_a_manifest_with_an_escaping_path_is_refused(store: ArtifactStore, tmp_path: Path) -> None:
    file = store.put_bytes(b"x")
    manifest = {"format": "gyre-tree/1", "entries": [{"path": "../evil", "digest": file.digest, "size": 1}]}
    tree = store.put_bytes(json.dumps(manifest).encode())
    with pytest.raises(InvalidArgument, match="Invalid artifact path"):
        store.get_tree(tree.digest, tmp_path / "dest")
    assert not (tmp_path / "evil").exists()


def _peak_round_trip(store: ArtifactStore, folder: Path, mib: int) -> float:
    src = folder / f"big{mib}.bin"
    with open(src, "wb") as f:
        for _ in range(mib):
            f.write(os.urandom(1 << 20))
    tracemalloc.start()
    blob = store.put_file(src)
    store.get_file(blob.digest, folder / f"big{mib}.out")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert blob.size == mib << 20
    assert (folder / f"big{mib}.out").stat().st_size == mib << 20
    return peak / 2**20


def test_large_files_stream_with_memory_that_does_not_grow(store: ArtifactStore, tmp_path: Path) -> None:
    small = _peak_round_trip(store, tmp_path, 24)
    large = _peak_round_trip(store, tmp_path, 96)
    assert large < 64, f"peak {large:.1f} MiB for a 96 MiB file"
    assert large < small + 16, f"memory grew with size: {small:.1f} MiB -> {large:.1f} MiB"


def test_unknown_scheme() -> None:
    with pytest.raises(InvalidArgument, match="file:///path or s3://bucket/prefix"):
        ArtifactStore("ftp://x/y")


class _ShortReads(io.BytesIO):
    """A stream that returns fewer bytes than asked, as sockets and object stores may."""

    def read(self, size: int = -1) -> bytes:
        return super().read(min(size, 100) if size and size > 0 else size)


def test_short_reads_are_not_mistaken_for_the_end() -> None:
    from gyre.store.artifacts import VerifiedReader

    data = os.urandom(8000)
    reader = VerifiedReader(_ShortReads(data), hashlib.sha256(data).hexdigest(), "x")
    out = io.BytesIO()
    import shutil

    shutil.copyfileobj(reader, out, 1024)
    assert out.getvalue() == data


def test_non_finite_registry_metrics_round_trip(meta) -> None:  # type: ignore[no-untyped-def]
    import math

    from gyre.models import registry

    mv = registry.create_model_version(
        meta, "m", package_digest="a" * 64, flavor="sklearn", metrics={"auc": math.nan, "loss": math.inf}
    )
    got = registry.get_model_version(meta, "m", mv.version).metrics
    assert math.isnan(got["auc"]) and got["loss"] == math.inf
