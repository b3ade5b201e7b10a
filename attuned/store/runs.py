"""The test runs of one pack, filtered in SQL: what `attuned history` lists and what
`attuned compare` picks its two runs from (`attuned.store.comparisons`).

Every filter is a WHERE clause of one SELECT on `test_run` (newest first, by id), so a pack
with 10,000 runs answers as fast as one with ten; a case glob is a LIKE on `test_case`, never
a loop over rows in Python (`attuned.store.case_globs`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlmodel import Session

from attuned.errors import AttunedError
from attuned.store import cases
from attuned.store.case_globs import case_match, exact_case
from attuned.store.models import TEST_CASE, TEST_RUN, TestRun
from attuned.testing.regressions import (
    FAILING,
    PASSING,
    CaseKey,
    case_id,
    flaky_cases,
)

_RUN = TEST_RUN
_CASE = TEST_CASE

STATUSES = ("passed", "failed", "partial", "skipped", "error")
# what an operator calls a trigger -> the trigger_type values stored (Attune's names)
TRIGGERS: dict[str, tuple[str, ...]] = {
    "install": ("register",),
    "update": ("upgrade", "reinstall"),
    "manual": ("manual",),
    "register": ("register",),
    "upgrade": ("upgrade",),
    "reinstall": ("reinstall",),
}


class RunNotFound(AttunedError):
    """A selector, a run id or a pack names no run: a usage error (exit 2)."""

    exit_code = 2


@dataclass(frozen=True)
class RunFilter:
    """Which runs of `ref`: each field set narrows the selection (empty tuples: any).
    `since`/`until` are inclusive; `digest`/`other_than` match the content digest."""

    ref: str
    versions: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    statuses: tuple[str, ...] = ()
    triggers: tuple[str, ...] = ()  # stored trigger_type values (see TRIGGERS)
    digest: str | None = None
    other_than: str | None = None
    with_tests: bool = False  # only runs that ran at least one test
    limit: int | None = None

    def where(self) -> list[ColumnElement[bool]]:
        c = _RUN.c
        clauses: list[ColumnElement[bool]] = [c.pack_ref == self.ref]
        if self.versions:
            clauses.append(c.pack_version.in_(self.versions))
        if self.since is not None:
            clauses.append(c.execution_time >= _utc(self.since))
        if self.until is not None:
            clauses.append(c.execution_time <= _utc(self.until))
        if self.statuses:
            clauses.append(c.status.in_(self.statuses))
        if self.triggers:
            clauses.append(c.trigger_type.in_(self.triggers))
        if self.digest is not None:
            clauses.append(c.pack_digest == self.digest)
        if self.other_than is not None:
            clauses.append(c.pack_digest != self.other_than)
        if self.with_tests:
            clauses.append(c.total_tests > 0)
        return clauses


def stored_triggers(names: Sequence[str]) -> tuple[str, ...]:
    """The stored trigger types an operator's trigger names stand for (unknown: ValueError)."""
    found: list[str] = []
    for name in names:
        if name not in TRIGGERS:
            raise ValueError(f"unknown trigger {name!r} (one of {', '.join(TRIGGERS)})")
        found += [t for t in TRIGGERS[name] if t not in found]
    return tuple(found)


def _utc(moment: datetime) -> datetime:
    """SQLite compares times as text, written in UTC without a zone: so must the bound be."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


# -- runs ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunRow:
    """A stored run as `history` lists it: `test_run`'s columns, read without the ORM (a
    pack's 10,000 runs as ORM objects took 4x as long), `result` only when asked for."""

    id: int
    pack_ref: str
    pack_version: str
    pack_digest: str
    trigger_type: str
    status: str
    total_tests: int
    passed: int
    failed: int
    skipped: int
    pass_rate: float
    duration_ms: int
    gate_passed: bool
    gate_reason: str
    outcome: str
    source: str | None
    source_revision: str | None
    regressions: list[str]
    attune_execution_id: int | None
    execution_time: datetime
    result: dict[str, Any] | None = None


_LISTED = [_RUN.c[name] for name in RunRow.__dataclass_fields__ if name != "result"]


def runs(session: Session, where: RunFilter, *, full: bool = False) -> list[RunRow]:
    """The runs `where` selects, newest first; without `full` their `result` JSON (every
    case, every output) stays unread."""
    columns = [*_LISTED, _RUN.c.result] if full else _LISTED
    query = select(*columns).where(*where.where()).order_by(_RUN.c.id.desc()).limit(where.limit)
    return [RunRow(*row) for row in session.connection().execute(query).all()]


def count(session: Session, where: RunFilter) -> int:
    """How many runs `where` selects (its limit aside)."""
    query = select(func.count()).select_from(_RUN).where(*where.where())
    return int(session.connection().execute(query).scalar() or 0)


def run_by_id(session: Session, ref: str, run_id: int) -> TestRun:
    """Run `run_id`, which must be one of `ref`'s."""
    run = session.get(TestRun, run_id)
    if run is None or run.pack_ref != ref:
        raise RunNotFound(f"no test run #{run_id} of {ref!r}")
    return run


def newest(session: Session, where: RunFilter) -> TestRun | None:
    """The newest run `where` selects that ran tests (what the gate would take as a
    baseline), else the newest at all."""
    for candidate in (replace(where, with_tests=True, limit=1), replace(where, limit=1)):
        found = runs(session, candidate)
        if found:
            return run_by_id(session, where.ref, found[0].id)
    return None


def has_runs(session: Session, ref: str) -> bool:
    query = select(_RUN.c.id).where(_RUN.c.pack_ref == ref).limit(1)
    return session.connection().execute(query).first() is not None


# -- one case across runs (history --case) ------------------------------------------------


@dataclass(frozen=True)
class CaseRun:
    """One case's verdict in one run, with the run it belongs to."""

    run_id: int
    pack_version: str
    pack_digest: str
    trigger_type: str
    execution_time: datetime  # as read: naive (UTC) on SQLite, see models.aware
    suite: str
    name: str
    status: str
    duration_ms: int
    message: str | None

    @property
    def case(self) -> str:
        return case_id((self.suite, self.name))


def case_runs(session: Session, where: RunFilter, glob: str) -> list[CaseRun]:
    """Each (run, case) of the runs `where` selects whose case matches `glob` (see
    `case_match`); newest run first. Only runs whose case rows are kept
    (`testing.history.keep_runs`, and the serving version's) have any."""
    r, c = _RUN.c, _CASE.c
    query = (
        select(
            c.run_id,
            r.pack_version,
            r.pack_digest,
            r.trigger_type,
            r.execution_time,
            c.suite,
            c.name,
            c.status,
            c.duration_ms,
            c.message,
        )
        .select_from(_RUN.join(_CASE, r.id == c.run_id))
        .where(case_match(session, glob), *where.where())
        .limit(where.limit)
    )
    if exact_case(glob):
        # one case: read backwards along the case index (pack_ref, suite, name, run_id)
        query = query.where(c.pack_ref == where.ref).order_by(c.run_id.desc())
    else:
        # a pattern: walk the pack's runs newest first and each one's cases (by run_id),
        # so that a LIMIT stops early instead of sorting every match of 10,000 runs
        query = query.order_by(r.id.desc(), c.suite, c.name)
    rows = session.connection().execute(query).all()  # fetchall: a row at a time is slower
    return [
        CaseRun(run, version, digest, trigger, when, suite, name, status, ms, message)
        for run, version, digest, trigger, when, suite, name, status, ms, message in rows
    ]


# -- flaky cases (history --flaky) --------------------------------------------------------


@dataclass(frozen=True)
class FlakyCase:
    """A case that both passed and failed within one digest's window, and how often."""

    case: str
    suite: str
    name: str
    passed: int
    failed: int  # failed or error
    skipped: int


@dataclass(frozen=True)
class FlakyDigest:
    """One content digest's newest runs (its window), newest first, and its flaky cases."""

    digest: str
    versions: tuple[str, ...]
    run_ids: tuple[int, ...]
    cases: tuple[FlakyCase, ...]


def flaky(session: Session, where: RunFilter, window: int) -> list[FlakyDigest]:
    """Per digest of the runs `where` selects (newest digest first), its newest `window`
    runs that ran tests, and the cases that flipped among them (the gate's flaky rule).
    `where.limit` counts digests with flaky cases, not runs."""
    r = _RUN.c
    rank = func.row_number().over(partition_by=r.pack_digest, order_by=r.id.desc())
    ranked = (
        select(r.id, r.pack_digest, r.pack_version, rank.label("rank"))
        .where(*replace(where, with_tests=True).where())
        .subquery()
    )
    rows = (
        session.connection()
        .execute(
            select(ranked.c.id, ranked.c.pack_digest, ranked.c.pack_version)
            .where(ranked.c.rank <= window)
            .order_by(ranked.c.id.desc())
        )
        .all()
    )
    windows: dict[str, list[tuple[int, str]]] = {}
    for run_id, digest, version in rows:
        windows.setdefault(digest, []).append((run_id, version))
    by_run = statuses_of_runs(session, [run_id for run_id, _, _ in rows])
    found = []
    for digest, members in windows.items():
        report = _flaky_digest(digest, members, by_run)
        if report.cases:
            found.append(report)
    return found[: where.limit] if where.limit is not None else found


def _flaky_digest(
    digest: str, members: list[tuple[int, str]], by_run: dict[int, dict[CaseKey, str]]
) -> FlakyDigest:
    statuses = [by_run[run_id] for run_id, _ in members]
    flipped = flaky_cases(statuses)
    counted = []
    for key in sorted(flipped):
        seen = [run[key] for run in statuses if key in run]
        counted.append(
            FlakyCase(
                case=case_id(key),
                suite=key[0],
                name=key[1],
                passed=sum(s in PASSING for s in seen),
                failed=sum(s in FAILING for s in seen),
                skipped=sum(s not in PASSING and s not in FAILING for s in seen),
            )
        )
    return FlakyDigest(
        digest=digest,
        versions=tuple(dict.fromkeys(version for _, version in members)),
        run_ids=tuple(run_id for run_id, _ in members),
        cases=tuple(counted),
    )


def statuses_of_runs(session: Session, run_ids: Sequence[int]) -> dict[int, dict[CaseKey, str]]:
    """Each run's case statuses: from its rows (three columns: no message read), or, for a
    run whose rows were pruned, from its stored result JSON (read for those runs only)."""
    found: dict[int, dict[CaseKey, str]] = {run_id: {} for run_id in run_ids}
    if not run_ids:
        return found
    c = _CASE.c
    query = select(c.run_id, c.suite, c.name, c.status).where(c.run_id.in_(list(run_ids)))
    for run_id, suite, name, status in session.connection().execute(query).all():
        found[run_id].setdefault((suite, name), status)
    missing = [run_id for run_id, statuses in found.items() if not statuses]
    if missing:
        stored = select(_RUN.c.id, _RUN.c.result).where(_RUN.c.id.in_(missing))
        for run_id, result in session.connection().execute(stored):
            found[run_id] = {k.key: k.status for k in cases.cases_of_result(result or {})}
    return found
