"""Writing a pack's registration on both layers (Attune's tables and attuned's own), inside
a session the caller owns: the pack's rows, the `managed_pack` row that says attuned put
them there, the runtimes its actions waited for, and the deletion of it all.

Reading packs back is `attuned.store.registered_packs`'s job; the registry and the daemon still
reach a few of the readers, and the run, revision and suspension writers, through this
module (see `__all__`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from sqlalchemy import bindparam
from sqlalchemy import insert as sa_insert
from sqlalchemy import select as sa_select
from sqlalchemy import update as sa_update
from sqlmodel import Session, col, delete

from attuned.pack.loader import Pack
from attuned.store.attune import reader, removals, writer
from attuned.store.attune.rows import Installation, pack_rows
from attuned.store.attune.runtimes import link_action_runtime, resolve_runtime, runnerless_sensors
from attuned.store.models import MANAGED_PACK, ManagedPack, utcnow
from attuned.store.registered_packs import (
    PackHead,
    RegisteredPack,
    component_refs,
    dependents,
    get_pack,
    managed_heads,
    registered_pack,
)
from attuned.store.revisions import close_revision, record_activation
from attuned.store.run_records import add_test_run
from attuned.store.session_cache import expire_held
from attuned.store.suspensions import suspended_refs

# the registry, the daemon and `history` reach these through this module
__all__ = [
    "PackHead",
    "Preflight",
    "RegisteredPack",
    "Saved",
    "add_test_run",
    "can_link_pending_runtimes",
    "close_revision",
    "component_refs",
    "delete_pack",
    "dependents",
    "get_pack",
    "link_pending_runtimes",
    "managed_heads",
    "preflight",
    "record_activation",
    "save_pack",
    "suspended_refs",
]


class _Written(NamedTuple):
    """The managed_pack row save_pack has just written, without loading it back."""

    pack_id: int
    version: str
    digest: str
    origin: str
    source: str | None
    source_revision: str | None


# a registration's writes of attuned's own rows, built once
_MANAGED_MORE = ("pending_runtimes", "incomplete", "written_config", "updated_at")
_MP = MANAGED_PACK.c
_MANAGED_OF = sa_select(_MP.pack_id, _MP.written_config).where(_MP.ref == bindparam("ref"))
_INSERT_MANAGED = sa_insert(MANAGED_PACK)
_UPDATE_MANAGED = (
    sa_update(MANAGED_PACK)
    .where(_MP.ref == bindparam("b_ref"))
    .values({name: bindparam(name) for name in (*_Written._fields, *_MANAGED_MORE)})
)


@dataclass(frozen=True)
class Saved:
    """What save_pack wrote: the pack as Attune now has it, and the writer's report."""

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
    expire_held(session, ManagedPack, lambda m: m.ref == pack.ref)
    if rows.runtimes:
        link_pending_runtimes(session)
    found = reader.packs(connection, pack.ref)
    assert found
    return Saved(registered_pack(found[0], written), report)


@dataclass(frozen=True)
class Preflight:
    """What would make writing a pack fail, asked before its tests run (so a refusal costs
    no test run); the transaction asks again."""

    removal_refusal: str | None  # it removes what other packs use
    runnerless_sensors: list[tuple[str, str]]  # (sensor ref, runner) with no runtime


def preflight(session: Session, pack: Pack, *, force: bool) -> Preflight:
    connection = session.connection()
    rows = pack_rows(pack, Installation("local_directory", None, None, ""), utcnow())
    problems = removals.removal_conflicts(connection, rows, force=force)
    return Preflight(
        removal_refusal=removals.removal_refusal(rows, problems) if problems else None,
        runnerless_sensors=runnerless_sensors(connection, rows),
    )


def _pending(session: Session) -> dict[str, dict[str, str]]:
    """Managed ref -> its actions registered without a runtime (action ref -> runner); two
    columns only: a full pass asks this of every pack."""
    m = MANAGED_PACK.c
    rows = session.connection().execute(sa_select(m.ref, m.pending_runtimes))
    return {str(ref): dict(pending) for ref, pending in rows if pending}


def _resolvable(session: Session, pending: dict[str, dict[str, str]]) -> dict[str, int]:
    """Runner -> runtime id, for the pending runners that name a runtime now (each asked
    once, whatever the number of actions)."""
    connection = session.connection()
    runners = {runner for actions in pending.values() for runner in actions.values()}
    found = {runner: resolve_runtime(connection, runner) for runner in sorted(runners)}
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
            if runner in runtimes and link_action_runtime(connection, action_ref, runtimes[runner]):
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
    removals.delete_pack(session.connection(), ref)
    session.exec(delete(ManagedPack).where(col(ManagedPack.ref) == ref))
