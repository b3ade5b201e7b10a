"""Read what the planner and the status need from the database, as plain values."""

from __future__ import annotations

from sqlmodel import Session

from attuned.reconcile.model import ActualPack, Failure, FailureKind, Requirement
from attuned.reconcile.summary import ServedPack
from attuned.report.status import LastTest, failing_case_names
from attuned.store import registered_packs, revisions, run_records
from attuned.store.cases import cases_of_result
from attuned.store.models import TestRun, aware


def actual_packs(session: Session, suspended: set[str]) -> dict[str, ActualPack]:
    packs = {}
    dependencies = registered_packs.pack_dependencies(session)
    for record in registered_packs.pack_heads(session):
        requires = tuple(Requirement(d.ref, d.version) for d in dependencies.get(record.ref, []))
        packs[record.ref] = ActualPack(
            ref=record.ref,
            version=record.version,
            # incomplete rows: a digest no candidate has, so the planner registers it again
            digest="" if record.incomplete else record.digest,
            source=record.source,
            requires=requires,
            suspended=record.ref in suspended,
        )
    return packs


def served_packs(
    session: Session, heads: list[registered_packs.PackHead] | None = None
) -> dict[str, ServedPack]:
    """`heads`: the managed heads already read in this transaction's pass, if any."""
    activated = revisions.activation_times(session)
    served = {}
    for record in registered_packs.managed_heads(session) if heads is None else heads:
        served[record.ref] = ServedPack(
            ref=record.ref,
            version=record.version,
            digest=record.digest,
            source=record.source,
            active_since=aware(activated.get(record.ref) or record.updated_at),
        )
    return served


def last_tests(session: Session) -> dict[str, LastTest]:
    return {
        ref: LastTest(
            status=row.status,
            passed=row.passed,
            total=row.total_tests,
            at=aware(row.execution_time),
            version=row.pack_version,
            regressions=list(row.regressions or []),
            reason=row.gate_reason,
            failed_cases=_first_failing(row) if row.failed else [],
        )
        for ref, row in run_records.latest_executions(session).items()
    }


def _first_failing(run: TestRun) -> list[str]:
    """The first failing cases of a run, from its stored result (no query per pack)."""
    return failing_case_names((c.suite, c.name, c.status) for c in cases_of_result(run.result))


def remembered_failures(session: Session) -> dict[str, Failure]:
    """Rollbacks that are still the latest word on a ref: not retried after a restart."""
    failures = {}
    for ref, row in run_records.latest_executions(session).items():
        if row.outcome == "rolled_back" and row.pack_digest:
            at = aware(row.execution_time)
            failures[ref] = Failure(
                ref=ref,
                digest=row.pack_digest,
                kind=FailureKind.DETERMINISTIC,
                reason=f"tests of {row.pack_version} failed at {at:%Y-%m-%d %H:%M:%S}: "
                f"{row.gate_reason}",
                at=at.timestamp(),
            )
    return failures
