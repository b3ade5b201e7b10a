"""The per-case test history: written with each run (one batched insert), pruned in the
daemon's upkeep to the newest runs of each pack plus every run of the serving version, and
read back as the baselines the regression gate compares a candidate against.

A run's `result` JSON keeps every case too (the audit trail); these rows exist to be
queried: by case across runs, by content digest, in bulk.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import Select, delete, func, select
from sqlmodel import Session

from attuned.store.models import (
    MANAGED_PACK,
    OWN_SCHEMA,
    TEST_CASE,
    TEST_RUN,
    TestRun,
)
from attuned.testing.regressions import Case, CaseKey

MESSAGE_LIMIT = 1000  # characters of a failure's message kept per case

_CASE = TEST_CASE
_RUN = TEST_RUN
_MANAGED = MANAGED_PACK


_COLUMNS = (
    "run_id",
    "pack_ref",
    "suite",
    "runner_type",
    "name",
    "status",
    "duration_ms",
    "message",
)


def add_cases(
    session: Session,
    run_id: int,
    pack_ref: str,
    runner_types: dict[str, str],
    cases: Sequence[Case],
) -> None:
    """Store a run's cases in one executemany of plain tuples, straight to the driver: the
    Core statement spent two thirds of a 1,000-case insert turning dicts into parameters."""
    if not cases:
        return
    connection = session.connection()
    connection.exec_driver_sql(
        _insert_sql(connection.dialect.name, connection.dialect.paramstyle),
        [
            (
                run_id,
                pack_ref,
                case.suite[:255],
                runner_types.get(case.suite, ""),
                case.name,
                case.status,
                case.duration_ms,
                case.message[:MESSAGE_LIMIT] if case.message else None,
            )
            for case in cases
        ],
    )


@cache
def _insert_sql(dialect: str, paramstyle: str) -> str:
    table = "test_case" if dialect == "sqlite" else f"{OWN_SCHEMA}.test_case"  # no schemas there
    mark = "?" if paramstyle == "qmark" else "%s"
    marks = ", ".join([mark] * len(_COLUMNS))
    return f"INSERT INTO {table} ({', '.join(_COLUMNS)}) VALUES ({marks})"  # noqa: S608


def prune(session: Session, pack_refs: Sequence[str] | None, keep_runs: int) -> int:
    """Drop the case rows of runs older than each pack's newest `keep_runs`, except the
    serving version's (its baseline must stay whole); `pack_refs` None: every pack. Upkeep,
    not part of a registration: deleting a 1,000-case run's rows cost as much as writing
    them. Returns the rows deleted."""
    doomed = _doomed_runs(pack_refs, keep_runs)
    connection = session.connection()
    if connection.execute(select(doomed.exists())).scalar() is not True:
        return 0
    deleted = connection.execute(delete(_CASE).where(_CASE.c.run_id.in_(doomed)))
    return int(deleted.rowcount or 0)


def _doomed_runs(pack_refs: Sequence[str] | None, keep_runs: int) -> Select[tuple[int]]:
    """Runs whose case rows retention drops: beyond the newest `keep_runs` of their pack,
    not of the digest it serves, with case rows left."""
    ranked = select(
        _RUN.c.id,
        _RUN.c.pack_ref,
        _RUN.c.pack_digest,
        func.row_number()
        .over(partition_by=_RUN.c.pack_ref, order_by=_RUN.c.id.desc())
        .label("newness"),
    )
    if pack_refs is not None:
        ranked = ranked.where(_RUN.c.pack_ref.in_(list(pack_refs)))
    runs = ranked.subquery()
    serving = select(_MANAGED.c.digest).where(_MANAGED.c.ref == runs.c.pack_ref).scalar_subquery()
    return select(runs.c.id).where(
        runs.c.newness > keep_runs,
        runs.c.pack_digest != func.coalesce(serving, ""),
        select(_CASE.c.id).where(_CASE.c.run_id == runs.c.id).exists(),
    )


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
