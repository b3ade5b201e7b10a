"""The two layers of the database: Attune's tables (found, or made where allowed), attuned's
own schema (fresh, at head, or converted from the old layout), cascades and transactions."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import BLANK_SCHEMA, Connection, create_engine, inspect, select, text
from sqlmodel import SQLModel

from attuned.store import registered_packs, repository
from attuned.store.attune import schema as attune_schema
from attuned.store.attune import tables as t
from attuned.store.attune.schema import AttuneSchemaMissing
from attuned.store.database import HEAD_REVISION, Database, own_tables
from attuned.store.models import (
    ManagedPack,
    PackArchive,
    PackRevision,
    PackSuspension,
    TestRun,
)
from tests.attune_db import apply_schema


def _own_schema_diff(database: Database) -> list[object]:
    """alembic's comparison of attuned's models with attuned's tables in the database."""

    ours = {table.name for table in own_tables()}

    def include(obj: object, name: object, kind: str, _reflected: object, _cmp: object) -> bool:
        table = obj if kind == "table" else getattr(obj, "table", None)
        if table is None:
            return True
        return table.name in ours and getattr(table, "schema", None) in (database.own_schema, None)

    metadata = SQLModel.metadata
    if database.is_sqlite:  # no schemas there: compare a copy of the models without one
        from sqlalchemy import MetaData
        from sqlalchemy.sql.elements import conv

        metadata = MetaData()
        for table in own_tables():
            copy = table.to_metadata(
                metadata, schema=None, referred_schema_fn=lambda *_args: BLANK_SCHEMA
            )
            names = {tuple(i.columns.keys()): i.name for i in table.indexes}
            for index in copy.indexes:  # keep the names the models give (schema included)
                index.name = conv(names[tuple(index.columns.keys())])
    with database.engine.connect() as connection:
        context = MigrationContext.configure(
            connection,
            opts={
                "include_schemas": not database.is_sqlite,
                "include_object": include,
                "compare_type": True,
            },
        )
        return list(compare_metadata(context, metadata))


def test_a_fresh_database_gets_both_layers_at_head(database: Database) -> None:
    assert database.current_revision() == database.head_revision() == HEAD_REVISION
    assert _own_schema_diff(database) == []
    with database.engine.connect() as connection:
        assert attune_schema.missing_parts(connection) == []


def test_migrate_is_idempotent(database: Database) -> None:
    database.migrate()
    database.migrate()
    assert database.current_revision() == HEAD_REVISION


def test_a_start_on_an_up_to_date_schema_does_not_load_alembic(database: Database) -> None:
    """alembic is 11 MiB of the daemon's resident memory; it is needed only to change the
    schema."""
    code = (
        "import sys; from attuned.store.database import Database; "
        f"Database({database.url!r}).migrate(); print('alembic' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_attuned_keeps_its_own_tables_in_its_own_schema(postgres_url: str) -> None:
    database = Database(postgres_url)
    try:
        database.migrate()
        with database.engine.connect() as connection:
            names = inspect(connection).get_table_names(schema="attuned")
            public = inspect(connection).get_table_names(schema="public")
        assert set(names) == {
            "alembic_version",
            "managed_pack",
            "test_run",
            "pack_revision",
            "pack_suspension",
            "pack_archive",
            "outbox_event",
            "outbox_delivery",
            "test_case",
            "activation_provenance",
        }
        assert public == []  # nothing of attuned's lands beside other applications
    finally:
        database.dispose()


def test_postgres_without_attunes_schema_is_refused_with_the_fix(empty_postgres_url: str) -> None:
    database = Database(empty_postgres_url)
    try:
        with pytest.raises(AttuneSchemaMissing) as caught:
            database.migrate()
        message = str(caught.value)
        assert "has no Attune schema" in message and "create_attune_tables: true" in message
        assert "postgres@" not in message or ":" not in message.split("@")[0].split("//")[1]
        with database.engine.connect() as connection:  # refused before anything was made
            assert inspect(connection).get_schema_names().count("attuned") == 0
    finally:
        database.dispose()


def test_create_attune_tables_makes_them_on_an_empty_postgres(empty_postgres_url: str) -> None:
    database = Database(empty_postgres_url, create_attune_tables=True)
    try:
        database.migrate()
        with database.engine.connect() as connection:
            assert attune_schema.missing_parts(connection) == []
            views = inspect(connection).get_view_names(schema="attune")
        assert {"pack_test_summary", "pack_latest_test"} <= set(views)
    finally:
        database.dispose()


def test_a_partial_attune_schema_is_refused_naming_what_is_missing(
    attune_postgres_url: str,
) -> None:
    engine = create_engine(attune_postgres_url)
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE attune.action DROP COLUMN worker_affinity"))
    engine.dispose()
    database = Database(attune_postgres_url, create_attune_tables=True)
    try:
        with pytest.raises(AttuneSchemaMissing, match=r"lacks action\.worker_affinity"):
            database.migrate()
    finally:
        database.dispose()


def _attune_ddl(connection: Connection) -> list[tuple[object, ...]]:
    """Everything DDL decides about schema `attune`: columns, defaults, indexes, triggers."""
    columns = connection.execute(
        text(
            "SELECT table_name, column_name, data_type, column_default, is_nullable "
            "FROM information_schema.columns WHERE table_schema = 'attune' ORDER BY 1, 2"
        )
    ).all()
    indexes = connection.execute(
        text("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'attune' ORDER BY 1")
    ).all()
    triggers = connection.execute(
        text(
            "SELECT trigger_name, event_object_table FROM information_schema.triggers "
            "WHERE trigger_schema = 'attune' ORDER BY 1, 2"
        )
    ).all()
    return [*map(tuple, columns), *map(tuple, indexes), *map(tuple, triggers)]


def test_attuned_runs_no_ddl_on_attunes_tables(attune_postgres_url: str) -> None:
    engine = create_engine(attune_postgres_url)
    with engine.connect() as connection:
        before = _attune_ddl(connection)
    database = Database(attune_postgres_url)
    database.migrate()
    database.migrate()
    database.dispose()
    with engine.connect() as connection:
        assert _attune_ddl(connection) == before
    engine.dispose()


def test_sqlite_makes_the_same_tables_and_columns_as_attunes_migrations(
    tmp_path: Path, attune_postgres_url: str
) -> None:
    """The embedded default runs the same code on the same shapes."""
    sqlite = Database(f"sqlite:///{tmp_path / 'a.db'}")
    sqlite.migrate()
    with sqlite.engine.connect() as connection:
        made = {
            (table, str(row[1]))
            for table in (x.name for x in t.metadata.sorted_tables)
            for row in connection.exec_driver_sql(f'PRAGMA table_info("{table}")')
        }
    sqlite.dispose()
    engine = create_engine(attune_postgres_url)
    with engine.connect() as connection:
        real = {
            (str(table), str(column))
            for table, column in connection.execute(
                text(
                    "SELECT table_name, column_name FROM information_schema.columns "
                    "WHERE table_schema = 'attune' AND table_name = ANY(:names)"
                ),
                {"names": [x.name for x in t.metadata.sorted_tables]},
            )
        }
    engine.dispose()
    assert made == real


def test_deleting_a_pack_cascades_in_attunes_tables_but_attuneds_runs_stay(
    database: Database,
) -> None:
    now = datetime.now(UTC)
    with database.write() as session:
        connection = session.connection()
        pack_id = connection.execute(
            t.pack.insert().values(ref="pk", label="P", version="1.0.0").returning(t.pack.c.id)
        ).scalar_one()
        connection.execute(
            t.trigger.insert().values(ref="pk.tick", pack=pack_id, pack_ref="pk", label="Tick")
        )
        connection.execute(
            t.pack_test_execution.insert().values(
                pack_id=pack_id,
                pack_version="1.0.0",
                trigger_reason="install",
                total_tests=1,
                passed=1,
                failed=0,
                skipped=0,
                pass_rate=1.0,
                duration_ms=1,
                result={},
            )
        )
        session.add(
            TestRun(
                pack_ref="pk",
                pack_version="1.0.0",
                trigger_type="register",
                status="passed",
                execution_time=now,
            )
        )
    with database.write() as session:
        repository.delete_pack(session, "pk")
    with database.read() as session:
        connection = session.connection()
        assert connection.execute(select(t.trigger.c.ref)).all() == []
        assert connection.execute(select(t.pack_test_execution.c.id)).all() == []
        assert [r.pack_ref for r in session.exec(select(TestRun)).scalars()] == ["pk"]


def test_write_rolls_back_on_error(database: Database) -> None:
    with pytest.raises(RuntimeError), database.write() as session:
        session.connection().execute(t.pack.insert().values(ref="pk", label="P", version="1.0.0"))
        raise RuntimeError("boom")
    with database.read() as session:
        assert session.connection().execute(select(t.pack.c.ref)).all() == []


def test_without_auto_migrate_a_stale_schema_is_refused_with_the_command(
    tmp_path: Path,
) -> None:
    database = Database(f"sqlite:///{tmp_path / 'a.db'}")
    try:
        with pytest.raises(
            Exception,
            match=rf"revision none, this attuned needs {HEAD_REVISION}; run `attuned db upgrade`",
        ):
            database.check()
        database.migrate()
        database.check()
    finally:
        database.dispose()


def test_sqlite_connections_enforce_foreign_keys_and_wal(tmp_path: object) -> None:
    db = Database(f"sqlite:///{tmp_path}/x.db")
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    db.dispose()


# -- the old layout (revisions 0001-0003) --------------------------------------------------

LEGACY_ROWS = [
    """INSERT INTO pack (id, ref, label, description, version, digest, metadata, conf_schema,
       config, origin, source, source_revision, enabled, system, created_at, updated_at)
       VALUES (1, 'hello', 'Hello', 'Says hello', '1.0.0', '{d}',
       '{{"tags": ["example"], "runtime_deps": ["shell"], "meta": {{"k": 1}},
          "dependencies": []}}',
       '{{"greeting": {{"type": "string", "default": "Hello"}}}}', '{{"greeting": "Hi"}}',
       'local:hello', 'local', NULL, {true}, {false}, '{when}', '{when}')""",
    """INSERT INTO pack (id, ref, label, description, version, digest, metadata, conf_schema,
       config, origin, source, source_revision, enabled, system, created_at, updated_at)
       VALUES (2, 'welcome', 'Welcome', 'Greets', '1.2.0', '{e}',
       '{{"tags": [], "runtime_deps": [], "meta": {{}},
          "dependencies": [{{"ref": "hello", "version": ">=1.0.0,<2"}}]}}',
       NULL, '{{}}', '/src/welcome', NULL, NULL, {true}, {false}, '{when}', '{when}')""",
    """INSERT INTO component (id, pack_id, kind, name, ref, file, definition) VALUES (1, 1, 'action', 'greet', 'hello.greet', 'actions/greet.yaml',
       '{{"name": "greet", "runner_type": "shell", "entry_point": "greet.sh"}}')""",
    """INSERT INTO component (id, pack_id, kind, name, ref, file, definition) VALUES (2, 1, 'trigger', 'arrived', 'hello.arrived',
       'triggers/arrived.yaml', '{{"name": "arrived", "description": "Someone came"}}')""",
    """INSERT INTO component (id, pack_id, kind, name, ref, file, definition) VALUES (3, 1, 'policy', 'limit', 'hello.limit', 'policies/l.yaml',
       '{{"name": "limit"}}')""",
    """INSERT INTO component (id, pack_id, kind, name, ref, file, definition) VALUES (4, 1, 'sensor', 'watch', 'hello.watch', 'sensors/w.yaml',
       '{{"name": "watch", "entry_point": "watch.py"}}')""",
    """INSERT INTO component (id, pack_id, kind, name, ref, file, definition) VALUES (5, 2, 'rule', 'greet_arrivals', 'welcome.greet_arrivals',
       'rules/g.yaml', '{{"trigger": {{"type": "hello.arrived"}},
       "action": {{"ref": "hello.greet", "parameters": {{"name": "x"}}}}}}')""",
    """INSERT INTO pack_test_execution (id, pack_ref, pack_version, pack_digest,
       trigger_type, status, total_tests, passed, failed, skipped, pass_rate, duration_ms,
       gate_passed, gate_reason, outcome, result, execution_time, created_at) VALUES (1, 'hello', '1.0.0', '{d}', 'register', 'passed',
       2, 2, 0, 0, 1.0, 5, {true}, 'all 2 tests passed', 'registered', '{result}', '{when}',
       '{when}')""",
    """INSERT INTO pack_test_execution (id, pack_ref, pack_version, pack_digest,
       trigger_type, status, total_tests, passed, failed, skipped, pass_rate, duration_ms,
       gate_passed, gate_reason, outcome, result, execution_time, created_at) VALUES (2, 'ghost', '0.1.0', 'g', 'register', 'failed',
       1, 0, 1, 0, 0.0, 5, {false}, 'failed', 'rolled_back', '{{}}', '{when}', '{when}')""",
    """INSERT INTO pack_revision (id, ref, version, digest, source, source_revision, reason,
       activated_at, deactivated_at, deactivation_reason) VALUES (1, 'hello', '1.0.0', '{d}', 'local', NULL, 'register',
       '{when}', NULL, NULL)""",
    "INSERT INTO pack_suspension (ref, reason, created_at) VALUES ('welcome', 'by hand', '{when}')",
    "INSERT INTO pack_archive (digest, size, compressed_size, data, created_at) VALUES ('{d}', 10, 5, {blob}, '{when}')",
]


def _result(ref: str) -> str:
    return (
        f'{{"pack_ref": "{ref}", "pack_version": "1.0.0", "execution_time": "2026-11-30T10:00:00Z",'
        ' "status": "passed", "total_tests": 2, "passed": 2, "failed": 0, "skipped": 0,'
        ' "pass_rate": 1.0, "duration_ms": 5, "test_suites": [{"name": "shell",'
        ' "runner_type": "script", "total": 2, "passed": 2, "failed": 0, "skipped": 0,'
        ' "duration_ms": 5, "test_cases": []}], "gate": {"passed": true, "reason": "ok"}}'
    )


def _old_database(database: Database) -> None:
    """A database as attuned 0.1 (revision 0003) left it, with packs, runs and archives."""
    config = database.alembic_config()
    config.attributes["own_schema"] = None  # the old layout kept its version table in public
    with database.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0003")
        yes, no = ("TRUE", "FALSE") if not database.is_sqlite else ("1", "0")
        blob = "'\\x00'::bytea" if not database.is_sqlite else "X'00'"
        for statement in LEGACY_ROWS:
            connection.exec_driver_sql(
                statement.format(
                    d="d" * 64,
                    e="e" * 64,
                    when="2026-11-30 10:00:00+00:00",
                    result=_result("hello"),
                    true=yes,
                    false=no,
                    blob=blob,
                )
            )


def test_an_old_database_is_converted_without_losing_packs_or_history(
    database: Database, tmp_path: Path
) -> None:
    fresh = Database(database.url)  # the fixture's database is at head: start over in it
    database.dispose()
    with fresh.engine.begin() as connection:
        for table in reversed(own_tables()):
            connection.execute(text(f"DROP TABLE {_qualified(fresh, table.name)}"))
        connection.execute(text(f"DROP TABLE {_qualified(fresh, 'alembic_version')}"))
        for table in reversed(t.metadata.sorted_tables):
            connection.execute(table.delete())
    if fresh.is_sqlite:  # SQLite's Attune tables are attuned's to make: make them again
        with fresh.engine.begin() as connection:
            for view in ("pack_latest_test", "pack_test_summary"):
                connection.execute(text(f"DROP VIEW {view}"))
            for table in reversed(t.metadata.sorted_tables):
                connection.execute(text(f'DROP TABLE "{table.name}"'))
    _old_database(fresh)
    assert fresh.current_revision() == "0003"

    fresh.migrate(packs_dir=tmp_path / "packs")

    assert fresh.current_revision() == HEAD_REVISION
    assert _own_schema_diff(fresh) == []
    with fresh.read() as session:
        packs = {p.ref: p for p in registered_packs.list_packs(session)}
        assert {ref: (p.version, p.digest, p.managed) for ref, p in packs.items()} == {
            "hello": ("1.0.0", "d" * 64, True),
            "welcome": ("1.2.0", "e" * 64, True),
        }
        hello = packs["hello"]
        assert (hello.tags, hello.runtime_deps, hello.meta) == (["example"], ["shell"], {"k": 1})
        assert hello.config == {"greeting": "Hi"}
        assert hello.storage_path == str((tmp_path / "packs" / "hello").absolute())
        assert packs["welcome"].dependencies == ["hello>=1.0.0,<2"]
        # by hand: the path it came from; a daemon's: unknown until it is registered again
        assert (packs["welcome"].source_type, packs["welcome"].source_url) == (
            "local_directory",
            "/src/welcome",
        )
        assert (hello.source_type, hello.source_url) == (None, None)
        components = {c.ref: c.kind for c in registered_packs.components_of(session, hello.id)}
        # the policy was never Attune's; the sensor has no runtime to run on: incomplete
        assert components == {"hello.greet": "action", "hello.arrived": "trigger"}
        [rule] = registered_packs.components_of(session, packs["welcome"].id)
        assert (rule.ref, rule.details["trigger_ref"], rule.details["action_ref"]) == (
            "welcome.greet_arrivals",
            "hello.arrived",
            "hello.greet",
        )
        assert rule.details["trigger"] is not None and rule.details["action"] is not None
        managed = {m.ref: m for m in session.exec(select(ManagedPack)).scalars()}
        assert managed["hello"].incomplete is not None
        assert "sensor hello.watch" in managed["hello"].incomplete
        assert managed["welcome"].incomplete is None
        heads = {h.ref: h for h in registered_packs.pack_heads(session)}
        assert heads["hello"].incomplete and not heads["welcome"].incomplete
        runs = session.exec(select(TestRun).order_by(TestRun.id)).scalars().all()
        assert [(r.pack_ref, r.outcome) for r in runs] == [
            ("hello", "registered"),
            ("ghost", "rolled_back"),
        ]
        assert runs[0].attune_execution_id is not None and runs[1].attune_execution_id is None
        attune_runs = session.connection().execute(
            select(t.pack_test_execution.c.pack_id, t.pack_test_execution.c.trigger_reason)
        )
        assert attune_runs.all() == [(hello.id, "install")]
        assert [r.ref for r in session.exec(select(PackRevision)).scalars()] == ["hello"]
        assert [s.ref for s in session.exec(select(PackSuspension)).scalars()] == ["welcome"]
        assert [a.digest for a in session.exec(select(PackArchive)).scalars()] == ["d" * 64]
    with fresh.engine.connect() as connection:
        old = set(inspect(connection).get_table_names(schema=None if fresh.is_sqlite else "public"))
        assert not old & {"component", "legacy_pack", "legacy_component"}
    fresh.dispose()


def test_the_conversion_cannot_be_undone_by_a_downgrade(database: Database) -> None:
    # the raise rolls the whole downgrade back (0005's step included): nothing is lost
    with pytest.raises(Exception, match="from a backup"), database.engine.begin() as connection:
        config = database.alembic_config(connection)
        command.downgrade(config, "0003")
    assert database.current_revision() == HEAD_REVISION


def _qualified(database: Database, name: str) -> str:
    return name if database.is_sqlite else f"attuned.{name}"


def test_apply_sh_builds_attunes_schema(attune_postgres_url: str) -> None:
    """The fixture itself: Attune's migrations really ran (a view and a function of theirs)."""
    apply_schema(attune_postgres_url)
    engine = create_engine(attune_postgres_url)
    with engine.connect() as connection:
        found = connection.execute(
            text("SELECT proname FROM pg_proc WHERE proname = 'get_pack_test_stats'")
        ).scalar()
    engine.dispose()
    assert found == "get_pack_test_stats"
