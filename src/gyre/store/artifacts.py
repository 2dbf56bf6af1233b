"""Content-addressed artifact store over fsspec: blobs by sha256 and directory trees by manifest.

Layout under the store's root::

    blobs/sha256/ab/abcdef…   one object per distinct content
    tmp/                      local uploads in flight (renamed into place when complete)

A tree (a directory: a model package, a dataset snapshot) is stored as its files' blobs plus
a JSON manifest blob listing ``path -> digest, size``; the tree's digest is the manifest's.
Every read is verified against the digest. Keys are digests, and tree paths are checked,
so nothing read or written can escape the root.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from gyre.errors import BackendUnavailable, CorruptArtifact, InvalidArgument, NotFound

CHUNK = 1 << 20  # 1 MiB: streams never hold a whole file in memory
S3_PART = 8 << 20
TREE_FORMAT = "gyre-tree/1"
_DIGEST = re.compile(r"^[0-9a-f]{64}$")

# Backends by URL scheme, with the extra that installs the driver.
BACKENDS: dict[str, str | None] = {"file": None, "s3": "s3"}


@dataclass(frozen=True)
class Blob:
    digest: str
    size: int


@dataclass(frozen=True)
class TreeEntry:
    path: str
    digest: str
    size: int


class TreeStore(ABC):
    """Directory trees on top of any blob store that has ``put_file``, ``put_bytes``,
    ``read_bytes`` and ``get_file`` (the local/S3 store here, the API client's remote store)."""

    @abstractmethod
    def put_file(self, path: str | os.PathLike[str]) -> Blob:
        """See :class:`ArtifactStore`."""

    @abstractmethod
    def put_bytes(self, data: bytes) -> Blob:
        """See :class:`ArtifactStore`."""

    @abstractmethod
    def read_bytes(self, digest: str, name: str | None = None) -> bytes:
        """See :class:`ArtifactStore`."""

    @abstractmethod
    def get_file(self, digest: str, dest: str | os.PathLike[str], name: str | None = None) -> Path:
        """See :class:`ArtifactStore`."""

    def put_tree(self, directory: str | os.PathLike[str]) -> Blob:
        """Store every file under ``directory`` and a manifest; returns the manifest's blob.

        The returned size is the sum of the files' sizes.
        """
        directory = Path(directory)
        if not directory.is_dir():
            raise NotFound(f"No directory at {directory}: pass the path of an existing directory.")
        entries = []
        for file in sorted(p for p in directory.rglob("*") if p.is_file()):
            blob = self.put_file(file)
            entries.append(TreeEntry(file.relative_to(directory).as_posix(), blob.digest, blob.size))
        manifest = {"format": TREE_FORMAT, "entries": [e.__dict__ for e in entries]}
        blob = self.put_bytes(json.dumps(manifest, sort_keys=True).encode())
        return Blob(blob.digest, sum(e.size for e in entries))

    def read_tree(self, digest: str, name: str | None = None) -> list[TreeEntry]:
        """The entries of a stored tree, each path checked to stay inside the tree."""
        try:
            manifest = json.loads(self.read_bytes(digest, name))
        except (ValueError, UnicodeDecodeError):
            raise InvalidArgument(f"Artifact {name or digest} is not a directory tree.") from None
        if not isinstance(manifest, dict) or manifest.get("format") != TREE_FORMAT:
            raise InvalidArgument(f"Artifact {name or digest} is not a directory tree.")
        entries = [TreeEntry(**e) for e in manifest["entries"]]
        for entry in entries:
            check_relative_path(entry.path)
        return entries

    def get_tree(self, digest: str, dest: str | os.PathLike[str], name: str | None = None) -> Path:
        """Download a tree into ``dest`` (created), verifying every file."""
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        root = dest.resolve()
        for entry in self.read_tree(digest, name):
            target = (root / entry.path).resolve()
            if not target.is_relative_to(root):
                raise InvalidArgument(f"Artifact {name or digest} has a path that escapes it: {entry.path}")
            self.get_file(entry.digest, target, name=f"{name or digest}/{entry.path}")
        return dest


class ArtifactStore(TreeStore):
    """Content-addressed blobs and trees on a local folder (``file://``) or S3 (``s3://bucket/prefix``).

    S3 credentials and endpoint come from the usual AWS settings (``AWS_ACCESS_KEY_ID``,
    ``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL`` for an S3-compatible server).
    """

    def __init__(self, url: str) -> None:
        self.url = url
        scheme, _, rest = url.partition("://")
        if scheme not in BACKENDS or not rest:
            raise InvalidArgument(
                f"Unsupported artifact store URL {url!r}; use file:///path or s3://bucket/prefix."
            )
        self.scheme = scheme
        self.fs = _filesystem(scheme)
        self.root = rest.rstrip("/")
        if scheme == "file":
            Path(self.root).mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"ArtifactStore({self.url!r})"

    # -- blobs ---------------------------------------------------------------------

    def blob_key(self, digest: str) -> str:
        _check_digest(digest)
        return f"{self.root}/blobs/sha256/{digest[:2]}/{digest}"

    def exists(self, digest: str) -> bool:
        return self._call(self.fs.exists, self.blob_key(digest))

    def put_file(self, path: str | os.PathLike[str]) -> Blob:
        """Store a local file (streamed; stored once however often it is put)."""
        path = Path(path)
        if not path.is_file():
            raise NotFound(f"No file at {path}: pass the path of an existing file.")
        digest, size = hash_file(path)
        if not self.exists(digest):
            self._upload(path, self.blob_key(digest))
        return Blob(digest, size)

    def put_stream(self, stream: IO[bytes]) -> Blob:
        """Store bytes read from ``stream``, spooled to a temporary file (bounded memory)."""
        with tempfile.NamedTemporaryFile(prefix="gyre-upload-", delete=False) as tmp:
            try:
                shutil.copyfileobj(stream, tmp, CHUNK)
                tmp.close()
                return self.put_file(tmp.name)
            finally:
                os.unlink(tmp.name)

    def put_bytes(self, data: bytes) -> Blob:
        digest = hashlib.sha256(data).hexdigest()
        key = self.blob_key(digest)
        if not self.exists(digest):
            if self.scheme == "file":
                self._atomic_local_write(key, lambda f: f.write(data))
            else:
                self._call(self.fs.pipe_file, key, data)
        return Blob(digest, len(data))

    def open(self, digest: str, name: str | None = None) -> VerifiedReader:
        """Open a blob for streaming reads; reaching its end verifies the digest."""
        key = self.blob_key(digest)
        try:
            if self.scheme == "file":
                handle = self._call(self.fs.open, key, "rb")
            else:  # read ahead in parts of S3_PART, not s3fs's default 50 MiB blocks
                handle = self._call(
                    lambda: self.fs.open(key, "rb", block_size=S3_PART, cache_type="readahead")
                )
        except FileNotFoundError:
            raise NotFound(f"Artifact {name or digest} is missing from {self.url} (blob {digest}).") from None
        return VerifiedReader(handle, digest, name or digest)

    def read_bytes(self, digest: str, name: str | None = None) -> bytes:
        with self.open(digest, name) as reader:
            return reader.read()

    def get_file(self, digest: str, dest: str | os.PathLike[str], name: str | None = None) -> Path:
        """Download a blob to ``dest``; on a digest mismatch nothing is left at ``dest``."""
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".gyre-", dir=dest.parent)
        try:
            with os.fdopen(fd, "wb") as out, self.open(digest, name) as reader:
                shutil.copyfileobj(reader, out, CHUNK)
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return dest

    # -- internals -------------------------------------------------------------------

    def _upload(self, path: Path, key: str) -> None:
        if self.scheme == "file":

            def copy(out: IO[bytes]) -> None:
                with open(path, "rb") as src:
                    shutil.copyfileobj(src, out, CHUNK)

            self._atomic_local_write(key, copy)
        else:
            # An S3 PUT (or multipart upload) becomes visible whole or not at all. s3fs would
            # hold ten 50 MiB parts in memory at once; two 8 MiB parts keep uploads bounded.
            self._call(lambda: self.fs.put_file(str(path), key, chunksize=S3_PART, max_concurrency=2))

    def _atomic_local_write(self, key: str, write: Any) -> None:
        final = Path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp_dir = Path(self.root) / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=tmp_dir)
        try:
            with os.fdopen(fd, "wb") as out:
                write(out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, final)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _call(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except (FileNotFoundError, NotFound, CorruptArtifact):
            raise
        except (PermissionError, OSError) as exc:
            if self.scheme == "file":
                raise
            raise BackendUnavailable(
                f"Cannot reach the artifact store {self.url}: {exc}. Check [backends] store and "
                "the AWS_* credentials and endpoint."
            ) from exc


class VerifiedReader:
    """A file-like reader that hashes what it reads and checks the digest at the end."""

    def __init__(self, handle: IO[bytes], digest: str, name: str) -> None:
        self._handle = handle
        self._hash = hashlib.sha256()
        self._digest = digest
        self._name = name
        self._done = False

    def read(self, size: int = -1) -> bytes:
        chunk = self._handle.read(size)
        self._hash.update(chunk)
        # Only an empty read (or a read-all) is the end: a network stream may return less
        # than asked mid-way, and what follows must reach the caller, not just the hash.
        if not chunk or size < 0:
            self._verify()
        return chunk

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(CHUNK):
            yield chunk

    def _verify(self) -> None:
        if self._done:
            return
        # A short read is not always the end (network streams); make sure nothing is left.
        while rest := self._handle.read(CHUNK):
            self._hash.update(rest)
        self._done = True
        if self._hash.hexdigest() != self._digest:
            raise CorruptArtifact(
                f"Artifact {self._name} is corrupt: its bytes no longer match digest {self._digest}. "
                "Restore it from a backup or log it again."
            )

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> VerifiedReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_relative_path(path: str) -> str:
    """Refuse artifact paths that are absolute, empty, or climb out with ``..``."""
    pure = PurePosixPath(path)
    if (
        not path
        or "\\" in path
        or "\x00" in path
        or pure.is_absolute()
        or any(part in {"..", ""} for part in path.split("/"))
    ):
        raise InvalidArgument(
            f"Invalid artifact path {path!r}: use a relative path like 'plots/roc.png' "
            "without '..' or a leading '/'."
        )
    return pure.as_posix()


def _check_digest(digest: str) -> None:
    if not _DIGEST.match(digest):
        raise InvalidArgument(f"{digest!r} is not a sha256 digest (64 lowercase hex characters).")


def hash_file(path: Path) -> tuple[str, int]:
    """sha256 hex digest and size of a file, read in chunks."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def _filesystem(scheme: str) -> Any:
    extra = BACKENDS[scheme]
    try:
        if scheme == "file":
            from fsspec.implementations.local import LocalFileSystem

            return LocalFileSystem()
        import s3fs

        # Listings are cached by default; blobs are immutable but a fresh "exists" must be true.
        return s3fs.S3FileSystem(use_listings_cache=False)
    except ModuleNotFoundError:
        raise BackendUnavailable(
            f"The {scheme}:// artifact store needs `pip install 'gyre-ml[{extra}]'`."
        ) from None
