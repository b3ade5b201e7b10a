"""Put a pack's rows into Attune's tables the way Attune's loader does, on the caller's
connection and inside its transaction.

Upsert by ref, so ids survive upgrades (executions, events and other packs' rules keep
pointing at the same rows); then delete what vanished from the pack. Unlike Attune's loader,
nothing is skipped with a warning: a row Attune would skip (a rule whose trigger is missing,
a sensor without a runtime) fails the whole registration with the reason, and removing a
component another pack still uses is refused instead of silently nulling that pack's link.

Which runtime a runner names is `runtimes`' to say, what vanished and who still uses it is
`removals`'.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, bindparam, delete, insert, select, update

from attuned.errors import ConflictError, DependencyError, Problem
from attuned.results import PackTestResult
from attuned.store.attune import tables as t
from attuned.store.attune.execution_rows import test_execution_row
from attuned.store.attune.removals import planned_removals, removal_refusal
from attuned.store.attune.rows import PackRows, Row
from attuned.store.attune.runtimes import resolve_runtime

# statements a registration runs every time, built once: building one again (and its cache
# key) cost more than running it on SQLite
_PACK_TO_WRITE = select(t.pack.c.id, t.pack.c.config).where(t.pack.c.ref == bindparam("ref"))
_PACK_TO_WRITE_LOCKED = _PACK_TO_WRITE.with_for_update()
_INSERT_PACK = insert(t.pack).returning(t.pack.c.id)
_IDS_BY_REF: dict[str, Any] = {}  # table name -> select(ref, id) where ref in :refs
_INSERT_RETURNING_IDS: dict[str, Any] = {}  # table name -> insert(...) returning (ref, id)


def _ids_by_ref(table: Table) -> Any:
    if table.name not in _IDS_BY_REF:
        _IDS_BY_REF[table.name] = select(table.c.ref, table.c.id).where(
            table.c.ref.in_(bindparam("refs", expanding=True))
        )
    return _IDS_BY_REF[table.name]


def _insert_returning_ids(table: Table) -> Any:
    if table.name not in _INSERT_RETURNING_IDS:
        _INSERT_RETURNING_IDS[table.name] = insert(table).returning(table.c.ref, table.c.id)
    return _INSERT_RETURNING_IDS[table.name]


@dataclass
class SyncReport:
    pack_id: int
    created: bool
    config: dict[str, Any]  # what `pack.config` now holds
    pending_runtimes: dict[str, str] = field(default_factory=dict)  # action ref -> runner
    removed: dict[str, list[str]] = field(default_factory=dict)  # table -> refs deleted
    warnings: list[str] = field(default_factory=list)


def merged_config(
    declared: dict[str, Any], existing: dict[str, Any] | None, written: dict[str, Any] | None
) -> dict[str, Any]:
    """The pack's config after an upgrade: pack.yaml's, except values an operator changed
    in Attune since attuned last wrote them (`written`; unknown: every existing value)."""
    if existing is None:
        return dict(declared)
    if written is None:
        return {**declared, **existing}
    changed = {k: v for k, v in existing.items() if k not in written or written[k] != v}
    return {**declared, **changed}


def sync_pack(
    connection: Connection,
    rows: PackRows,
    *,
    now: datetime,
    written_config: dict[str, Any] | None = None,
    force: bool = False,
) -> SyncReport:
    """Write the pack and its components; raise DependencyError or ConflictError (and leave
    the rollback to the caller) when the database cannot take them as they are."""
    report = _write_pack(connection, rows, now, written_config)
    writer = _Writer(connection, rows, report, now)
    writer.permission_sets()
    writer.runtimes()
    writer.triggers()
    writer.workflows()
    writer.actions()
    writer.rules()
    writer.sensors()
    writer.remove_vanished(force=force)
    return report


def _write_pack(
    connection: Connection, rows: PackRows, now: datetime, written: dict[str, Any] | None
) -> SyncReport:
    lock = _PACK_TO_WRITE_LOCKED if connection.dialect.name == "postgresql" else _PACK_TO_WRITE
    existing = connection.execute(lock, {"ref": rows.ref}).first()
    config = merged_config(rows.config, existing[1] if existing else None, written)
    values = {**rows.pack, "config": config, "updated": now}
    if existing is None:
        pack_id = connection.execute(_INSERT_PACK, {**values, "created": now}).scalar_one()
        return SyncReport(int(pack_id), True, config)
    connection.execute(update(t.pack).where(t.pack.c.id == existing[0]).values(**values))
    return SyncReport(int(existing[0]), False, config)


class _Writer:
    def __init__(self, connection: Connection, rows: PackRows, report: SyncReport, now: datetime):
        self.connection = connection
        self.rows = rows
        self.report = report
        self.now = now
        self.pack_id = report.pack_id

    # -- generic upsert -------------------------------------------------------------------

    def upsert(self, table: Table, rows: Sequence[Row]) -> dict[str, int]:
        """Insert or update `rows` by ref (ids survive); return ref -> id."""
        if not rows:
            return {}
        refs = [str(r["ref"]) for r in rows]
        found = dict(self.connection.execute(_ids_by_ref(table), {"refs": refs}).all())
        base = {"pack": self.pack_id, "updated": self.now}
        changes = [{**r, **base, "_id": found[r["ref"]]} for r in rows if r["ref"] in found]
        if changes:
            self._update_many(table, changes)
        fresh = [{**r, **base, "created": self.now} for r in rows if r["ref"] not in found]
        if fresh:
            inserted = self.connection.execute(_insert_returning_ids(table), fresh).all()
            found.update(dict(inserted))
        return {str(k): int(v) for k, v in found.items()}

    def _update_many(self, table: Table, changes: list[Row]) -> None:
        # group by key set: an executemany needs every row to name the same columns
        groups: dict[tuple[str, ...], list[Row]] = {}
        for change in changes:
            groups.setdefault(tuple(sorted(change)), []).append(change)
        for keys, group in groups.items():
            columns = [k for k in keys if k not in ("_id", "ref")]
            statement = (
                update(table)
                .where(table.c.id == bindparam("b__id"))
                .values({k: bindparam(_bind(k)) for k in columns})
            )
            self.connection.execute(statement, [{_bind(k): v for k, v in c.items()} for c in group])

    # -- the tables, in Attune's order ----------------------------------------------------

    def permission_sets(self) -> None:
        self.upsert(t.permission_set, self.rows.permission_sets)

    def runtimes(self) -> None:
        ids = self.upsert(t.runtime, [r.row for r in self.rows.runtimes])
        for runtime in self.rows.runtimes:
            self.runtime_versions(ids[str(runtime.row["ref"])], runtime.versions or [])

    def runtime_versions(self, runtime_id: int, versions: list[Row]) -> None:
        """A runtime's `versions`; `available` is the workers' to set, so an update keeps it
        and a new version starts unavailable (Attune's loader)."""
        table = t.runtime_version
        existing = dict(
            self.connection.execute(
                select(table.c.version, table.c.id).where(table.c.runtime == runtime_id)
            ).all()
        )
        wanted = {str(v["version"]) for v in versions}
        stale = [i for version, i in existing.items() if version not in wanted]
        if stale:
            self.connection.execute(delete(table).where(table.c.id.in_(stale)))
        changes = [
            {**v, "runtime": runtime_id, "updated": self.now, "_id": existing[v["version"]]}
            for v in versions
            if v["version"] in existing
        ]
        if changes:
            self._update_many(table, changes)
        fresh = [
            {
                **v,
                "runtime": runtime_id,
                "available": False,
                "created": self.now,
                "updated": self.now,
            }
            for v in versions
            if v["version"] not in existing
        ]
        if fresh:
            self.connection.execute(insert(table), fresh)

    def triggers(self) -> None:
        self.upsert(t.trigger, self.rows.triggers)

    def workflows(self) -> None:
        unique = {str(w["ref"]): w for w in self.rows.workflows}  # one file, several actions
        self.workflow_ids = self.upsert(t.workflow_definition, list(unique.values()))

    def actions(self) -> None:
        cache: dict[str, tuple[int, str] | None] = {}
        rows = []
        for action in self.rows.actions:
            runtime_id = None
            if action.runner is not None:
                if action.runner not in cache:
                    cache[action.runner] = resolve_runtime(self.connection, action.runner)
                found = cache[action.runner]
                if found is None:
                    self.report.pending_runtimes[str(action.row["ref"])] = action.runner
                    self.report.warnings.append(
                        f"action {action.row['ref']}: runner_type {action.runner!r} names no "
                        "registered runtime (register the pack that provides it, e.g. core); "
                        "registered without one, as Attune does, and linked when it arrives"
                    )
                else:
                    runtime_id = found[0]
            workflow_id = self.workflow_ids[action.workflow] if action.workflow else None
            rows.append({**action.row, "runtime": runtime_id, "workflow_def": workflow_id})
        self.upsert(t.action, rows)

    def rules(self) -> None:
        rows = []
        for rule in self.rows.rules:
            row = rule.row
            trigger_id = self._id_of(t.trigger, str(row["trigger_ref"]), row, "trigger_ref")
            action_id = self._id_of(t.action, str(row["action_ref"]), row, "action_ref")
            rows.append({**row, "trigger": trigger_id, "action": action_id})
        self.upsert(t.rule, rows)

    def _id_of(self, table: Table, ref: str, row: Row, field_name: str) -> int:
        found = self.connection.execute(select(table.c.id).where(table.c.ref == ref)).scalar()
        if found is None:
            raise DependencyError(
                [Problem(None, f"rule {row['ref']}: {field_name} {ref!r} is not registered")]
            )
        return int(found)

    def sensors(self) -> None:
        rows = []
        for sensor in self.rows.sensors:
            found = resolve_runtime(self.connection, sensor.runner)
            if found is None:
                raise DependencyError(
                    [
                        Problem(
                            None,
                            f"sensor {sensor.row['ref']}: runner_type {sensor.runner!r} names no "
                            "registered runtime; register the pack that provides it (core "
                            "provides core.native, core.shell, core.python ...) first",
                        )
                    ]
                )
            rows.append({**sensor.row, "runtime": found[0], "runtime_ref": found[1]})
        ids = self.upsert(t.sensor, rows)
        for sensor in self.rows.sensors:
            ref = str(sensor.row["ref"])
            self.connection.execute(
                update(t.trigger)
                .where(t.trigger.c.ref.in_(sensor.triggers))
                .values(sensor=ids[ref], sensor_ref=ref, updated=self.now)
            )
            # a trigger the sensor no longer fires is no longer the sensor's
            self.connection.execute(
                update(t.trigger)
                .where(t.trigger.c.sensor == ids[ref], t.trigger.c.ref.not_in(sensor.triggers))
                .values(sensor=None, sensor_ref=None, updated=self.now)
            )

    # -- what vanished --------------------------------------------------------------------

    def remove_vanished(self, *, force: bool) -> None:
        """Delete this pack's components that are no longer in it, refusing when other
        packs use them."""
        if self.report.created:
            # a pack row inserted by this transaction: every component table's `pack`
            # cascades on delete (Attune's migrations, tables.py), so no row can name an id
            # that is new; seven reads a new pack need not make
            return
        doomed, problems = planned_removals(self.connection, self.pack_id, self.rows, force=force)
        if problems:
            raise ConflictError(removal_refusal(self.rows, problems))
        if doomed[t.sensor]:  # the foreign key nulls `trigger.sensor`, not its text twin
            self.connection.execute(
                update(t.trigger)
                .where(t.trigger.c.sensor.in_(list(doomed[t.sensor])))
                .values(sensor_ref=None, updated=self.now)
            )
        for table, victims in doomed.items():
            if victims:
                self.connection.execute(delete(table).where(table.c.id.in_(list(victims))))
                self.report.removed[table.name] = sorted(victims.values())


def add_test_execution(
    connection: Connection, pack_id: int, result: PackTestResult, trigger: str
) -> int:
    """One row of `pack_test_execution`, as Attune's PackTestRepository writes it."""
    row = test_execution_row(pack_id, result, trigger)
    return int(
        connection.execute(
            insert(t.pack_test_execution).values(**row).returning(t.pack_test_execution.c.id)
        ).scalar_one()
    )


def _bind(key: str) -> str:
    return f"b_{key}"
