"""The per-case test history: written with each run (one batched insert), pruned to the
newest runs of each pack plus every run of the serving version, and read back as the
baselines the regression gate compares a candidate against.

A run's `result` JSON keeps every case too (the audit trail); these rows exist to be
queried: by case across runs, by content digest, in bulk.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, and_, delete, insert, select
from sqlmodel import Session

from attuned.store.models import TestCaseRecord, TestRun
from attuned.testing.regressions import Case, CaseKey

MESSAGE_LIMIT = 1000  # characters of a failure's message kept per case

_CASE: Table = TestCaseRecord.__table__  # type: ignore[attr-defined]
_RUN: Table = TestRun.__table__  # type: ignore[attr-defined]


def add_cases(
    session: Session,
    run_id: int,
    pack_ref: str,
    runner_types: dict[str, str],
    cases: Sequence[Case],
) -> None:
    """Store a run's cases in one statement (executemany)."""
    if not cases:
        return
    session.connection().execute(
        insert(_CASE),
        [
            {
                "run_id": run_id,
                "pack_ref": pack_ref,
                "suite": case.suite[:255],
                "runner_type": runner_types.get(case.suite, ""),
                "name": case.name,
                "status": case.status,
                "duration_ms": case.duration_ms,
                "message": case.message[:MESSAGE_LIMIT] if case.message else None,
            }
            for case in cases
        ],
    )


def prune(session: Session, pack_ref: str, keep_runs: int, serving_digest: str | None) -> int:
    """Drop the case rows of `pack_ref`'s runs older than its newest `keep_runs`, except
    the serving version's (its baseline must stay whole); returns the rows deleted."""
    cutoff = (
        session.connection()
        .execute(
            select(_RUN.c.id)
            .where(_RUN.c.pack_ref == pack_ref)
            .order_by(_RUN.c.id.desc())
            .offset(keep_runs - 1)
            .limit(1)
        )
        .scalar()
    )
    if cutoff is None:
        return 0
    doomed = select(_RUN.c.id).where(_RUN.c.pack_ref == pack_ref, _RUN.c.id < cutoff)
    if serving_digest:
        doomed = doomed.where(_RUN.c.pack_digest != serving_digest)
    deleted = session.connection().execute(
        delete(_CASE).where(and_(_CASE.c.pack_ref == pack_ref, _CASE.c.run_id.in_(doomed)))
    )
    return int(deleted.rowcount or 0)


def cases_of_runs(session: Session, run_ids: Sequence[int]) -> dict[int, list[Case]]:
    """The stored cases of these runs (a run whose rows were pruned has none here)."""
    found: dict[int, list[Case]] = {run_id: [] for run_id in run_ids}
    if not run_ids:
        return found
    rows = session.connection().execute(
        select(
            _CASE.c.run_id,
            _CASE.c.suite,
            _CASE.c.name,
            _CASE.c.status,
            _CASE.c.duration_ms,
            _CASE.c.message,
        )
        .where(_CASE.c.run_id.in_(list(run_ids)))
        .order_by(_CASE.c.id)
    )
    for run_id, suite, name, status, duration_ms, message in rows:
        found[run_id].append(Case(suite, name, status, duration_ms, message))
    return found


def cases_of_result(result: dict[str, Any]) -> list[Case]:
    """The cases in a run's stored `result` JSON: for runs whose rows were pruned, or that
    were stored before the per-case history existed."""
    cases: dict[CaseKey, Case] = {}
    for suite in result.get("test_suites") or []:
        for case in suite.get("test_cases") or []:
            key = (str(suite.get("name", "")), str(case.get("name", "")))
            cases.setdefault(
                key,
                Case(
                    suite=key[0],
                    name=key[1],
                    status=str(case.get("status", "")),
                    duration_ms=int(case.get("duration_ms") or 0),
                    message=(case.get("error_message") or None),
                ),
            )
    return list(cases.values())


def runner_types_of(result: dict[str, Any]) -> dict[str, str]:
    return {
        str(s.get("name", "")): str(s.get("runner_type", ""))
        for s in result.get("test_suites") or []
    }


def run_cases(session: Session, run: TestRun) -> list[Case]:
    """A run's cases: its rows, or its result JSON when the rows are gone."""
    assert run.id is not None
    stored = cases_of_runs(session, [run.id])[run.id]
    return stored if stored else cases_of_result(run.result)


@dataclass(frozen=True)
class DigestRuns:
    """The newest runs of one content digest of a pack, newest first, with their cases."""

    digest: str
    versions: tuple[str, ...]
    run_ids: tuple[int, ...]
    cases: tuple[tuple[Case, ...], ...]

    @property
    def newest(self) -> tuple[Case, ...]:
        return self.cases[0] if self.cases else ()

    def statuses(self) -> list[dict[CaseKey, str]]:
        return [{c.key: c.status for c in run} for run in self.cases]

    def durations(self) -> list[dict[CaseKey, int]]:
        return [{c.key: c.duration_ms for c in run} for run in self.cases]


def digest_runs(session: Session, pack_ref: str, digest: str, limit: int) -> DigestRuns:
    """The newest `limit` runs of `pack_ref` at `digest` that recorded cases."""
    rows = (
        session.connection()
        .execute(
            select(_RUN.c.id, _RUN.c.pack_version)
            .where(
                _RUN.c.pack_ref == pack_ref,
                _RUN.c.pack_digest == digest,
                _RUN.c.total_tests > 0,
            )
            .order_by(_RUN.c.id.desc())
            .limit(limit)
        )
        .all()
    )
    ids = [int(r[0]) for r in rows]
    by_run = cases_of_runs(session, ids)
    kept = [(int(r[0]), str(r[1])) for r in rows if by_run[int(r[0])]]
    return DigestRuns(
        digest=digest,
        versions=tuple(v for _, v in kept),
        run_ids=tuple(i for i, _ in kept),
        cases=tuple(tuple(by_run[i]) for i, _ in kept),
    )
