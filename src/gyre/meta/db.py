"""The metadata store: engine setup, the unit of work, and the schema revision check.

One code path serves SQLite and PostgreSQL. On SQLite the store runs in WAL mode with
a busy timeout, and write transactions start with ``BEGIN IMMEDIATE`` so that several
processes writing at once queue for the lock instead of failing with "database is
locked" when a reader tries to upgrade to a writer.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session

from gyre.errors import AlreadyExists, BackendUnavailable, GyreError, InvalidArgument, SchemaOutdated
from gyre.ids import new_id, utcnow
from gyre.meta.dialects import SqlDialect, dialect_for
from gyre.meta.schema import AuditRecord, Event

# The newest Alembic revision this Gyre knows; a test checks it equals the scripts' head.
SCHEMA_REVISION = "0008"

SQLITE_BUSY_TIMEOUT_MS = 60_000


class UnitOfWork:
    """One transaction. ``record`` writes the outbox event and the audit row with the change."""

    def __init__(self, session: Session, actor: str) -> None:
        self.session = session
        self.actor = actor
        self.after_commit: list[Callable[[], None]] = []
        """Called, in order, once this transaction has committed (not if it rolls back): for
        work with transactions of its own, which must not wait on this one's locks."""

    def record(
        self,
        event_type: str,
        subject: str,
        payload: dict[str, Any] | None = None,
    ) -> None:
        """Write one ``events`` row and one ``audit`` row in this transaction."""
        now = utcnow()
        payload = payload or {}
        self.session.add(
            Event(id=new_id(), type=event_type, subject=subject, payload=payload, created_at=now)
        )
        self.session.add(
            AuditRecord(
                id=new_id(),
                at=now,
                actor=self.actor,
                action=event_type,
                subject=subject,
                details=payload,
            )
        )


class MetaStore:
    """Connection to the metadata database chosen by URL (``sqlite:///…`` or ``postgresql://…``)."""

    def __init__(self, url: str, *, actor: str = "gyre", migrate: bool = True) -> None:
        self.url = _normalise_url(url)
        self.actor = actor
        self.dialect: SqlDialect = dialect_for(self.url)
        self.engine = _create_engine(self.url, self.dialect)
        self._writer = self.engine.execution_options(gyre_write=True)
        self._checked = False
        self._check_lock = threading.Lock()
        self._migrate = migrate

    def __repr__(self) -> str:
        return f"MetaStore({self.engine.url.render_as_string(hide_password=True)!r})"

    def close(self) -> None:
        self.engine.dispose()

    def with_actor(self, actor: str) -> MetaStore:
        """This store (same engine and pool) recording ``actor`` as who made each change.

        Cheap enough to call per request: the API server records ``api:<caller>`` this way.
        """
        other = copy.copy(self)
        other.actor = actor
        return other

    # -- schema -------------------------------------------------------------------

    def ensure_schema(self) -> None:
        """Create the schema in an empty database; refuse one at an older revision."""
        if self._checked:
            return
        with self._check_lock:
            if self._checked:
                return
            with _translate_errors(self), self._writer.begin() as conn:
                self.dialect.lock_for_migration(conn)
                current = current_revision(conn)
                if current is None and self._migrate:
                    upgrade(conn)
                elif current is None:
                    raise SchemaOutdated(
                        f"The metadata database {self!r} has no Gyre schema. "
                        "Run 'gyre db upgrade' to create it."
                    )
                elif current != SCHEMA_REVISION:
                    raise SchemaOutdated(
                        f"The metadata database is at schema revision {current}, this Gyre needs "
                        f"{SCHEMA_REVISION}. Back it up, then run 'gyre db upgrade'."
                    )
            self._checked = True

    # -- transactions ---------------------------------------------------------------

    @contextmanager
    def write(self, actor: str | None = None) -> Iterator[UnitOfWork]:
        """A write transaction: commits on success, rolls back on error, maps driver errors."""
        self.ensure_schema()
        with (
            _translate_errors(self),
            Session(self._writer, expire_on_commit=False) as session,
            session.begin(),
        ):
            uow = UnitOfWork(session, actor or self.actor)
            yield uow
        for fn in uow.after_commit:
            fn()

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only transaction (a consistent snapshot on both dialects)."""
        self.ensure_schema()
        with (
            _translate_errors(self),
            Session(self.engine, expire_on_commit=False) as session,
            session.begin(),
        ):
            yield session


def current_revision(conn: Connection) -> str | None:
    if not inspect(conn).has_table("alembic_version"):
        return None
    return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def upgrade(conn: Connection, revision: str = "head") -> None:
    """Run the Alembic migrations on ``conn`` up to ``revision``."""
    from alembic import command

    command.upgrade(alembic_config(conn), revision)


def alembic_config(conn: Connection | None = None) -> Any:
    from importlib.resources import files

    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(files("gyre.meta") / "migrations"))
    cfg.attributes["connection"] = conn
    return cfg


def _normalise_url(url: str) -> str:
    # psycopg 3 is the one PostgreSQL driver Gyre supports; plain postgresql:// means it.
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def _create_engine(url: str, dialect: SqlDialect) -> Engine:
    try:
        engine = create_engine(url, **dialect.engine_options())
    except ModuleNotFoundError as exc:
        raise BackendUnavailable(
            f"The metadata URL {url.split('://')[0]}:// needs a driver that is not installed "
            f"({exc.name}). Run: pip install 'gyre-ml[postgres]'"
        ) from None
    except Exception as exc:
        raise InvalidArgument(f"Cannot use metadata URL {url!r}: {exc}") from None
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine)
    return engine


def _configure_sqlite(engine: Engine) -> None:
    database = engine.url.database
    if database and database != ":memory:":
        from pathlib import Path

        Path(database).parent.mkdir(parents=True, exist_ok=True)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Autocommit at the driver level: SQLAlchemy's "begin" hook below emits BEGIN itself.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA journal_mode = WAL")
        # NORMAL in WAL mode survives a killed process; only a power cut can lose the last commits.
        cur.execute("PRAGMA synchronous = NORMAL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("gyre_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


@contextmanager
def _translate_errors(store: MetaStore) -> Iterator[None]:
    try:
        yield
    except GyreError:
        raise
    except IntegrityError as exc:
        raise AlreadyExists(_integrity_message(exc)) from exc
    except (OperationalError, DBAPIError) as exc:
        if exc.connection_invalidated or _is_connect_error(exc):
            raise BackendUnavailable(
                f"Cannot reach the metadata database {store!r}: {_first_line(exc)}. "
                "Check that it is running and that [backends] metadata points at it."
            ) from exc
        raise


def _is_connect_error(exc: DBAPIError) -> bool:
    msg = str(exc.orig).lower()
    return any(
        s in msg
        for s in (
            "connection refused",
            "could not connect",
            "unable to open database",
            "connection failed",
            "does not exist",
        )
    )


def _integrity_message(exc: IntegrityError) -> str:
    return f"That already exists ({_first_line(exc)})."


def _first_line(exc: Exception) -> str:
    orig = getattr(exc, "orig", exc)
    return str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
