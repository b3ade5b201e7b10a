"""Reading the registered packs: Attune's `pack` rows joined with attuned's bookkeeping, so
the rest of attuned speaks of packs here, never of Attune's columns.

A pack is *registered* when Attune's `pack` table has it, whoever put it there; it is
*managed* when attuned put it there (its `managed_pack` row names that very row). Only
managed packs have a digest, a source and a place in the pack store.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import select as sa_select
from sqlmodel import Session, select

from attuned.pack.manifest import Dependency, dependency_from
from attuned.store.attune import reader
from attuned.store.attune import tables as t
from attuned.store.attune.reader import ComponentRow
from attuned.store.models import MANAGED_PACK, ManagedPack


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


def _is_current(managed: _Managed | None, pack_id: int, version: str) -> bool:
    """Whether attuned wrote the pack row Attune has now (not replaced behind its back)."""
    return managed is not None and _same_row(managed.pack_id, managed.version, pack_id, version)


def _same_row(
    managed_id: int | None, managed_version: str | None, pack_id: int, version: str
) -> bool:
    return managed_id == pack_id and managed_version == version


def registered_pack(row: reader.AttunePack, managed: _Managed | None) -> RegisteredPack:
    """Attune's row as attuned presents it: with `managed`'s bookkeeping only when attuned
    wrote this very row."""
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
    return registered_pack(rows[0], session.get(ManagedPack, ref))


def list_packs(session: Session) -> list[RegisteredPack]:
    managed = _managed(session)
    return [
        registered_pack(row, managed.get(row.ref)) for row in reader.packs(session.connection())
    ]


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
    m = MANAGED_PACK.c
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
        .select_from(t.pack.outerjoin(MANAGED_PACK, m.ref == p.ref))
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
