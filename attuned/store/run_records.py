"""Recording a test run, and reading the stored runs back as ORM rows: a pack's runs newest
first, and the latest of every pack (what `show`, `packs` and the planner ask for).

A run goes to attuned's history, its cases to the per-case history and, when Attune's
table can hold it, to Attune's `pack_test_execution`. The filtered history queries
(`attuned history`, `attuned compare`) are `attuned.store.runs`'.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import Session, col, select

from attuned.results import PackTestResult
from attuned.store import cases
from attuned.store.attune import reader, writer
from attuned.store.models import TestRun
from attuned.testing.regressions import cases_of


def add_test_run(
    session: Session,
    result: PackTestResult,
    *,
    trigger_type: str,
    outcome: str,
    pack_digest: str = "",
    source: str | None = None,
    source_revision: str | None = None,
) -> TestRun:
    """Record a run in attuned's history, its cases in the per-case history and, when
    Attune's table can hold it (the pack has a row: not a first registration that was
    rolled back), in Attune's `pack_test_execution`."""
    connection = session.connection()
    pack_id = reader.pack_id(connection, result.pack_ref)
    attune_id = (
        writer.add_test_execution(connection, pack_id, result, trigger_type)
        if pack_id is not None
        else None
    )
    record = TestRun(
        pack_ref=result.pack_ref,
        pack_version=result.pack_version,
        pack_digest=pack_digest,
        trigger_type=trigger_type,
        status=result.status.value,
        total_tests=result.total_tests,
        passed=result.passed,
        failed=result.failed,
        skipped=result.skipped,
        pass_rate=result.pass_rate,
        duration_ms=result.duration_ms,
        gate_passed=result.gate.passed,
        gate_reason=result.gate.reason,
        outcome=outcome,
        source=source,
        source_revision=source_revision,
        regressions=list(result.gate.regressions),
        result=result.model_dump(mode="json"),
        attune_execution_id=attune_id,
        execution_time=result.execution_time,
    )
    session.add(record)
    session.flush()
    assert record.id is not None
    runner_types = {s.name: s.runner_type for s in result.test_suites}
    cases.add_cases(session, record.id, result.pack_ref, runner_types, cases_of(result))
    return record


def executions(session: Session, ref: str, limit: int | None = None) -> Sequence[TestRun]:
    query = (
        select(TestRun)
        .where(TestRun.pack_ref == ref)
        .order_by(col(TestRun.execution_time).desc(), col(TestRun.id).desc())
    )
    if limit is not None:
        query = query.limit(limit)
    return session.exec(query).all()


def latest_executions(session: Session) -> dict[str, TestRun]:
    """The newest test run of every pack ref."""
    latest: dict[str, TestRun] = {}
    for row in session.exec(select(TestRun).order_by(col(TestRun.id))):
        latest[row.pack_ref] = row
    return latest


def latest_statuses(session: Session) -> dict[str, str]:
    """The last test status of every pack ref that ever ran tests."""
    latest: dict[str, str] = {}
    rows = session.exec(select(TestRun.pack_ref, TestRun.status).order_by(col(TestRun.id)))
    for ref, status in rows.all():
        latest[ref] = status
    return latest
