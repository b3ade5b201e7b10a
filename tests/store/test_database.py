"""The schema: migrations on both backends, no drift from the models, cascade and audit rules."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel, select

from attuned.store.database import Database
from attuned.store.models import ComponentRecord, PackRecord, TestExecutionRecord


def test_migrations_reach_head_and_match_models(database: Database) -> None:
    assert database.current_revision() == database.head_revision() == "0003"
    with database.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
    assert diff == []


def test_migrate_is_idempotent(database: Database) -> None:
    database.migrate()
    assert database.current_revision() == database.head_revision()


def test_every_revision_downgrades_and_upgrades_again(database: Database) -> None:
    database.downgrade("base")
    assert database.current_revision() is None
    database.migrate()
    assert database.current_revision() == database.head_revision()


def test_deleting_a_pack_cascades_to_components_but_not_executions(database: Database) -> None:
    with database.write() as session:
        pack = PackRecord(ref="p", label="P", version="1.0.0", digest="d" * 64)
        session.add(pack)
        session.flush()
        assert pack.id is not None
        session.add(ComponentRecord(pack_id=pack.id, kind="action", name="a", ref="p.a"))
        session.add(
            TestExecutionRecord(
                pack_ref="p", pack_version="1.0.0", trigger_type="register", status="passed"
            )
        )
    with database.write() as session:
        session.delete(session.exec(select(PackRecord)).one())
    with database.read() as session:
        assert session.exec(select(ComponentRecord)).all() == []
        assert [e.pack_ref for e in session.exec(select(TestExecutionRecord)).all()] == ["p"]


def test_write_rolls_back_on_error(database: Database) -> None:
    try:
        with database.write() as session:
            session.add(PackRecord(ref="p", label="P", version="1.0.0", digest="x"))
            session.flush()
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    with database.read() as session:
        assert session.exec(select(PackRecord)).all() == []


def test_sqlite_connections_enforce_foreign_keys_and_wal(tmp_path: object) -> None:
    db = Database(f"sqlite:///{tmp_path}/x.db")
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    db.dispose()
