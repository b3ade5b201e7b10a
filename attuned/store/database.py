"""One database handle: engine set-up per backend, migrations, read and write transactions.

SQLite needs care that PostgreSQL does not: WAL for concurrent readers, `foreign_keys=ON` on
every connection (or ON DELETE CASCADE silently does nothing), and `BEGIN IMMEDIATE` for
writes (a plain BEGIN that reads then writes fails with "database is locked" under load).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlmodel import Session

from attuned.report.log import Event, get_logger

if TYPE_CHECKING:  # alembic costs 11 MiB of RSS: imported only when the schema must change
    from alembic.config import Config as AlembicConfig

MIGRATIONS = Path(__file__).parent / "migrations"
_BEGIN_OPTION = "attuned_sqlite_begin"
# the newest migration under MIGRATIONS (tests/store/test_database.py checks it); lets a start
# on an up-to-date schema skip alembic altogether
HEAD_REVISION = "0003"


def _sqlite_engine(url: str, busy_timeout: float) -> Engine:
    parsed = make_url(url)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": busy_timeout})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # take transaction control from pysqlite so that BEGIN can be IMMEDIATE
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        mode = connection.get_execution_options().get(_BEGIN_OPTION, "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")

    return engine


def make_engine(url: str, busy_timeout: float = 30.0) -> Engine:
    if url.startswith("sqlite"):
        return _sqlite_engine(url, busy_timeout)
    # a connect that hangs for minutes would outlast the systemd watchdog: fail, retry later
    return create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 10})


class Database:
    """The attuned database at `url`; `write()` is the only way to change it."""

    def __init__(self, url: str, *, busy_timeout: float = 30.0) -> None:
        self.url = url
        self.engine = make_engine(url, busy_timeout)
        self._writer = self.engine.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"})

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    def migrate(self, revision: str = "head") -> None:
        """Bring the schema to `revision` (alembic); safe to call on every start."""
        before = self.current_revision()
        if revision in ("head", HEAD_REVISION) and before == HEAD_REVISION:
            return
        from alembic import command

        with self.engine.begin() as connection:
            command.upgrade(self.alembic_config(connection), revision)
        after = self.current_revision()
        if after != before:
            get_logger().info(Event.DB_MIGRATED, previous=before, revision=after)

    def downgrade(self, revision: str) -> None:
        """Undo migrations down to `revision` ("base": an empty schema); for rollbacks."""
        from alembic import command

        with self.engine.begin() as connection:
            command.downgrade(self.alembic_config(connection), revision)

    def current_revision(self) -> str | None:
        """The schema's revision (alembic's one-row table, read without alembic); None when
        the database is empty."""
        with self.engine.connect() as connection:
            if not inspect(connection).has_table("alembic_version"):
                return None
            value = connection.exec_driver_sql("SELECT version_num FROM alembic_version")
            return value.scalar()

    def head_revision(self) -> str | None:
        """The newest revision this version of attuned ships."""
        from alembic.script import ScriptDirectory

        return ScriptDirectory.from_config(self.alembic_config()).get_current_head()

    def alembic_config(self, connection: Any = None) -> AlembicConfig:
        from alembic.config import Config as AlembicConfig

        config = AlembicConfig()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        config.attributes["connection"] = connection
        return config

    @contextmanager
    def read(self) -> Iterator[Session]:
        with Session(self.engine) as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        with Session(self._writer, expire_on_commit=False) as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
