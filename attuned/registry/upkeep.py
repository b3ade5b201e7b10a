"""The registry's shared state, and what it does besides registering: removing packs and
the upkeep the daemon runs between passes (pruning history and events, repairing the
store, collecting unused Python environments, linking pending runtimes).

`Registry` (in core) adds registration on top of this class; both write through the same
lock and the same hooks, so the daemon's threads never write at once.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlmodel import Session

from attuned.envs.python import PythonEnvironments
from attuned.envs.tester import PackTester
from attuned.errors import ConflictError, EnvironmentFailed, Problem, ValidationFailed
from attuned.notify import events
from attuned.registry.announce import about, store_run
from attuned.registry.hooks import CommitHooks
from attuned.registry.verdict import Outcome, Trigger
from attuned.report.log import Event, get_logger
from attuned.results import PackTestResult
from attuned.store import cases, outbox, repository
from attuned.store.database import Database
from attuned.store.models import utcnow
from attuned.store.outbox import EventRecord, Outbox
from attuned.store.packstore import PackStore
from attuned.store.repository import RegisteredPack
from attuned.testing.executor import TestExecutor

log = get_logger()


class RegistryUpkeep:
    def __init__(
        self,
        database: Database,
        store: PackStore,
        executor: TestExecutor | None = None,
        *,
        keep_versions: int = 3,
        hooks: CommitHooks | None = None,
        environments: PythonEnvironments | None = None,
        snapshots_dir: Path | None = None,
        outbox: Outbox | None = None,
    ) -> None:
        """`environments`: where packs' Python dependencies are installed (without it,
        tests run with `testing.python` as is); `snapshots_dir`: the daemon's snapshots,
        whose environments are kept too; `outbox`: where the events of each change are
        written, in the change's transaction (its routes name the sinks to deliver to)."""
        self.db = database
        self.store = store
        self.executor = executor or TestExecutor()
        self.environments = environments
        self.tester = PackTester(self.executor, environments)
        self.snapshots_dir = snapshots_dir
        self.keep_versions = keep_versions
        self.hooks = hooks or CommitHooks()
        self.outbox = outbox or Outbox()
        self._write_lock = threading.Lock()  # database writes stay serialized across threads
        self._tested_since_pruned: set[str] = set()  # refs with runs the upkeep has not seen
        self._pruned_once = False

    def _record_only(
        self,
        result: PackTestResult | None,
        trigger: Trigger,
        outcome: Outcome,
        facts: dict[str, Any],
        error: str | None = None,
    ) -> list[EventRecord]:
        """Store a run that registered nothing, with its events, in one transaction;
        returns the events written."""
        with self._write_lock, self.db.write() as session:
            self.hooks.before_commit(session)
            run_id, written = store_run(session, result, trigger, outcome, facts)
            self._tested_since_pruned.add(facts["pack"])
            if error is not None:
                written.append(
                    events.record(
                        Event.PACK_REGISTER_FAILED,
                        {**facts, "trigger": trigger.value, "error": error, "test_run_id": run_id},
                    )
                )
            self._add_events(session, written)
        return written

    def _add_events(self, session: Session, records: list[EventRecord]) -> None:
        for record in records:
            self.outbox.add(session, record)

    # -- removal and upkeep ---------------------------------------------------------------

    def record_events(self, records: list[EventRecord]) -> int:
        """Write events that are not part of a registration (a pack blocked, a source
        unreadable, drift repaired) in a transaction of their own; returns how many were
        new (a condition reported before keeps its id and is not written twice)."""
        with self._write_lock, self.db.write() as session:
            self.hooks.before_commit(session)
            return sum(self.outbox.add(session, record) for record in records)

    def prune_case_history(self) -> int:
        """Upkeep of the per-case history: drop the case rows retention no longer keeps, of
        the packs tested since the last upkeep (of every pack, the first time in this
        process). Reads first: a write only when there is work."""
        keep = self.executor.settings.history.keep_runs
        with self._write_lock:  # registrations add to the set under it
            refs = None if not self._pruned_once else sorted(self._tested_since_pruned)
            if refs == []:
                return 0
            with self.db.write() as session:
                self.hooks.before_commit(session)
                deleted = cases.prune(session, refs, keep)
            self._tested_since_pruned.difference_update(refs or ())
            self._pruned_once = True
        return deleted

    def unregister(
        self,
        ref: str,
        *,
        force: bool = False,
        reason: str = "unregistered",
        pruned: str | None = None,
    ) -> RegisteredPack:
        """Remove `ref` from Attune's tables and the store. `pruned`: why the daemon removes
        it (its source no longer offers it); said as `pack.removed` besides
        `pack.unregistered`."""
        with self._write_lock, self.db.write() as session:
            record = repository.get_pack(session, ref)
            if record is None:
                raise ValidationFailed([Problem(None, f"pack {ref!r} is not registered")])
            users = repository.dependents(session, ref)
            if users and not force:
                raise ConflictError(
                    f"pack {ref!r} is needed by {', '.join(sorted(users))}; "
                    "unregister those first or use --force"
                )
            repository.close_revision(session, ref, reason)
            repository.delete_pack(session, ref)
            fields = dict(forced=bool(users), files_removed=record.managed)
            written = _removal_events(record, reason, pruned, fields)
            self._add_events(session, written)
            self.hooks.pack_removed(session, ref)
            self.hooks.before_commit(session)
        if record.managed:  # a pack Attune registered itself: its files are Attune's
            self.store.remove(ref)
        _log_removal(ref, record.version, pruned, fields, written)
        self.collect_environments()
        return record

    def link_pending_runtimes(self) -> list[str]:
        """Link actions registered without a runtime to one that exists now, whoever
        registered it (a core pack Attune loaded itself, say); writes only when one links."""
        with self.db.read() as session:
            if not repository.can_link_pending_runtimes(session):
                return []
        with self._write_lock, self.db.write() as session:
            linked = repository.link_pending_runtimes(session)
            told = events.record(Event.PACK_RUNTIME_LINKED, {"actions": linked})
            if linked:
                self.outbox.add(session, told)
            self.hooks.before_commit(session)
        if linked:
            log.info(Event.PACK_RUNTIME_LINKED, actions=linked, event_id=told.id)
        return linked

    def prune_events(self, retention_days: float, sinks: set[str]) -> int:
        """Upkeep of the outbox: deliveries waiting for a sink no longer configured are
        dead (saying so; `events redeliver --sink` brings them back); delivered and dead
        events older than the retention go. Reads first: a write only when there is work."""
        now = utcnow()
        before = now - timedelta(days=retention_days)
        with self.db.read() as session:
            orphans = outbox.orphaned(session, sinks)
            old = outbox.any_before(session, before)
        if not orphans and not old:
            return 0
        with self._write_lock, self.db.write() as session:
            self.hooks.before_commit(session)
            if orphans:
                outbox.bury(session, orphans, now)
            return outbox.prune(session, before) if old else 0

    def repair_store(self, min_age: float = 3600.0) -> list[str]:
        """Make the store agree with the database after a crash between commit and swap.

        Leftovers younger than `min_age` seconds are kept: another process may be using them.
        """
        with self.db.read() as session:
            expected = {p.ref: (p.version, p.digest) for p in repository.managed_heads(session)}
        fixed = self.store.repair(expected)
        fixed += [f"removed:{p.name}" for p in self.store.collect_garbage(min_age)]
        if fixed:
            log.warning(Event.STORE_REPAIRED, changes=fixed)
        self.collect_environments()
        return fixed

    def environment_users(self) -> dict[Path, str]:
        """The environment key of every pack directory that may need one: every version
        kept in the store, and the daemon's snapshots (content that sources offer)."""
        if self.environments is None:
            return {}
        return self.environments.pack_keys(stored_pack_dirs(self.store, self.snapshots_dir))

    def collect_environments(self, grace: float | None = None) -> list[Path]:
        """Remove Python environments no stored pack or snapshot uses, once unused for
        `environments.unused_grace`. Upkeep: a failure is logged, never raised."""
        if self.environments is None:
            return []
        try:
            if not self.environments.anything_to_collect(grace=grace):
                return []
            in_use = set(self.environment_users().values())
            return self.environments.collect_garbage(in_use, grace=grace)
        except (OSError, EnvironmentFailed) as exc:  # e.g. testing.python gone: keep all
            log.warning(Event.ENV_FAILED, error=f"garbage collection skipped: {exc}")
            return []


def _removal_events(
    record: RegisteredPack, reason: str, pruned: str | None, fields: dict[str, bool]
) -> list[EventRecord]:
    """`pack.unregistered`, and `pack.removed` when the daemon prunes it."""
    facts = about(record, record.source, record.source_revision)
    written = [
        events.record(
            Event.PACK_UNREGISTERED,
            {**facts, "pack_id": record.id, "reason": reason, **fields},
        )
    ]
    if pruned is not None:
        written.append(events.record(Event.PACK_REMOVED, {**facts, "reason": pruned}))
    return written


def _log_removal(
    ref: str,
    version: str,
    pruned: str | None,
    fields: dict[str, bool],
    written: list[EventRecord],
) -> None:
    log.info(
        Event.PACK_UNREGISTERED,
        pack=ref,
        version=version,
        event_id=written[0].id,
        **fields,
    )
    if pruned is not None:
        log.info(
            Event.PACK_REMOVED,
            pack=ref,
            version=version,
            reason=pruned,
            event_id=written[1].id,
        )


def stored_pack_dirs(store: PackStore, snapshots_dir: Path | None) -> list[Path]:
    """Every version directory kept in the store, and every snapshot."""
    return [
        entry
        for parent in (store.versions, snapshots_dir)
        if parent is not None and parent.is_dir()
        for entry in sorted(parent.iterdir())
        if entry.is_dir() and not entry.name.startswith(".")
    ]
