"""One database handle: engine set-up per backend, migrations, read and write transactions.

Two owners share it. Attune's tables (schema `attune`) are made by Attune's migrations on
PostgreSQL and by attuned on SQLite; attuned's own tables live in schema `attuned` with their
alembic version table (on SQLite, which has no schemas, both sets share the main database).

SQLite needs care that PostgreSQL does not: WAL for concurrent readers, `foreign_keys=ON` on
every connection (or ON DELETE CASCADE silently does nothing), and `BEGIN IMMEDIATE` for
writes (a plain BEGIN that reads then writes fails with "database is locked" under load).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, Table, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlmodel import Session, SQLModel

from attuned.errors import AttunedError
from attuned.report.log import Event, get_logger
from attuned.store import models
from attuned.store.attune import schema as attune_schema
from attuned.store.attune.tables import SCHEMA as ATTUNE_SCHEMA
from attuned.store.models import OWN_SCHEMA

if TYPE_CHECKING:  # alembic costs 11 MiB of RSS: imported only when the schema must change
    from alembic.config import Config as AlembicConfig

    from attuned.config import AttunedConfig

_VERSIONS = "alembic_version"


def own_tables() -> list[Table]:
    """attuned's own tables (the SQLModel metadata holds nothing else)."""
    return [t for t in SQLModel.metadata.sorted_tables if t.schema == models.OWN_SCHEMA]


MIGRATIONS = Path(__file__).parent / "migrations"
_BEGIN_OPTION = "attuned_sqlite_begin"
# the newest migration under MIGRATIONS (tests/store/test_database.py checks it); lets a start
# on an up-to-date schema skip alembic altogether
HEAD_REVISION = "0007"
# revisions of the layout before attuned wrote Attune's tables (own tables in `public`)
LEGACY_REVISIONS = frozenset({"0001", "0002", "0003"})
# SQLite has no schemas: Attune's tables and attuned's own share the one file
_NO_SCHEMAS = {OWN_SCHEMA: None, ATTUNE_SCHEMA: None}
# a cluster leader's fencing (attuned.cluster): called as a write transaction begins, returns
# the check to run in it right before COMMIT; the check raises to roll the transaction back
Fence = Callable[[], Callable[[Session], None]]


def _sqlite_engine(url: str, busy_timeout: float) -> Engine:
    parsed = make_url(url)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        connect_args={"timeout": busy_timeout},
        execution_options={"schema_translate_map": _NO_SCHEMAS},
    )

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


class Layout(StrEnum):
    """What `migrate` finds in a database."""

    FRESH = "fresh"  # no attuned tables at all
    LEGACY = "legacy"  # revisions 0001-0003: attuned's own pack tables, no Attune rows
    CURRENT = "current"  # attuned's own schema beside Attune's tables


class Database:
    """The database at `url`: Attune's tables plus attuned's own schema; `write()` is the
    only way to change it.

    `create_attune_tables`: on a PostgreSQL database without Attune's schema, create
    Attune-shaped tables instead of refusing (demos, tests); SQLite always creates them.
    """

    def __init__(
        self, url: str, *, busy_timeout: float = 30.0, create_attune_tables: bool = False
    ) -> None:
        self.url = url
        self.create_attune_tables = create_attune_tables
        self.engine = make_engine(url, busy_timeout)
        self._writer = self.engine.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"})
        self.fence: Fence | None = None  # set by a cluster node; None: every write commits

    @classmethod
    def from_config(cls, config: AttunedConfig) -> Database:
        return cls(
            config.database_url,
            busy_timeout=config.database.busy_timeout,
            create_attune_tables=config.database.create_attune_tables,
        )

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @property
    def may_create_attune_tables(self) -> bool:
        """SQLite's Attune tables are always attuned's to make; PostgreSQL's only on request."""
        return self.is_sqlite or self.create_attune_tables

    @property
    def own_schema(self) -> str | None:
        """Where attuned's tables and its alembic version table live (None: SQLite's main)."""
        return None if self.is_sqlite else OWN_SCHEMA

    @property
    def where(self) -> str:
        """The database, named for people (no credentials)."""
        return make_url(self.url).render_as_string(hide_password=True)

    def migrate(self, revision: str = "head", *, packs_dir: Path | None = None) -> None:
        """Bring both layers to `revision`; safe to call on every start.

        A fresh database gets the current layout at once (and Attune's tables where attuned
        may make them); one of the old layout (0001-0003) is converted by migration 0004
        (`packs_dir`: the pack store, whose links become Attune's `storage_path`).
        """
        with self._writer.begin() as connection:
            layout, before = self._layout(connection)
            at_head = layout is Layout.CURRENT and before == HEAD_REVISION
            if at_head and revision in ("head", HEAD_REVISION):
                attune_schema.ensure(
                    connection, may_create=self.may_create_attune_tables, where=self.where
                )
                return
            if layout is Layout.FRESH:
                self._create_fresh(connection)
            else:
                if layout is Layout.LEGACY and not self.is_sqlite:
                    connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {OWN_SCHEMA}"))
                    connection.execute(
                        text(f"ALTER TABLE public.{_VERSIONS} SET SCHEMA {OWN_SCHEMA}")
                    )
                from alembic import command

                config = self.alembic_config(connection)
                config.attributes["packs_dir"] = packs_dir
                command.upgrade(config, revision)
            after = self._version(connection)
        if after != before:
            get_logger().info(Event.DB_MIGRATED, previous=before, revision=after)

    def check(self) -> None:
        """Without migrating (`database.auto_migrate: false`): refuse to work on a schema
        that is not this version's, or next to an incomplete Attune schema."""
        with self.engine.connect() as connection:
            layout, revision = self._layout(connection)
            if layout is not Layout.CURRENT or revision != HEAD_REVISION:
                raise AttunedError(
                    f"{self.where}: attuned's schema is at revision {revision or 'none'}, this "
                    f"attuned needs {HEAD_REVISION}; run `attuned db upgrade` (or turn "
                    "database.auto_migrate on)"
                )
            attune_schema.ensure(connection, may_create=False, where=self.where)

    def _create_fresh(self, connection: Connection) -> None:
        attune_schema.ensure(connection, may_create=self.may_create_attune_tables, where=self.where)
        if not self.is_sqlite:
            connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {OWN_SCHEMA}"))
        SQLModel.metadata.create_all(connection, tables=own_tables())
        from alembic import command

        command.stamp(self.alembic_config(connection), "head")

    def _layout(self, connection: Connection) -> tuple[Layout, str | None]:
        version = self._version(connection)
        if version is not None:
            return (Layout.LEGACY if version in LEGACY_REVISIONS else Layout.CURRENT), version
        if not self.is_sqlite and inspect(connection).has_table(_VERSIONS, schema="public"):
            legacy = connection.execute(text("SELECT version_num FROM public.alembic_version"))
            return Layout.LEGACY, legacy.scalar()
        return Layout.FRESH, None

    def _version(self, connection: Connection) -> str | None:
        if not inspect(connection).has_table(_VERSIONS, schema=self.own_schema):
            return None
        table = f"{self.own_schema}.{_VERSIONS}" if self.own_schema else _VERSIONS
        return connection.execute(text(f"SELECT version_num FROM {table}")).scalar()  # noqa: S608

    def current_revision(self) -> str | None:
        """The schema's revision (alembic's one-row table, read without alembic); None when
        the database holds no attuned tables."""
        with self.engine.connect() as connection:
            return self._layout(connection)[1]

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
        config.attributes["own_schema"] = self.own_schema
        config.attributes["create_attune_tables"] = self.may_create_attune_tables
        config.attributes["where"] = self.where
        return config

    @contextmanager
    def read(self) -> Iterator[Session]:
        with Session(self.engine) as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back if it raises (or if
        the fence, checked in the transaction right before COMMIT, refuses it)."""
        with Session(self._writer, expire_on_commit=False) as session, session.begin():
            check = self.fence() if self.fence is not None else None
            yield session
            if check is not None:
                check(session)

    def dispose(self) -> None:
        self.engine.dispose()
