"""The push buffer's flusher in a process of its own: ``python -m gyre.data.flusher``.

A server answering predictions spends its time in one event loop; a flusher thread beside it
(reading buffered records, building Arrow tables, committing to Delta and the catalog) takes
the GIL from that loop for milliseconds at a time, which shows as latency spikes and lost
throughput under load (measured: ~15-20% of requests/s at 8 connections). ``gyre serve`` and
``gyre up`` therefore flush from this process, which shares nothing with the server but the
buffer's files: it reads the segments, commits them and deletes those the lake holds, and never
appends; the file lock of :class:`~gyre.data.push.PushBuffer` keeps flushes one at a time.

It runs until its parent exits (checked every round, so a server killed with ``kill -9``
leaves no flusher behind; the next server recovers what is left) or it is sent SIGTERM, and
flushes once more before it exits. Its settings come in environment variables, so a database
password never shows in the process list.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

ENV_BUFFER = "GYRE_FLUSHER_BUFFER"
ENV_METADATA = "GYRE_FLUSHER_METADATA"
ENV_STORE = "GYRE_FLUSHER_STORE"
ENV_PARENT = "GYRE_FLUSHER_PARENT"
ENV_DELAY = "GYRE_FLUSHER_DELAY"
ENV_ROWS = "GYRE_FLUSHER_ROWS"

log = logging.getLogger(__name__)


def spawn(
    path: Path, metadata_url: str, store_url: str, *, max_rows: int, max_delay_s: float
) -> subprocess.Popen[bytes]:
    """Start a flusher process for the buffer at ``path``; it stops when this process exits."""
    env = {
        **os.environ,
        ENV_BUFFER: str(path),
        ENV_METADATA: metadata_url,
        ENV_STORE: store_url,
        ENV_PARENT: str(os.getpid()),
        ENV_DELAY: str(max_delay_s),
        ENV_ROWS: str(max_rows),
    }
    return subprocess.Popen([sys.executable, "-m", "gyre.data.flusher"], env=env, stdin=subprocess.DEVNULL)


def main() -> None:
    from gyre.data.lake import Lake
    from gyre.data.push import PushBuffer
    from gyre.meta import MetaStore

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s gyre.flusher: %(message)s")
    parent = int(os.environ[ENV_PARENT])
    delay = float(os.environ[ENV_DELAY])
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the server, which stops us
    meta = MetaStore(os.environ[ENV_METADATA], actor="push")
    buffer = PushBuffer(
        Path(os.environ[ENV_BUFFER]),
        meta,
        Lake(os.environ[ENV_STORE]),
        max_rows=int(os.environ[ENV_ROWS]),
        max_delay_s=delay,
    )
    try:
        while not stop.wait(delay):
            if os.getppid() != parent:  # the server is gone
                return
            try:
                buffer.flush()
            except Exception:  # the records stay buffered; the next round retries them
                log.exception("flushing pushed records failed; will retry")
        buffer.flush()
    finally:
        buffer.close_files()
        meta.close()


if __name__ == "__main__":
    main()
