"""Queries and writes on both layers (Attune's tables and attuned's own), each inside a
session the caller owns. The rest of attuned speaks of packs here, never of Attune's columns.

A pack is *registered* when Attune's `pack` table has it, whoever put it there; it is
*managed* when attuned put it there (its `managed_pack` row names that very row). Only
managed packs have a digest, a source and a place in the pack store.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from sqlalchemy import bindparam
from sqlalchemy import insert as sa_insert
from sqlalchemy import select as sa_select
from sqlalchemy import update as sa_update
from sqlmodel import Session, col, delete, select

from attuned.pack.loader import Pack
from attuned.pack.manifest import Dependency, dependency_from
from attuned.results import PackTestResult
from attuned.store import cases
from attuned.store.attune import reader, writer
from attuned.store.attune import tables as t
from attuned.store.attune.reader import ComponentRow
from attuned.store.attune.rows import Installation, pack_rows
from attuned.store.models import (
    ManagedPack,
    PackRevision,
    PackSuspension,
    TestRun,
    utcnow,
)
from attuned.testing.regressions import cases_of

# -- reading packs ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RegisteredPack:
    """A pack as Attune's table has it, with attuned's bookkeeping when attuned manages it."""

    id: int
    ref: str
    label: str
    description: str | None
    version: str
    digest: str  # "" unless managed
    origin: str
    source: str | None  # None: by hand, or not attuned's
    source_revision: str | None
    managed: bool
    system: bool
    tags: list[str]
    runtime_deps: list[str]
    dependencies: list[str]
    meta: dict[str, Any]
    conf_schema: dict[str, Any]
    config: dict[str, Any]
    storage_path: str | None
    source_type: str | None
    source_url: str | None
    created_at: datetime
    updated_at: datetime


def _managed(session: Session) -> dict[str, ManagedPack]:
    return {m.ref: m for m in session.exec(select(ManagedPack)).all()}


class _Managed(Protocol):
    """What a RegisteredPack takes from attuned's bookkeeping (a ManagedPack has it)."""

    @property
    def pack_id(self) -> int: ...
    @property
    def version(self) -> str: ...
    @property
    def digest(self) -> str: ...
    @property
    def origin(self) -> str: ...
    @property
    def source(self) -> str | None: ...
    @property
    def source_revision(self) -> str | None: ...


class _Written(NamedTuple):
    """The managed_pack row save_pack has just written, without loading it back."""

    pack_id: int
    version: str
    digest: str
    origin: str
    source: str | None
    source_revision: str | None


def _is_current(managed: _Managed | None, pack_id: int, version: str) -> bool:
    """Whether attuned wrote the pack row Attune has now (not replaced behind its back)."""
    return managed is not None and _same_row(managed.pack_id, managed.version, pack_id, version)


def _same_row(
    managed_id: int | None, managed_version: str | None, pack_id: int, version: str
) -> bool:
    return managed_id == pack_id and managed_version == version


def _registered(row: reader.AttunePack, managed: _Managed | None) -> RegisteredPack:
    mine = managed if _is_current(managed, row.id, row.version) else None
    return RegisteredPack(
        id=row.id,
        ref=row.ref,
        label=row.label,
        description=row.description,
        version=row.version,
        digest=mine.digest if mine else "",
        origin=mine.origin if mine else (row.source_url or ""),
        source=mine.source if mine else None,
        source_revision=mine.source_revision if mine else None,
        managed=mine is not None,
        system=row.is_standard,
        tags=list(row.tags or []),
        runtime_deps=list(row.runtime_deps or []),
        dependencies=list(row.dependencies or []),
        meta=dict(row.meta or {}),
        conf_schema=dict(row.conf_schema or {}),
        config=dict(row.config or {}),
        storage_path=row.storage_path,
        source_type=row.source_type,
        source_url=row.source_url,
        created_at=row.created,
        updated_at=row.updated,
    )


def get_pack(session: Session, ref: str) -> RegisteredPack | None:
    rows = reader.packs(session.connection(), ref)
    if not rows:
        return None
    return _registered(rows[0], session.get(ManagedPack, ref))


def list_packs(session: Session) -> list[RegisteredPack]:
    managed = _managed(session)
    return [_registered(row, managed.get(row.ref)) for row in reader.packs(session.connection())]


@dataclass(frozen=True)
class PackHead:
    """What a full pass needs of every registered pack: no JSON columns (decoding them was a
    third of a no-op pass over 1,000 packs)."""

    ref: str
    version: str
    digest: str  # "" unless managed
    source: str | None
    updated_at: datetime
    managed: bool
    incomplete: bool = False  # Attune's rows lack components: register it again


def pack_heads(session: Session) -> list[PackHead]:
    """Every pack Attune has, managed or not (the planner needs them all: a dependency
    Attune registered itself still satisfies one of attuned's packs)."""
    m = ManagedPack.__table__.c  # type: ignore[attr-defined]
    p = t.pack.c
    rows = session.connection().execute(
        sa_select(
            p.ref,
            p.version,
            p.id,
            p.updated,
            m.digest,
            m.source,
            m.pack_id,
            m.version,
            m.incomplete,
        )
        .select_from(t.pack.outerjoin(ManagedPack.__table__, m.ref == p.ref))  # type: ignore[attr-defined]
        .order_by(p.ref)
    )
    heads = []
    for ref, version, pack_id, updated, digest, source, managed_id, managed_version, gap in rows:
        mine = _same_row(managed_id, managed_version, pack_id, version)
        heads.append(
            PackHead(
                ref=ref,
                version=version,
                digest=digest if mine else "",
                source=source if mine else None,
                updated_at=updated,
                managed=mine,
                incomplete=mine and gap is not None,
            )
        )
    return heads


def managed_heads(session: Session) -> list[PackHead]:
    """The packs attuned registered and serves from its store."""
    return [h for h in pack_heads(session) if h.managed]


def parse_dependency(text: str) -> Dependency | None:
    """A `pack.dependencies` string as a dependency; None for one attuned cannot read."""
    try:
        return Dependency.model_validate(dependency_from(text))
    except ValueError:
        return None


def pack_dependencies(session: Session) -> dict[str, list[Dependency]]:
    """Each pack's declared dependencies, read back from Attune's `TEXT[]`."""
    return {
        ref: [d for d in (parse_dependency(s) for s in strings) if d is not None]
        for ref, strings in reader.dependency_strings(session.connection()).items()
    }


def dependents(session: Session, ref: str) -> list[str]:
    """Refs of registered packs that declare `ref` as a dependency."""
    return sorted(
        other
        for other, deps in pack_dependencies(session).items()
        if any(d.ref == ref for d in deps)
    )


def component_refs(session: Session, wanted: dict[str, set[str]]) -> dict[str, set[str]]:
    """Of these trigger and action refs, the ones registered."""
    return reader.existing_refs(session.connection(), wanted)


def components_of(session: Session, pack_id: int) -> list[ComponentRow]:
    return reader.components_of(session.connection(), pack_id)


# -- writing packs -------------------------------------------------------------------------


# a registration's writes of attuned's own rows, built once
_MANAGED_MORE = ("pending_runtimes", "incomplete", "written_config", "updated_at")
_MP = ManagedPack.__table__.c  # type: ignore[attr-defined]
_MANAGED_OF = sa_select(_MP.pack_id, _MP.written_config).where(_MP.ref == bindparam("ref"))
_INSERT_MANAGED = sa_insert(ManagedPack.__table__)  # type: ignore[attr-defined]
_UPDATE_MANAGED = (
    sa_update(ManagedPack.__table__)  # type: ignore[attr-defined]
    .where(_MP.ref == bindparam("b_ref"))
    .values({name: bindparam(name) for name in (*_Written._fields, *_MANAGED_MORE)})
)
_PR = PackRevision.__table__.c  # type: ignore[attr-defined]
_CLOSE_REVISION = (
    sa_update(PackRevision.__table__)  # type: ignore[attr-defined]
    .where(_PR.ref == bindparam("b_ref"), _PR.deactivated_at.is_(None))
    .values(deactivated_at=bindparam("b_at"), deactivation_reason=bindparam("b_reason"))
)
_INSERT_REVISION = sa_insert(PackRevision.__table__)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Saved:
    pack: RegisteredPack
    report: writer.SyncReport


def save_pack(
    session: Session,
    pack: Pack,
    *,
    origin: str,
    install: Installation,
    source: str | None = None,
    source_revision: str | None = None,
    force: bool = False,
) -> Saved:
    """Write the pack into Attune's tables and record that attuned manages it (caller's
    transaction). Actions whose runtime was missing so far are linked if this pack adds it."""
    connection = session.connection()
    now = utcnow()
    before = connection.execute(_MANAGED_OF, {"ref": pack.ref}).first()
    current = reader.pack_id(connection, pack.ref)
    previous_config = dict(before[1]) if before is not None and before[0] == current else None
    rows = pack_rows(pack, install, now)
    report = writer.sync_pack(
        connection, rows, now=now, written_config=previous_config, force=force
    )
    written = _Written(report.pack_id, pack.version, pack.digest, origin, source, source_revision)
    values = {
        **written._asdict(),
        "pending_runtimes": dict(report.pending_runtimes),
        "incomplete": None,
        "written_config": dict(rows.config),
        "updated_at": now,
    }
    # Core, not the ORM: a registration's own row, written without loading it as an object
    if before is None:
        connection.execute(_INSERT_MANAGED, {**values, "ref": pack.ref, "created_at": now})
    else:
        connection.execute(_UPDATE_MANAGED, {**values, "b_ref": pack.ref})
    _expire(session, ManagedPack, lambda m: m.ref == pack.ref)
    if rows.runtimes:
        link_pending_runtimes(session)
    found = reader.packs(connection, pack.ref)
    assert found
    return Saved(_registered(found[0], written), report)


def _expire(session: Session, kind: type, which: Any) -> None:
    """Expire the objects of `kind` the session holds that `which` picks: rows just written
    by a Core statement must not be read from a stale copy."""
    for held in list(session.identity_map.values()):
        if isinstance(held, kind) and which(held):
            session.expire(held)


@dataclass(frozen=True)
class Preflight:
    """What would make writing a pack fail, asked before its tests run (so a refusal costs
    no test run); the transaction asks again."""

    removal_refusal: str | None  # it removes what other packs use
    runnerless_sensors: list[tuple[str, str]]  # (sensor ref, runner) with no runtime


def preflight(session: Session, pack: Pack, *, force: bool) -> Preflight:
    connection = session.connection()
    rows = pack_rows(pack, Installation("local_directory", None, None, ""), utcnow())
    problems = writer.removal_conflicts(connection, rows, force=force)
    return Preflight(
        removal_refusal=writer.removal_refusal(rows, problems) if problems else None,
        runnerless_sensors=writer.runnerless_sensors(connection, rows),
    )


def _pending(session: Session) -> dict[str, dict[str, str]]:
    """Managed ref -> its actions registered without a runtime (action ref -> runner); two
    columns only: a full pass asks this of every pack."""
    m = ManagedPack.__table__.c  # type: ignore[attr-defined]
    rows = session.connection().execute(sa_select(m.ref, m.pending_runtimes))
    return {str(ref): dict(pending) for ref, pending in rows if pending}


def _resolvable(session: Session, pending: dict[str, dict[str, str]]) -> dict[str, int]:
    """Runner -> runtime id, for the pending runners that name a runtime now (each asked
    once, whatever the number of actions)."""
    connection = session.connection()
    runners = {runner for actions in pending.values() for runner in actions.values()}
    found = {runner: writer.resolve_runtime(connection, runner) for runner in sorted(runners)}
    return {runner: hit[0] for runner, hit in found.items() if hit is not None}


def can_link_pending_runtimes(session: Session) -> bool:
    """Whether `link_pending_runtimes` would link anything (a read, for every full pass)."""
    pending = _pending(session)
    return bool(pending) and bool(_resolvable(session, pending))


def link_pending_runtimes(session: Session) -> list[str]:
    """Link actions registered without a runtime to the one their runner names, now that
    one exists (Attune would need their packs registered again); returns the actions linked.
    Writes only what changes."""
    pending = _pending(session)
    runtimes = _resolvable(session, pending)
    if not runtimes:
        return []
    connection = session.connection()
    linked = []
    for ref, actions in pending.items():
        remaining = {a: r for a, r in actions.items() if r not in runtimes}
        for action_ref, runner in actions.items():
            if runner in runtimes and writer.link_action_runtime(
                connection, action_ref, runtimes[runner]
            ):
                linked.append(action_ref)
        if remaining != actions:
            managed = session.get(ManagedPack, ref)
            assert managed is not None
            managed.pending_runtimes = remaining
            session.add(managed)
    return sorted(linked)


def delete_pack(session: Session, ref: str) -> None:
    """Delete the pack from Attune's tables (its components and Attune's test rows go by
    cascade; attuned's test runs stay) and forget that attuned managed it."""
    writer.delete_pack(session.connection(), ref)
    session.exec(delete(ManagedPack).where(col(ManagedPack.ref) == ref))


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


# -- test history ----------------------------------------------------------------------------


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


# -- activations -------------------------------------------------------------------------


def close_revision(session: Session, ref: str, reason: str) -> None:
    """Mark the open revision of `ref` (if any) as no longer served (one UPDATE)."""
    session.connection().execute(
        _CLOSE_REVISION, {"b_ref": ref, "b_at": utcnow(), "b_reason": reason}
    )
    _expire(session, PackRevision, lambda r: r.ref == ref)


def record_activation(session: Session, pack: RegisteredPack, reason: str) -> None:
    """Close the previous revision of the pack and open one for what is now served."""
    close_revision(session, pack.ref, "replaced")
    session.connection().execute(
        _INSERT_REVISION,
        {
            "ref": pack.ref,
            "version": pack.version,
            "digest": pack.digest,
            "source": pack.source,
            "source_revision": pack.source_revision,
            "reason": reason,
            "activated_at": utcnow(),
            "deactivated_at": None,
            "deactivation_reason": None,
        },
    )


def revisions(session: Session, ref: str) -> Sequence[PackRevision]:
    return session.exec(
        select(PackRevision).where(PackRevision.ref == ref).order_by(col(PackRevision.id).desc())
    ).all()


def activation_times(session: Session) -> dict[str, datetime]:
    """When each served ref's current revision was activated: two columns, not 10,000 ORM
    objects (a full pass asks for it; 195 -> 15 ms at 10,000 packs)."""
    r = PackRevision.__table__.c  # type: ignore[attr-defined]
    rows = session.connection().execute(
        sa_select(r.ref, r.activated_at).where(r.deactivated_at.is_(None))
    )
    return {ref: activated for ref, activated in rows}


def open_revisions(session: Session) -> dict[str, PackRevision]:
    """The revision currently served for each ref."""
    rows = session.exec(select(PackRevision).where(col(PackRevision.deactivated_at).is_(None)))
    return {r.ref: r for r in rows.all()}


# -- suspensions -------------------------------------------------------------------------


def suspended_refs(session: Session) -> dict[str, PackSuspension]:
    return {s.ref: s for s in session.exec(select(PackSuspension)).all()}


def suspend(session: Session, ref: str, reason: str) -> bool:
    """Mark `ref` suspended; False when it already was."""
    if session.get(PackSuspension, ref) is not None:
        return False
    session.add(PackSuspension(ref=ref, reason=reason))
    return True


def resume(session: Session, ref: str) -> bool:
    """Lift a suspension; False when `ref` was not suspended."""
    found = session.get(PackSuspension, ref)
    if found is None:
        return False
    session.delete(found)
    return True
