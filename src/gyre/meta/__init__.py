"""The metadata store: SQLAlchemy tables, the unit of work, the ``events`` outbox and ``audit`` log.

Alembic migrations own the schema; a fresh database is migrated on first use and an older
one asks for ``gyre db upgrade``.
"""

from gyre.meta.db import MetaStore, UnitOfWork

__all__ = ["MetaStore", "UnitOfWork"]
