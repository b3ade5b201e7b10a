"""The per-case history: migration 0006 fills it from the runs stored before it, and a run
whose rows were pruned still answers from its stored result."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from alembic import command
from sqlalchemy import text
from sqlmodel import col, select

from attuned.store import cases
from attuned.store.database import HEAD_REVISION, Database
from attuned.store.models import TestCaseRecord, TestRun
from attuned.testing.regressions import Case


def _result(version: str, failing: str | None) -> dict[str, object]:
    names = ["a", "b"]
    return {
        "pack_ref": "hello",
        "pack_version": version,
        "test_suites": [
            {
                "name": "tap",
                "runner_type": "script",
                "test_cases": [
                    {
                        "name": n,
                        "status": "failed" if n == failing else "passed",
                        "duration_ms": 7,
                        "error_message": "boom" if n == failing else None,
                    }
                    for n in names
                ],
            }
        ],
    }


def _table(database: Database, name: str) -> str:
    return f"{database.own_schema}.{name}" if database.own_schema else name


def test_upgrading_to_0006_fills_the_case_history_from_stored_runs(database: Database) -> None:
    with database.engine.begin() as connection:
        command.downgrade(database.alembic_config(connection), "0005")
    now = datetime.now(UTC)
    insert = text(
        f"INSERT INTO {_table(database, 'test_run')} (pack_ref, pack_version, pack_digest, "
        "trigger_type, status, total_tests, passed, failed, skipped, pass_rate, duration_ms, "
        "gate_passed, gate_reason, outcome, result, execution_time, created_at) VALUES "
        "('hello', :version, :digest, 'register', 'passed', 2, 2, 0, 0, 1.0, 5, true, '', "
        "'registered', :result, :now, :now)"
    )
    managed = text(
        f"INSERT INTO {_table(database, 'managed_pack')} (ref, pack_id, version, digest, origin,"
        " pending_runtimes, written_config, created_at, updated_at) VALUES "
        "('hello', 1, '1.0.0', :digest, '', '{}', '{}', :now, :now)"
    )
    with database.engine.begin() as connection:
        connection.execute(managed, {"digest": "s" * 64, "now": now})
        # the serving version's run is the oldest of 53: kept all the same
        connection.execute(
            insert,
            {
                "version": "1.0.0",
                "digest": "s" * 64,
                "result": json.dumps(_result("1.0.0", None)),
                "now": now,
            },
        )
        for n in range(52):
            connection.execute(
                insert,
                {
                    "version": f"2.0.{n}",
                    "digest": f"{n:064}",
                    "result": json.dumps(_result(f"2.0.{n}", "b")),
                    "now": now,
                },
            )

    database.migrate()

    assert database.current_revision() == HEAD_REVISION
    with database.read() as session:
        run_ids = [r.id for r in session.exec(select(TestRun).order_by(col(TestRun.id)))]
        rows = session.exec(select(TestCaseRecord)).all()
        runs = session.exec(select(TestRun)).all()
    with_cases = sorted({r.run_id for r in rows})
    assert with_cases == sorted([run_ids[0], *run_ids[-50:]])  # run 2 (2.0.0) is the 51st
    assert {(r.suite, r.runner_type, r.pack_ref) for r in rows} == {("tap", "script", "hello")}
    assert sorted((r.name, r.status, r.message) for r in rows if r.run_id == run_ids[-1]) == [
        ("a", "passed", None),
        ("b", "failed", "boom"),
    ]
    assert all(r.regressions == [] and r.source is None for r in runs)


def test_a_run_whose_rows_were_pruned_answers_from_its_result(database: Database) -> None:
    with database.write() as session:
        run = TestRun(
            pack_ref="hello",
            pack_version="1.0.0",
            trigger_type="manual",
            status="failed",
            result=_result("1.0.0", "a"),
        )
        session.add(run)
        session.flush()
        assert run.id is not None
        cases.add_cases(session, run.id, "hello", {"tap": "script"}, [Case("tap", "a", "passed")])

    with database.read() as session:
        stored = session.get(TestRun, run.id)
        assert stored is not None
        assert cases.run_cases(session, stored) == [Case("tap", "a", "passed")]
    with database.write() as session:
        session.execute(text(f"DELETE FROM {_table(database, 'test_case')}"))
    with database.read() as session:
        stored = session.get(TestRun, run.id)
        assert stored is not None
        assert [(c.name, c.status, c.message) for c in cases.run_cases(session, stored)] == [
            ("a", "failed", "boom"),
            ("b", "passed", None),
        ]
