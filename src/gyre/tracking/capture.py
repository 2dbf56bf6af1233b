"""What a run records about where it ran: git commit and uncommitted changes, Python, packages, host."""

from __future__ import annotations

import functools
import hashlib
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path


def capture_environment(cwd: Path | None = None) -> dict[str, str | None]:
    """The run's provenance fields, each ``None`` where it cannot be known (e.g. no git)."""
    commit, diff_hash = _git_state(str(cwd or Path.cwd()))
    return {
        "git_commit": commit,
        "git_diff_hash": diff_hash,
        "python_version": sys.version.split()[0],
        "packages_hash": packages_hash(),
        "host": socket.gethostname(),
        "source": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:1000]
        if sys.argv and sys.argv[0]
        else None,
    }


@functools.cache
def packages_hash() -> str:
    """sha256 of the sorted ``name==version`` list of installed distributions (cached per process)."""
    names = sorted(f"{(d.metadata['Name'] or '').lower()}=={d.version}" for d in metadata.distributions())
    return hashlib.sha256("\n".join(names).encode()).hexdigest()


def _git_state(cwd: str) -> tuple[str | None, str | None]:
    head = _git(cwd, "rev-parse", "HEAD")
    if head is None:
        return None, None
    commit = head.decode().strip()
    # Uncommitted changes: tracked diffs and the names + contents of untracked files.
    diff = _git(cwd, "diff", "HEAD", "--binary") or b""
    untracked = _git(cwd, "ls-files", "--others", "--exclude-standard", "-z") or b""
    if not diff and not untracked:
        return commit, None
    h = hashlib.sha256(diff)
    for name in sorted(filter(None, untracked.split(b"\0"))):
        h.update(name)
        path = Path(cwd) / name.decode()
        try:
            size = path.stat().st_size
            # Large untracked files (data, checkpoints) count by size, not by reading them.
            h.update(path.read_bytes() if size <= 1 << 20 else str(size).encode())
        except OSError:  # vanished or unreadable since listing; its name still counts
            pass
    return commit, h.hexdigest()


def _git(cwd: str, *args: str) -> bytes | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None
