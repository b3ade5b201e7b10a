"""The schema: migrations on both backends, no drift from the models, cascade and audit rules."""

from __future__ import annotations

import subprocess
import sys

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel, select

from attuned.store.database import HEAD_REVISION, Database
from attuned.store.models import ComponentRecord, PackRecord, TestExecutionRecord


def test_migrations_reach_head_and_match_models(database: Database) -> None:
    assert database.current_revision() == database.head_revision() == HEAD_REVISION
    with database.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
    assert diff == []


def test_migrate_is_idempotent(database: Database) -> None:
    database.migrate()
    assert database.current_revision() == database.head_revision()


def test_a_start_on_an_up_to_date_schema_does_not_load_alembic(database: Database) -> None:
    """alembic is 11 MiB of the daemon's resident memory; it is needed only to change the
    schema."""
    code = (
        "import sys; from attuned.store.database import Database; "
        f"Database({database.url!r}).migrate(); print('alembic' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


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
