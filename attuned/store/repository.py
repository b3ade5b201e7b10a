"""Queries and writes on the attuned tables, each inside a session the caller owns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select as sa_select
from sqlmodel import Session, col, delete, select

from attuned.pack.loader import Pack
from attuned.store.models import (
    ComponentRecord,
    PackRecord,
    PackRevision,
    PackSuspension,
    TestExecutionRecord,
    utcnow,
)
from attuned.testing.results import PackTestResult


def get_pack(session: Session, ref: str) -> PackRecord | None:
    return session.exec(select(PackRecord).where(PackRecord.ref == ref)).first()


def list_packs(session: Session) -> Sequence[PackRecord]:
    return session.exec(select(PackRecord).order_by(col(PackRecord.ref))).all()


@dataclass(frozen=True)
class PackHead:
    """The columns a full pass needs of every pack, without the JSON ones: decoding three
    JSON columns per pack was a third of a no-op pass over 1,000 packs."""

    ref: str
    version: str
    digest: str
    source: str | None
    updated_at: datetime


def pack_heads(session: Session) -> list[PackHead]:
    columns = (
        col(PackRecord.ref),
        col(PackRecord.version),
        col(PackRecord.digest),
        col(PackRecord.source),
        col(PackRecord.updated_at),
    )
    rows = session.connection().execute(sa_select(*columns).order_by(columns[0])).all()
    return [PackHead(*row) for row in rows]


def pack_dependencies(session: Session) -> dict[str, list[Any]]:
    """Each pack's declared dependencies (the one JSON column the planner needs)."""
    rows = session.exec(select(PackRecord.ref, PackRecord.pack_metadata)).all()
    return {ref: list((meta or {}).get("dependencies", [])) for ref, meta in rows}


def components_of(session: Session, pack_id: int) -> Sequence[ComponentRecord]:
    return session.exec(
        select(ComponentRecord)
        .where(ComponentRecord.pack_id == pack_id)
        .order_by(col(ComponentRecord.kind), col(ComponentRecord.ref))
    ).all()


def component_refs(session: Session, refs: set[str]) -> set[str]:
    if not refs:
        return set()
    rows = session.exec(select(ComponentRecord.ref).where(col(ComponentRecord.ref).in_(refs)))
    return set(rows.all())


def executions(
    session: Session, ref: str, limit: int | None = None
) -> Sequence[TestExecutionRecord]:
    query = (
        select(TestExecutionRecord)
        .where(TestExecutionRecord.pack_ref == ref)
        .order_by(
            col(TestExecutionRecord.execution_time).desc(), col(TestExecutionRecord.id).desc()
        )
    )
    if limit is not None:
        query = query.limit(limit)
    return session.exec(query).all()


def latest_statuses(session: Session) -> dict[str, str]:
    """The last test status of every pack ref that ever ran tests."""
    latest: dict[str, str] = {}
    rows = session.exec(
        select(TestExecutionRecord.pack_ref, TestExecutionRecord.status).order_by(
            col(TestExecutionRecord.id)
        )
    )
    for ref, status in rows.all():
        latest[ref] = status
    return latest


def metadata_of(pack: Pack) -> dict[str, Any]:
    """What pack.yaml says beyond the dedicated columns, kept as JSON."""
    manifest = pack.manifest
    data = manifest.model_dump(
        mode="json",
        exclude={
            "ref",
            "label",
            "description",
            "version",
            "conf_schema",
            "config",
            "enabled",
            "system",
        },
        exclude_none=True,
    )
    data["dependencies"] = [d.model_dump() for d in manifest.dependencies]
    extras = manifest.extras
    for key in extras:
        data.pop(key, None)
    if extras:
        data["extra"] = extras
    return data


def dependents(session: Session, ref: str) -> list[str]:
    """Refs of registered packs that declare `ref` as a dependency."""
    found = []
    for record in list_packs(session):
        for dep in record.pack_metadata.get("dependencies", []):
            if isinstance(dep, dict) and dep.get("ref") == ref:
                found.append(record.ref)
    return found


def save_pack(
    session: Session,
    pack: Pack,
    origin: str,
    source: str | None = None,
    source_revision: str | None = None,
) -> PackRecord:
    """Insert or replace the pack row and all of its components (caller's transaction)."""
    manifest = pack.manifest
    record = get_pack(session, pack.ref)
    if record is None:
        record = PackRecord(
            ref=pack.ref, label=manifest.label, version=manifest.version, digest=pack.digest
        )
    else:
        session.exec(delete(ComponentRecord).where(col(ComponentRecord.pack_id) == record.id))
        record.updated_at = utcnow()
    record.label = manifest.label
    record.description = manifest.description
    record.version = manifest.version
    record.digest = pack.digest
    record.pack_metadata = metadata_of(pack)
    record.conf_schema = manifest.conf_schema.model_dump_raw() if manifest.conf_schema else None
    record.config = dict(manifest.config)
    record.origin = origin
    record.source = source
    record.source_revision = source_revision
    record.enabled = manifest.enabled
    record.system = manifest.system
    session.add(record)
    session.flush()
    assert record.id is not None
    session.add_all(
        ComponentRecord(
            pack_id=record.id,
            kind=c.kind,
            name=c.name,
            ref=c.ref,
            file=c.file,
            definition=c.definition,
        )
        for c in pack.components
    )
    session.flush()
    return record


def add_execution(
    session: Session,
    result: PackTestResult,
    *,
    trigger_type: str,
    outcome: str,
    pack_digest: str = "",
) -> TestExecutionRecord:
    record = TestExecutionRecord(
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
        result=result.model_dump(mode="json"),
        execution_time=result.execution_time,
    )
    session.add(record)
    session.flush()
    return record


def delete_pack(session: Session, record: PackRecord) -> None:
    """Delete the pack; its components go by ON DELETE CASCADE, executions stay."""
    session.exec(delete(PackRecord).where(col(PackRecord.id) == record.id))


def close_revision(session: Session, ref: str, reason: str) -> None:
    """Mark the open revision of `ref` (if any) as no longer served."""
    for revision in session.exec(
        select(PackRevision).where(
            PackRevision.ref == ref, col(PackRevision.deactivated_at).is_(None)
        )
    ).all():
        revision.deactivated_at = utcnow()
        revision.deactivation_reason = reason
        session.add(revision)


def record_activation(session: Session, record: PackRecord, reason: str) -> PackRevision:
    """Close the previous revision of the pack and open one for what is now served."""
    close_revision(session, record.ref, "replaced")
    revision = PackRevision(
        ref=record.ref,
        version=record.version,
        digest=record.digest,
        source=record.source,
        source_revision=record.source_revision,
        reason=reason,
    )
    session.add(revision)
    session.flush()
    return revision


def revisions(session: Session, ref: str) -> Sequence[PackRevision]:
    return session.exec(
        select(PackRevision).where(PackRevision.ref == ref).order_by(col(PackRevision.id).desc())
    ).all()


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


def latest_executions(session: Session) -> dict[str, TestExecutionRecord]:
    """The newest test execution of every pack ref."""
    latest: dict[str, TestExecutionRecord] = {}
    for row in session.exec(select(TestExecutionRecord).order_by(col(TestExecutionRecord.id))):
        latest[row.pack_ref] = row
    return latest


def open_revisions(session: Session) -> dict[str, PackRevision]:
    """The revision currently served for each ref."""
    rows = session.exec(select(PackRevision).where(col(PackRevision.deactivated_at).is_(None)))
    return {r.ref: r for r in rows.all()}
