"""The artifact store: content-addressed (sha256) blobs and directory trees over fsspec."""

from gyre.store.artifacts import ArtifactStore, Blob, TreeEntry, TreeStore, check_relative_path

__all__ = ["ArtifactStore", "Blob", "TreeEntry", "TreeStore", "check_relative_path"]
