"""Database engines and migrations for SQLite (default) and PostgreSQL (production).

Engines are built from settings by the app factories, never at import time, so several
nodes and the hub can live in one process with separate databases.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from weakref import WeakKeyDictionary

from alembic import command
from alembic.config import Config
from sqlalchemy import DateTime, Dialect, Engine, TypeDecorator, create_engine, event
from sqlalchemy.engine import make_url
from sqlmodel import Session

# Limits that keep client input from failing inside SQL instead of being refused (422):
# the largest INTEGER on PostgreSQL (SQLite would take up to 2**63 - 1, then overflow the
# driver), a bound on OFFSET paging (deep offsets scan the table), and text without NUL,
# which PostgreSQL refuses in text columns.
MAX_ROW_ID = 2**31 - 1
MAX_OFFSET = 10_000
NO_NUL = r"^[^\x00]*$"


def normalise_url(url: str) -> str:
    """Use psycopg 3 for PostgreSQL whatever scheme the operator wrote."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def create_db_engine(url: str, *, sqlite_synchronous: str = "FULL") -> Engine:
    """An engine with the settings every store relies on.

    SQLite runs in WAL mode so readers never block the writer, with a busy timeout so
    concurrent request threads queue instead of failing; `synchronous=FULL` makes every
    acknowledged write survive a power cut, not only a process crash.
    """
    url = normalise_url(url)
    if make_url(url).get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection, _record) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={sqlite_synchronous}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return engine


# Alembic keeps the running migration context in module globals, so two apps starting in
# one process (the demo, the tests) must not migrate at the same time.
_MIGRATION_LOCK = threading.Lock()


def migrate(engine: Engine, script_location: Path) -> None:
    """Bring the schema to the newest Alembic revision."""
    with _MIGRATION_LOCK:
        _upgrade(engine, script_location)


def _upgrade(engine: Engine, script_location: Path) -> None:
    config = Config()
    config.set_main_option("script_location", str(script_location))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


_WRITE_GATES: WeakKeyDictionary[Engine, threading.Lock] = WeakKeyDictionary()


def write_gate(engine: Engine) -> AbstractContextManager[object]:
    """Hold while writing to SQLite, which takes one writer at a time.

    Threads then queue on a lock that hands over at once, instead of in SQLite's busy
    handler, which sleeps up to 100 ms between retries: with 32 concurrent creates that
    sleeping, not the work, set the node's write rate. PostgreSQL needs no gate.
    """
    if not is_sqlite(engine):
        return nullcontext()
    return _WRITE_GATES.setdefault(engine, threading.Lock())


@contextmanager
def session_scope(engine: Engine, *, write: bool = False) -> Iterator[Session]:
    """A session that commits on success and rolls back on error; `write` takes the gate."""
    with (
        write_gate(engine) if write else nullcontext(),
        Session(engine, expire_on_commit=False) as session,
    ):
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on every backend; SQLite would otherwise hand back naive values."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
