"""Put a pack's rows into Attune's tables the way Attune's loader does, on the caller's
connection and inside its transaction.

Upsert by ref, so ids survive upgrades (executions, events and other packs' rules keep
pointing at the same rows); then delete what vanished from the pack. Unlike Attune's loader,
nothing is skipped with a warning: a row Attune would skip (a rule whose trigger is missing,
a sensor without a runtime) fails the whole registration with the reason, and removing a
component another pack still uses is refused instead of silently nulling that pack's link.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, bindparam, delete, func, insert, select, update
from sqlalchemy.sql import ColumnElement

from attuned.errors import ConflictError, DependencyError, Problem
from attuned.results import PackTestResult
from attuned.store.attune import tables as t
from attuned.store.attune.rows import PackRows, Row, test_execution_row

# Attune's resolve_runtime: runner type -> the runtime refs it tries, before a name lookup
_RUNTIME_REFS = {
    **dict.fromkeys(("shell", "bash", "sh"), "core.shell"),
    **dict.fromkeys(("python", "python3"), "core.python"),
    **dict.fromkeys(("node", "nodejs", "node.js"), "core.nodejs"),
    **dict.fromkeys(("native", "builtin", "standalone"), "core.native"),
}


# statements a registration runs every time, built once: building one again (and its cache
# key) cost more than running it on SQLite
_RUNTIME_BY_REF = select(t.runtime.c.id, t.runtime.c.ref).where(t.runtime.c.ref == bindparam("ref"))
_RUNTIME_BY_NAME = (
    select(t.runtime.c.id, t.runtime.c.ref)
    .where(func.lower(t.runtime.c.name) == bindparam("name"))
    .order_by(t.runtime.c.id)
    .limit(1)
)
_PACK_ID = select(t.pack.c.id).where(t.pack.c.ref == bindparam("ref"))
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


def runtime_ref_for(runner: str) -> str:
    """The runtime ref a runner type names first (`shell` -> `core.shell`)."""
    lowered = runner.lower()
    return _RUNTIME_REFS.get(lowered, lowered)


def resolve_runtime(connection: Connection, runner: str) -> tuple[int, str] | None:
    """(id, ref) of the runtime `runner` names, as Attune resolves it: by ref, then by name
    (any case); None when none does."""
    lowered = runner.lower()
    ref = runtime_ref_for(runner)
    found = connection.execute(_RUNTIME_BY_REF, {"ref": ref}).first()
    if found is None:
        found = connection.execute(_RUNTIME_BY_NAME, {"name": lowered}).first()
    return None if found is None else (int(found[0]), str(found[1]))


def runnerless_sensors(connection: Connection, rows: PackRows) -> list[tuple[str, str]]:
    """(sensor ref, runner) of the sensors whose runner names no runtime (`sync_pack` would
    refuse them: `sensor.runtime` is NOT NULL), counting the runtimes `rows` brings, which
    are written before the sensors."""
    own = {
        name
        for runtime in rows.runtimes
        for name in (runtime.row["ref"], runtime.row["name"].lower())
    }
    return [
        (str(sensor.row["ref"]), sensor.runner)
        for sensor in rows.sensors
        if not {runtime_ref_for(sensor.runner), sensor.runner.lower()} & own
        and resolve_runtime(connection, sensor.runner) is None
    ]


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


def planned_refs(rows: PackRows) -> dict[str, set[str]]:
    """The refs each component table will hold for this pack: what is not among them goes."""
    return {
        t.permission_set.name: {str(r["ref"]) for r in rows.permission_sets},
        t.runtime.name: {str(r.row["ref"]) for r in rows.runtimes},
        t.trigger.name: {str(r["ref"]) for r in rows.triggers},
        t.action.name: {str(a.row["ref"]) for a in rows.actions},
        t.rule.name: {str(r.row["ref"]) for r in rows.rules},
        t.sensor.name: {str(s.row["ref"]) for s in rows.sensors},
        t.workflow_definition.name: {str(w["ref"]) for w in rows.workflows},
    }


def removal_conflicts(connection: Connection, rows: PackRows, *, force: bool) -> list[str]:
    """Why writing `rows` would break other packs (what `sync_pack` would refuse), asked
    before a registration runs its tests, so a refusal costs no test run."""
    pack_id = connection.execute(_PACK_ID, {"ref": rows.ref}).scalar()
    if pack_id is None:
        return []
    return _removals(connection, int(pack_id), rows, force=force)[1]


def _removals(
    connection: Connection, pack_id: int, rows: PackRows, *, force: bool
) -> tuple[dict[Table, dict[int, str]], list[str]]:
    """What writing `rows` removes of the pack, and why other packs stand in the way."""
    doomed = vanished(connection, pack_id, planned_refs(rows))
    problems = users_elsewhere(
        connection,
        pack_id,
        runtimes=doomed[t.runtime],
        actions=doomed[t.action],
        triggers=doomed[t.trigger],
        include_rules=not force,
    )
    return doomed, problems


_REMOVAL_ORDER = (
    t.permission_set,
    t.sensor,
    t.rule,
    t.action,
    t.workflow_definition,
    t.trigger,
    t.runtime,
)


def vanished(
    connection: Connection, pack_id: int, keep: dict[str, set[str]]
) -> dict[Table, dict[int, str]]:
    """This pack's rows (id -> ref) that are not in `keep`, per table, in Attune's removal
    order (sensors, rules, actions, triggers, runtimes; permission sets and workflows too).
    Rows an operator made by hand (`is_adhoc`) are never among them."""
    doomed = {}
    for table in _REMOVAL_ORDER:
        condition: ColumnElement[bool] = table.c.pack == pack_id
        if keep.get(table.name):
            condition = condition & table.c.ref.not_in(sorted(keep[table.name]))
        if "is_adhoc" in table.c:
            condition = condition & table.c.is_adhoc.is_(False)
        rows = connection.execute(select(table.c.id, table.c.ref).where(condition)).all()
        doomed[table] = {int(i): str(r) for i, r in rows}
    return doomed


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
        doomed, problems = _removals(self.connection, self.pack_id, self.rows, force=force)
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


def removal_refusal(rows: PackRows, problems: list[str]) -> str:
    """Why the registration is refused; --force is offered only where it helps (rules)."""
    rules = any(p.startswith("rules") for p in problems)
    hint = " (rules: use --force to unlink them)" if rules else ""
    return (
        f"pack {rows.ref} {rows.pack['version']} removes components other packs use: "
        f"{'; '.join(problems)}{hint}"
    )


def users_elsewhere(
    connection: Connection,
    pack_id: int,
    *,
    runtimes: dict[int, str],
    actions: dict[int, str],
    triggers: dict[int, str],
    include_rules: bool = True,
) -> list[str]:
    """Why deleting these rows would break other packs: their actions and sensors run on the
    runtimes (the database refuses, or cascades the sensors away), their rules use the
    actions and triggers (the database would silently unlink them)."""
    problems = []
    checks: list[tuple[Table, Any, dict[int, str], str]] = [
        (t.action, t.action.c.runtime, runtimes, "actions {users} run on runtime {what}"),
        (t.sensor, t.sensor.c.runtime, runtimes, "sensors {users} run on runtime {what}"),
    ]
    if include_rules:
        checks += [
            (t.rule, t.rule.c.action, actions, "rules {users} use action {what}"),
            (t.rule, t.rule.c.trigger, triggers, "rules {users} use trigger {what}"),
        ]
    for table, column, victims, message in checks:
        if not victims:
            continue
        rows = connection.execute(
            select(column, table.c.ref)
            .where(column.in_(list(victims)), table.c.pack != pack_id)
            .order_by(table.c.ref)
        ).all()
        by_target: dict[int, list[str]] = {}
        for target, ref in rows:
            by_target.setdefault(int(target), []).append(str(ref))
        for target, users in sorted(by_target.items()):
            problems.append(message.format(users=", ".join(users), what=victims[target]))
    return problems


def delete_pack(connection: Connection, ref: str) -> int | None:
    """Delete the pack row (Attune's foreign keys cascade to its components and test
    executions); None when there is none. Refused while other packs run on its runtimes."""
    pack_id = connection.execute(select(t.pack.c.id).where(t.pack.c.ref == ref)).scalar()
    if pack_id is None:
        return None
    runtimes = dict(
        connection.execute(
            select(t.runtime.c.id, t.runtime.c.ref).where(t.runtime.c.pack == pack_id)
        ).all()
    )
    problems = users_elsewhere(
        connection, int(pack_id), runtimes=runtimes, actions={}, triggers={}, include_rules=False
    )
    if problems:
        raise ConflictError(
            f"pack {ref!r} provides runtimes other packs use: {'; '.join(problems)}; "
            "unregister those packs first"
        )
    connection.execute(delete(t.pack).where(t.pack.c.id == pack_id))
    return int(pack_id)


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


def link_action_runtime(connection: Connection, action_ref: str, runtime_id: int) -> bool:
    """Give an action registered without a runtime the one that now exists."""
    done = connection.execute(
        update(t.action)
        .where(t.action.c.ref == action_ref, t.action.c.runtime.is_(None))
        .values(runtime=runtime_id)
    )
    return bool(done.rowcount)


def _bind(key: str) -> str:
    return f"b_{key}"
