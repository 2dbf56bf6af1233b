"""One in-process DuckDB database per process, for the feature store's joins and groupings.

Opening a DuckDB database costs 10-30 ms (buffers, a thread pool), more than many of the
queries run on it; a cursor on an open one costs microseconds. Every use takes a cursor of
its own and closes it: tables registered on a cursor are visible to that cursor only, so
concurrent calls never see each other's. No extensions are loaded (data arrives as Arrow).
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb

_lock = threading.Lock()
_database: tuple[int, duckdb.DuckDBPyConnection] | None = None


def cursor() -> duckdb.DuckDBPyConnection:
    """A new connection to this process's in-memory DuckDB database; close it after use."""
    global _database
    import duckdb  # imported here: `import gyre` need not load DuckDB

    with _lock:
        # A forked child opens its own: DuckDB's threads and locks do not survive a fork.
        if _database is None or _database[0] != os.getpid():
            _database = (os.getpid(), duckdb.connect())
        return _database[1].cursor()
