"""What writing a pack removes of it, and why other packs may stand in the way.

Attune's loader deletes what vanished from a pack and lets the database null or cascade the
links other packs had to it; attuned refuses instead, naming the packs that use a doomed
runtime, action or trigger. Asked before a registration's tests (a refusal costs no run),
again inside its transaction, and when a whole pack is deleted.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Table, delete, select
from sqlalchemy.sql import ColumnElement

from attuned.errors import ConflictError
from attuned.store.attune import reader
from attuned.store.attune import tables as t
from attuned.store.attune.rows import PackRows


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
    pack_id = reader.pack_id(connection, rows.ref)
    if pack_id is None:
        return []
    return planned_removals(connection, pack_id, rows, force=force)[1]


def planned_removals(
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
    pack_id = reader.pack_id(connection, ref)
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
