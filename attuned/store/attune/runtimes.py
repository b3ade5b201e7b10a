"""Which runtime a runner type names, as Attune resolves it: by ref, then by name.

Actions and sensors name a runner (`shell`, `python`); the tables want a runtime's id. The
writer asks this for every action and sensor it writes, the registry asks it before a run
(sensors it would refuse) and after one (actions registered without their runtime, linked
once it exists).
"""

from __future__ import annotations

from sqlalchemy import Connection, bindparam, func, select, update

from attuned.store.attune import tables as t
from attuned.store.attune.rows import PackRows

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


def link_action_runtime(connection: Connection, action_ref: str, runtime_id: int) -> bool:
    """Give an action registered without a runtime the one that now exists."""
    done = connection.execute(
        update(t.action)
        .where(t.action.c.ref == action_ref, t.action.c.runtime.is_(None))
        .values(runtime=runtime_id)
    )
    return bool(done.rowcount)
