"""What attuned asks of Attune's tables: packs and their versions, the refs rules may use,
a pack's components for `attuned show`. Explicit column lists only (newer Attunes add
columns)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Table, bindparam, select

from attuned.store.attune import tables as t


@dataclass(frozen=True)
class AttunePack:
    """One row of Attune's `pack` table, the columns attuned reads."""

    id: int
    ref: str
    label: str
    description: str | None
    version: str
    conf_schema: dict[str, Any]
    config: dict[str, Any]
    meta: dict[str, Any]
    tags: list[str]
    runtime_deps: list[str]
    dependencies: list[str]
    is_standard: bool
    source_type: str | None
    source_url: str | None
    source_ref: str | None
    checksum: str | None
    storage_path: str | None
    created: datetime
    updated: datetime


_PACK_COLUMNS = [t.pack.c[f] for f in AttunePack.__dataclass_fields__]
# asked at every registration: built once (building them again cost more than running them)
_PACKS = select(*_PACK_COLUMNS).order_by(t.pack.c.ref)
_PACK = _PACKS.where(t.pack.c.ref == bindparam("ref"))
_PACK_ID = select(t.pack.c.id).where(t.pack.c.ref == bindparam("ref"))
_ACTION_RUNTIMES = (
    select(t.runtime.c.name, t.runtime.c.execution_config)
    .join(t.action, t.action.c.runtime == t.runtime.c.id)
    .where(t.action.c.pack == bindparam("pack"))
)


def packs(connection: Connection, ref: str | None = None) -> list[AttunePack]:
    rows = connection.execute(_PACKS) if ref is None else connection.execute(_PACK, {"ref": ref})
    return [AttunePack(*row) for row in rows.all()]


def pack_id(connection: Connection, ref: str) -> int | None:
    found = connection.execute(_PACK_ID, {"ref": ref}).scalar()
    return None if found is None else int(found)


def dependency_strings(connection: Connection) -> dict[str, list[str]]:
    """Each pack's `dependencies` as Attune stores them (plain strings)."""
    rows = connection.execute(select(t.pack.c.ref, t.pack.c.dependencies)).all()
    return {str(ref): list(deps or []) for ref, deps in rows}


_BY_KIND: dict[str, Table] = {"trigger": t.trigger, "action": t.action}


def existing_refs(connection: Connection, wanted: dict[str, set[str]]) -> dict[str, set[str]]:
    """Of the `trigger`/`action` refs in `wanted`, those Attune's tables hold."""
    found: dict[str, set[str]] = {}
    for kind, refs in wanted.items():
        table = _BY_KIND[kind]
        found[kind] = (
            {
                str(r)
                for r in connection.execute(
                    select(table.c.ref).where(table.c.ref.in_(refs))
                ).scalars()
            }
            if refs
            else set()
        )
    return found


@dataclass(frozen=True)
class ComponentRow:
    kind: str  # Attune's table name
    id: int
    ref: str
    label: str | None
    details: dict[str, Any]  # a few columns per kind, for people


_DETAILS: dict[str, tuple[Table, tuple[str, ...]]] = {
    "permission_set": (t.permission_set, ("label", "description")),
    "runtime": (t.runtime, ("name", "description")),
    "trigger": (t.trigger, ("label", "description", "enabled", "sensor_ref")),
    "action": (t.action, ("label", "description", "entrypoint", "runtime", "workflow_def")),
    "rule": (t.rule, ("label", "trigger_ref", "action_ref", "trigger", "action", "enabled")),
    "sensor": (t.sensor, ("label", "entrypoint", "runtime_ref", "enabled")),
    "workflow_definition": (t.workflow_definition, ("label", "version")),
}


def components_of(connection: Connection, pack: int) -> list[ComponentRow]:
    """The pack's rows in every component table, in Attune's load order."""
    found = []
    for kind, (table, columns) in _DETAILS.items():
        query = (
            select(table.c.id, table.c.ref, *(table.c[c] for c in columns))
            .where(table.c.pack == pack)
            .order_by(table.c.ref)
        )
        for row in connection.execute(query).all():
            details = dict(zip(columns, row[2:], strict=True))
            found.append(
                ComponentRow(kind, int(row[0]), str(row[1]), details.get("label"), details)
            )
    return found


def runtime_names(connection: Connection, pack: int, pack_dir: Path) -> list[str]:
    """What Attune's API puts in `PackRegistered.runtime_names` (its
    `pack_environment::collect_runtime_names_for_pack`): the lowercase names of the runtimes
    the pack's actions run on that need an environment set up, because their
    `execution_config` has an `environment`, or names a `dependencies.manifest_file` the pack
    has."""
    rows = connection.execute(_ACTION_RUNTIMES, {"pack": pack}).all()
    names = set()
    for name, config in rows:
        config = config if isinstance(config, dict) else {}
        dependencies = config.get("dependencies")
        manifest = dependencies.get("manifest_file") if isinstance(dependencies, dict) else None
        has_manifest = isinstance(manifest, str) and (pack_dir / manifest).exists()
        if config.get("environment") is not None or has_manifest:
            names.add(str(name).lower())
    return sorted(names)
