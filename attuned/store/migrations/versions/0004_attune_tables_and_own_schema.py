"""Attune's tables and a schema of attuned's own: convert the old layout

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04

Until 0003 attuned kept packs in tables of its own design (`pack`, one `component` table
holding each file's YAML, its own `pack_test_execution`), which Attune never read. From here
packs live in Attune's tables (schema `attune`) and attuned's bookkeeping in schema
`attuned`. This revision moves what stays attuned's (revisions, suspensions, archives),
writes every old pack into Attune's tables through the same mapping a registration uses,
copies the test history, and drops the old tables.

Old-form rules (`trigger: {type}`, `action: {ref}`) are converted to `trigger_ref` and
`action_ref`. A component the mapping cannot take as it was stored (a sensor whose runtime
is not registered, an action with a workflow file, a rule whose target is missing) leaves
its pack `incomplete`: the daemon registers it again from its source, and the log names it.
The old tables did not say what kind of source a daemon's pack came from: its
`source_type`/`source_url` stay empty until its next registration (by hand: the path).
The old layout cannot be restored from the new one: downgrade from a backup.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import sqlmodel
from alembic import context, op
from pydantic import ValidationError

from attuned.errors import AttunedError
from attuned.pack.components import Component
from attuned.pack.components.models import SPECS as _SPECS
from attuned.pack.components.workflow_files import standalone_workflow
from attuned.pack.manifest import PackManifest
from attuned.pack.workflows import WorkflowSpec, task_problems
from attuned.report.log import Event, get_logger
from attuned.results import PackTestResult
from attuned.store.attune import schema as attune_schema
from attuned.store.attune import writer
from attuned.store.attune.rows import Installation, PackRows, add_component, pack_row

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_MOVED = ("pack_revision", "pack_suspension", "pack_archive")
_LEGACY = ("pack", "component", "pack_test_execution")
_NOT_IN_ATTUNE = {"policy", "cache"}  # old kinds Attune's loader does not read
_NO_ATTUNE_ROW = {"rolled_back", "aborted", "cancelled", "environment_failed"}
_WHEN = sa.DateTime(timezone=True)
# the old tables, typed so that JSON and times come back decoded on every backend
_OLD_COLUMNS = {
    "pack": {
        "id": sa.Integer(),
        "ref": sa.String(),
        "label": sa.String(),
        "description": sa.String(),
        "version": sa.String(),
        "digest": sa.String(),
        "metadata": sa.JSON(),
        "conf_schema": sa.JSON(),
        "config": sa.JSON(),
        "origin": sa.String(),
        "source": sa.String(),
        "source_revision": sa.String(),
        "system": sa.Boolean(),
        "created_at": _WHEN,
        "updated_at": _WHEN,
    },
    "component": {
        "pack_id": sa.Integer(),
        "kind": sa.String(),
        "name": sa.String(),
        "ref": sa.String(),
        "file": sa.String(),
        "definition": sa.JSON(),
    },
    "pack_test_execution": {
        "id": sa.Integer(),
        "pack_ref": sa.String(),
        "pack_version": sa.String(),
        "pack_digest": sa.String(),
        "trigger_type": sa.String(),
        "status": sa.String(),
        "total_tests": sa.Integer(),
        "passed": sa.Integer(),
        "failed": sa.Integer(),
        "skipped": sa.Integer(),
        "pass_rate": sa.Float(),
        "duration_ms": sa.Integer(),
        "gate_passed": sa.Boolean(),
        "gate_reason": sa.String(),
        "outcome": sa.String(),
        "result": sa.JSON(),
        "execution_time": _WHEN,
        "created_at": _WHEN,
    },
}
_MANAGED = {
    "ref": sa.String(),
    "pack_id": sa.BigInteger(),
    "version": sa.String(),
    "digest": sa.String(),
    "origin": sa.String(),
    "source": sa.String(),
    "source_revision": sa.String(),
    "pending_runtimes": sa.JSON(),
    "incomplete": sa.String(),
    "written_config": sa.JSON(),
    "created_at": _WHEN,
    "updated_at": _WHEN,
}
_TEST_RUN = {
    **{k: v for k, v in _OLD_COLUMNS["pack_test_execution"].items() if k != "id"},
    "attune_execution_id": sa.BigInteger(),
}


def _table(name: str, schema: str | None, columns: dict[str, Any]) -> sa.TableClause:
    return sa.table(name, *(sa.column(c, kind) for c, kind in columns.items()), schema=schema)


def upgrade() -> None:
    bind = op.get_bind()
    attributes = context.config.attributes
    own = attributes.get("own_schema", "attuned")
    postgres = bind.dialect.name == "postgresql"
    if postgres:
        legacy = {n: _table(n, "public", _OLD_COLUMNS[n]) for n in _LEGACY}
        for name in _MOVED:
            op.execute(f"ALTER TABLE public.{name} SET SCHEMA {own}")
    else:  # one namespace: the old `pack` must make way for Attune's
        for name in _LEGACY:
            op.rename_table(name, f"legacy_{name}")
        legacy = {n: _table(f"legacy_{n}", None, _OLD_COLUMNS[n]) for n in _LEGACY}
    attune_schema.ensure(
        bind,
        may_create=bool(attributes.get("create_attune_tables")),
        where=str(attributes.get("where", "the database")),
    )
    _create_own_tables(own)
    # the index of a table now in attuned's schema is named for it, as the models name it
    op.drop_index("ix_pack_revision_ref", table_name="pack_revision", schema=own)
    op.create_index("ix_attuned_pack_revision_ref", "pack_revision", ["ref"], schema=own)
    packs_dir = attributes.get("packs_dir")
    converted, incomplete = _convert_packs(bind, legacy, own, packs_dir)
    runs = _copy_history(bind, legacy, own, converted)
    for name in ("component", "pack_test_execution", "pack"):
        table = legacy[name]
        op.execute(f"DROP TABLE {table.schema + '.' if table.schema else ''}{table.name}")
    get_logger().info(
        Event.DB_CONVERTED,
        packs=len(converted),
        test_runs=runs,
        incomplete=incomplete,
        note="incomplete packs are registered again from their sources" if incomplete else None,
    )


def downgrade() -> None:
    raise AttunedError(
        "revision 0004 moved attuned's packs into Attune's tables and cannot be undone; "
        "restore the database from a backup taken before the upgrade"
    )


def _create_own_tables(own: str | None) -> None:
    auto = sqlmodel.sql.sqltypes.AutoString
    op.create_table(
        "managed_pack",
        sa.Column("ref", auto(length=255), nullable=False),
        sa.Column("pack_id", sa.BigInteger(), nullable=False),
        sa.Column("version", auto(length=64), nullable=False),
        sa.Column("digest", auto(length=64), nullable=False),
        sa.Column("origin", auto(), nullable=False),
        sa.Column("source", auto(length=255), nullable=True),
        sa.Column("source_revision", auto(length=255), nullable=True),
        sa.Column("pending_runtimes", sa.JSON(), nullable=False),
        sa.Column("incomplete", auto(), nullable=True),
        sa.Column("written_config", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("ref"),
        schema=own,
    )
    op.create_index("ix_attuned_managed_pack_source", "managed_pack", ["source"], schema=own)
    op.create_table(
        "test_run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("pack_ref", auto(length=255), nullable=False),
        sa.Column("pack_version", auto(length=64), nullable=False),
        sa.Column("pack_digest", auto(length=64), nullable=False),
        sa.Column("trigger_type", auto(length=32), nullable=False),
        sa.Column("status", auto(length=16), nullable=False),
        sa.Column("total_tests", sa.Integer(), nullable=False),
        sa.Column("passed", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("skipped", sa.Integer(), nullable=False),
        sa.Column("pass_rate", sa.Float(), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("gate_passed", sa.Boolean(), nullable=False),
        sa.Column("gate_reason", auto(), nullable=False),
        sa.Column("outcome", auto(length=32), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.Column("attune_execution_id", sa.BigInteger(), nullable=True),
        sa.Column("execution_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        schema=own,
    )
    op.create_index("ix_attuned_test_run_pack_ref", "test_run", ["pack_ref"], schema=own)


# -- packs ----------------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


def _manifest(row: Any) -> PackManifest:
    meta = dict(row.metadata or {})
    data = {
        "ref": row.ref,
        "label": row.label,
        "description": row.description,
        "version": row.version,
        "system": bool(row.system),
        "conf_schema": row.conf_schema,
        "config": row.config or {},
        "meta": meta.get("meta") or {},
        "tags": meta.get("tags") or [],
        "runtime_deps": meta.get("runtime_deps") or [],
        "dependencies": meta.get("dependencies") or [],
    }
    try:
        return PackManifest.model_validate(data)
    except ValidationError:  # checked when it was registered; keep what certainly fits
        keep = ("ref", "label", "description", "version", "system")
        return PackManifest.model_validate({k: data[k] for k in keep})


def _legacy_spec(pack_ref: str, component: Any) -> tuple[Component | None, str | None]:
    """The component as the new mapping takes it, or why it cannot be."""
    kind = str(component.kind)
    data = {**(component.definition or {}), "ref": component.ref}
    if kind in _NOT_IN_ATTUNE or (kind not in _SPECS and kind != "workflow"):
        return None, None  # Attune never read these: nothing is lost
    if kind == "rule":  # the old StackStorm-like form
        trigger, action = data.pop("trigger", None), data.pop("action", None)
        if isinstance(trigger, dict):
            data.setdefault("trigger_ref", trigger.get("type") or trigger.get("ref"))
        elif isinstance(trigger, str):
            data.setdefault("trigger_ref", trigger)
        if isinstance(action, dict):
            data.setdefault("action_ref", action.get("ref"))
            data.setdefault("action_params", action.get("parameters") or {})
        elif isinstance(action, str):
            data.setdefault("action_ref", action)
    if kind == "action" and data.get("workflow_file"):
        return None, f"action {component.ref}: its workflow file is not in the database"
    try:
        if kind == "workflow":
            spec = WorkflowSpec.model_validate(data)
            if task_problems(spec.tasks):
                return None, f"workflow {component.ref}: its tasks do not parse"
            workflow = standalone_workflow(
                str(component.ref), str(component.name), str(component.file), spec, data
            )
            return Component(kind, str(component.ref), str(component.file), workflow, data), None
        spec = _SPECS[kind].model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        return None, f"{kind} {component.ref}: {where}: {first['msg']}"
    return Component(kind, str(component.ref), str(component.file), spec, data), None


def _convert_packs(
    bind: sa.Connection, legacy: dict[str, sa.TableClause], own: str | None, packs_dir: Any
) -> tuple[dict[str, int], dict[str, str]]:
    """Write every old pack into Attune's tables; (ref -> Attune id, ref -> what is missing)."""
    old = legacy["pack"]
    packs = bind.execute(sa.select(old).order_by(old.c.ref)).all()
    old = legacy["component"]
    components: dict[int, list[Any]] = {}
    for component in bind.execute(sa.select(old).order_by(old.c.kind, old.c.ref)).all():
        components.setdefault(int(component.pack_id), []).append(component)
    plans: dict[str, tuple[Any, PackManifest, list[Component], list[str]]] = {}
    for row in packs:
        manifest = _manifest(row)
        mapped, gaps = [], []
        for component in components.get(int(row.id), []):
            converted, why = _legacy_spec(row.ref, component)
            if converted is not None:
                mapped.append(converted)
            elif why is not None:
                gaps.append(why)
        plans[row.ref] = (row, manifest, mapped, gaps)
    converted: dict[str, int] = {}
    # two rounds: every pack's own components first, then rules and sensors, which may name
    # another pack's triggers, actions and runtimes
    for final in (False, True):
        for ref, (row, manifest, mapped, gaps) in plans.items():
            rows = _rows(row, manifest, packs_dir)
            for component in mapped:
                if final or component.kind not in ("rule", "sensor"):
                    add_component(rows, component, ref)
            savepoint = bind.begin_nested()
            try:
                report = writer.sync_pack(
                    bind, rows, now=_now(), written_config=dict(row.config or {}), force=True
                )
            except AttunedError as exc:  # a rule or sensor the database cannot take
                savepoint.rollback()
                if not final:
                    raise
                gaps.append(str(exc).splitlines()[0])
                rows = _rows(row, manifest, packs_dir)
                for component in mapped:
                    if component.kind not in ("rule", "sensor"):
                        add_component(rows, component, ref)
                report = writer.sync_pack(bind, rows, now=_now(), force=True)
            else:
                savepoint.commit()
            converted[ref] = report.pack_id
            if final:
                _manage(bind, own, row, report, gaps)
    return converted, {ref: "; ".join(p[3]) for ref, p in plans.items() if p[3]}


def _rows(row: Any, manifest: PackManifest, packs_dir: Any) -> PackRows:
    origin = str(row.origin or "")
    by_hand = row.source is None  # a daemon's origin is `<source>:<entry>`, not a path
    archive = origin.endswith((".tar.gz", ".tgz", ".zip"))
    install = Installation(
        source_type=("local_archive" if archive else "local_directory") if by_hand else "",
        source_url=(origin or None) if by_hand else None,
        source_ref=row.source_revision,
        storage_path=str(Path(packs_dir).absolute() / row.ref) if packs_dir else "",
    )
    values = pack_row(manifest, str(row.digest), install, _now())
    values["storage_path"] = install.storage_path or None
    values["source_type"] = install.source_type or None
    values["installed_at"] = row.created_at
    return PackRows(pack=values, config=dict(row.config or {}))


def _manage(bind: sa.Connection, own: str | None, row: Any, report: Any, gaps: list[str]) -> None:
    bind.execute(
        sa.insert(_table("managed_pack", own, _MANAGED)).values(
            ref=row.ref,
            pack_id=report.pack_id,
            version=row.version,
            digest=row.digest,
            origin=row.origin,
            source=row.source,
            source_revision=row.source_revision,
            pending_runtimes=report.pending_runtimes,
            incomplete="; ".join(gaps) if gaps else None,
            written_config=row.config or {},
            created_at=row.created_at,
            updated_at=row.updated_at,
        )
    )


# -- test history ---------------------------------------------------------------------------


def _copy_history(
    bind: sa.Connection,
    legacy: dict[str, sa.TableClause],
    own: str | None,
    converted: dict[str, int],
) -> int:
    """Every old run into attuned's history; runs of a pack that still exists, and that
    Attune would have kept (not a first registration rolled back), into Attune's too."""
    old = legacy["pack_test_execution"]
    runs = bind.execute(sa.select(old).order_by(old.c.id)).all()
    table = _table("test_run", own, _TEST_RUN)
    for run in runs:
        attune_id = None
        pack_id = converted.get(run.pack_ref)
        keep = run.trigger_type != "register" or run.outcome not in _NO_ATTUNE_ROW
        if pack_id is not None and keep:
            try:
                result = PackTestResult.model_validate(run.result)
            except ValidationError:
                result = None
            if result is not None:
                attune_id = writer.add_test_execution(bind, pack_id, result, run.trigger_type)
        values = {c: getattr(run, c) for c in _TEST_RUN if c != "attune_execution_id"}
        bind.execute(sa.insert(table).values(**values, attune_execution_id=attune_id))
    return len(runs)
