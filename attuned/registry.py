"""The one place that registers and unregisters packs (the CLI and the daemon both call it).

Order of a registration, chosen so that a failure at any step leaves nothing behind:
validate -> check conflict and dependencies -> copy into an unserved version directory ->
run the tests on that copy -> one transaction (pack, components, test execution) ->
swap the store symlink. Tests run before the transaction, so a rollback is "never commit";
the test execution is stored either way, as the audit trail.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from sqlmodel import Session

from attuned import faults
from attuned.config import AttunedConfig
from attuned.envs.python import PythonEnvironments
from attuned.envs.tester import PackTester, TestRun
from attuned.errors import (
    AttunedError,
    ConflictError,
    DependencyError,
    EnvironmentFailed,
    Problem,
    TestsFailed,
    ValidationFailed,
    headline,
)
from attuned.notify import events
from attuned.pack.components import external_refs
from attuned.pack.loader import Pack, load_pack
from attuned.pack.manifest import MANIFEST_NAME
from attuned.report.log import Event, get_logger
from attuned.results import PackTestResult
from attuned.settings.testing import RegressionPolicy
from attuned.store import cases, outbox, repository
from attuned.store import provenance as provenances
from attuned.store.attune import reader
from attuned.store.attune.rows import Installation
from attuned.store.database import Database
from attuned.store.models import utcnow
from attuned.store.outbox import EventRecord, Outbox
from attuned.store.packstore import PackStore
from attuned.store.provenance import Provenance
from attuned.store.repository import RegisteredPack
from attuned.testing.executor import TestExecutor
from attuned.testing.gate import with_regressions
from attuned.testing.regressions import Thresholds, cases_of, compare, flaky_cases, medians

log = get_logger()


class Trigger(StrEnum):
    REGISTER = "register"
    REINSTALL = "reinstall"
    UPGRADE = "upgrade"
    MANUAL = "manual"


class Outcome(StrEnum):
    REGISTERED = "registered"  # tests passed the gate (or were skipped)
    WARNED = "warned"  # gate failed, on_failure: warn
    FORCED = "forced"  # gate failed, registered because forced
    ROLLED_BACK = "rolled_back"  # gate failed, nothing registered
    ABORTED = "aborted"  # tests ran, but the registration itself failed
    CANCELLED = "cancelled"  # the daemon stopped while the tests ran: no verdict
    # the tests could not run: a runtime is missing, or the Python environment could not be
    # built. Nothing registered; unlike a rollback, not remembered across a restart
    ENVIRONMENT_FAILED = "environment_failed"
    TESTED = "tested"  # `attuned test --pack`: the served version tested again, nothing changed


def _nothing(*_args: Any) -> None:
    return None


@dataclass(frozen=True)
class CommitHooks:
    """Cluster duties inside the registry's transactions (a leader's, on PostgreSQL): check
    leadership right before each commit, store the pack's content and announce the change
    in the same transaction, so followers never see a pack row without its content."""

    before_commit: Callable[[Session], None] = _nothing
    pack_committed: Callable[[Session, RegisteredPack, Path], None] = _nothing
    pack_removed: Callable[[Session, str], None] = _nothing


def about(pack: Pack | RegisteredPack, source: str | None, revision: str | None) -> dict[str, Any]:
    """The fields every pack event carries, in the log and in the outbox."""
    return {
        "pack": pack.ref,
        "version": pack.version,
        "digest": pack.digest or None,
        "source": source,
        "revision": revision,
    }


@dataclass(frozen=True)
class Decision:
    """How a registration that goes ahead is told: why it ran, how the gate ended, and the
    version it replaces."""

    trigger: Trigger
    outcome: Outcome
    previous_version: str | None


@dataclass(frozen=True)
class Registration:
    """What a successful `register` did."""

    pack: RegisteredPack
    test_result: PackTestResult | None
    outcome: Outcome
    trigger: Trigger
    warnings: list[Problem]

    @property
    def tests_skipped(self) -> bool:
        return self.test_result is None


class RegistrationCancelled(AttunedError):
    """The caller asked to stop (daemon shutdown) while the pack was being registered."""


class TestsRolledBack(TestsFailed):
    """Raised with the stored result so callers can show what failed."""

    def __init__(self, result: PackTestResult) -> None:
        self.result = result
        super().__init__(
            f"tests of {result.pack_ref} {result.pack_version} did not pass: "
            f"{result.gate.reason}; the pack was rolled back (use --force to register anyway)"
        )


class EnvironmentNotReady(TestsFailed):
    """The pack's environment could not be built, so its tests did not run; nothing was
    registered. Not the content's fault as such: it may pass on a retry (the daemon treats
    it as a transient failure)."""

    def __init__(self, result: PackTestResult) -> None:
        self.result = result
        super().__init__(
            f"tests of {result.pack_ref} {result.pack_version} could not run: "
            f"{result.gate.reason.removeprefix('the tests could not run: ')}; "
            "nothing was registered (try again later, or use --force to register untested)"
        )


class Registry:
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

    @classmethod
    def from_config(cls, config: AttunedConfig) -> Registry:
        database = Database.from_config(config)
        if config.database.auto_migrate:
            database.migrate(packs_dir=config.packs_path)
        else:
            database.check()
        tester = tester_for(config)
        registry = cls(
            database,
            PackStore(config.packs_path),
            tester.executor,
            keep_versions=config.reconcile.keep_versions,
            environments=tester.environments,
            snapshots_dir=config.snapshots_path,
            outbox=Outbox(events.routes(config.notify), node=config.cluster.node),
        )
        registry.repair_store()
        return registry

    def close(self) -> None:
        self.store.sync()  # the last registration's link swap
        self.db.dispose()

    # -- registration ------------------------------------------------------------------

    def register(
        self,
        path: Path,
        *,
        force: bool = False,
        replace: bool = False,
        skip_tests: bool = False,
        provenance: Provenance | None = None,
        cancel: threading.Event | None = None,
        regressions: str | None = None,
    ) -> Registration:
        """Register the pack at `path`.

        `replace` allows replacing a registered pack, still subject to its tests; `force`
        also registers despite failing tests (Attune's force). `regressions`: the source's
        `block`/`warn`/`ignore` for cases that passed in the serving version and fail now
        (default: the pack's `testing.regressions`, else the operator's).
        """
        pack = load_pack(path)
        provenance = provenance or Provenance(origin=str(path.absolute()))
        facts = about(pack, provenance.source, provenance.source_revision)
        plog = log.bind(
            pack=pack.ref, version=pack.version, digest=pack.digest, source=provenance.source
        )
        for warning in pack.warnings:
            plog.warning(Event.PACK_VALIDATION_WARNING, problem=str(warning))
        testing = pack.manifest.testing
        if not skip_tests and (testing is None or not testing.enabled):
            why = "has no testing section" if testing is None else "has testing.enabled: false"
            raise ValidationFailed(
                [
                    Problem(
                        path / MANIFEST_NAME,
                        f"the pack {why}; add tests or use --skip-tests",
                        field="testing",
                    )
                ]
            )
        with self.db.read() as session:
            existing = repository.get_pack(session, pack.ref)
            if existing is not None and not (force or replace):
                raise ConflictError(
                    f"pack {pack.ref!r} is already registered (version {existing.version}); "
                    "use --upgrade to replace it if its tests pass, or --force"
                )
            checked = repository.preflight(session, pack, force=force)
            self._check_dependencies(session, pack, checked.runnerless_sensors)
            if checked.removal_refusal is not None:
                raise ConflictError(checked.removal_refusal)
        trigger = _trigger_for(existing, pack)
        previous = self.store.active_dir(pack.ref)  # fails early on a hand-made directory

        with self._prepared(pack) as version_dir:
            result = None
            if not skip_tests:
                baseline = existing if existing is not None and existing.managed else None
                policy = self._regression_policy(pack, regressions)
                run = self._run_tests(pack, version_dir, trigger, cancel, plog, baseline, policy)
                result = run.result
                faults.point("after_tests")
                if cancel is not None and cancel.is_set():  # killed by shutdown: not a verdict
                    self._record_only(result, trigger, Outcome.CANCELLED, facts)
                    raise RegistrationCancelled(f"tests of {pack.ref} {pack.version} cancelled")
                if run.problem is not None and not force:  # the tests could not run at all
                    written = self._record_only(result, trigger, Outcome.ENVIRONMENT_FAILED, facts)
                    plog.warning(
                        Event.PACK_ROLLED_BACK,
                        reason=result.gate.reason,
                        event_id=_id_of(written, Event.PACK_ROLLED_BACK),
                    )
                    if run.problem.transient:  # pip's index may be back on the next try
                        raise EnvironmentNotReady(result)
                    raise TestsRolledBack(result)  # a missing runtime: the same again
            outcome = _outcome(result, force)
            if outcome is Outcome.ROLLED_BACK:
                assert result is not None
                written = self._record_only(result, trigger, outcome, facts)
                plog.warning(
                    Event.PACK_ROLLED_BACK,
                    reason=result.gate.reason,
                    event_id=_id_of(written, Event.PACK_ROLLED_BACK),
                )
                raise TestsRolledBack(result)
            saved, written = self._commit(
                pack,
                result,
                Decision(trigger, outcome, existing.version if existing else None),
                provenance,
                plog,
                version_dir,
                force,
            )
            record = saved.pack
            faults.point("after_commit")
            # its fsync rides on the next registration's: the row just committed names the
            # digest, and repair_store relinks from it after a crash
            self.store.activate(pack.ref, version_dir, sync=False)
        if previous is not None and previous != version_dir.resolve():
            self.store.retire(pack.ref, keep=self.keep_versions)
            self.collect_environments()
        if outcome is not Outcome.REGISTERED:  # warned or forced past a failed gate
            plog.warning(
                Event.PACK_FORCED,
                outcome=outcome.value,
                reason=result.gate.reason if result else "",
                event_id=_id_of(written, Event.PACK_FORCED),
            )
        plog.info(
            _REGISTERED_EVENT[trigger],
            previous_version=existing.version if existing else None,
            trigger=trigger.value,
            outcome=outcome.value,
            tests=result.status.value if result else "skipped",
            event_id=_id_of(written, _REGISTERED_EVENT[trigger]),
        )
        warnings = [*pack.warnings, *(Problem(None, w) for w in saved.report.warnings)]
        return Registration(record, result, outcome, trigger, warnings)

    def _check_dependencies(
        self, session: Session, pack: Pack, runnerless_sensors: list[tuple[str, str]]
    ) -> None:
        """Declared packs at satisfying versions, the other packs' triggers and actions
        that rules and sensors name, and the runtimes sensors run on must be registered (by
        attuned or by Attune itself)."""
        problems = []
        manifest_path = pack.path / MANIFEST_NAME
        for dep in pack.manifest.dependencies:
            found = repository.get_pack(session, dep.ref)
            if found is None:
                problems.append(
                    Problem(
                        manifest_path,
                        f"depends on {dep}, which is not registered",
                        field="dependencies",
                    )
                )
            elif not dep.constraint.allows(found.version):
                problems.append(
                    Problem(
                        manifest_path,
                        f"depends on {dep}, but {dep.ref} {found.version} is registered",
                        field="dependencies",
                    )
                )
        wanted = external_refs(pack.components, pack.ref)
        known = repository.component_refs(session, wanted)
        for kind, refs in sorted(wanted.items()):
            for ref in sorted(refs - known[kind]):
                namespace = ref.rpartition(".")[0]
                if not any(p.message.startswith(f"depends on {namespace}") for p in problems):
                    problems.append(
                        Problem(
                            manifest_path,
                            f"rules or sensors use {kind} {ref!r}, which pack {namespace!r} "
                            "does not define",
                            field="dependencies",
                        )
                    )
        files = {c.ref: c.file for c in pack.components if c.kind == "sensor"}
        problems.extend(
            Problem(
                pack.path / files[ref],
                f"runner_type {runner!r} names no registered runtime; register the pack "
                "that provides it first (core provides core.native, core.shell, ...)",
                field="runner_type",
            )
            for ref, runner in runnerless_sensors
        )
        if problems:
            raise DependencyError(problems)

    @contextmanager
    def _prepared(self, pack: Pack) -> Iterator[Path]:
        """A complete, unserved copy of exactly the validated files; removed on failure."""
        version_dir, content = self.store.stage(pack.ref, pack.version, pack.path, pack.files)
        try:
            if content != pack.digest:
                raise AttunedError(f"{pack.path} changed while it was being registered; try again")
            yield version_dir
        except BaseException:
            self.store.discard(version_dir)
            raise

    def _run_tests(
        self,
        pack: Pack,
        version_dir: Path,
        trigger: Trigger,
        cancel: threading.Event | None,
        plog: Any,
        serving: RegisteredPack | None,
        policy: RegressionPolicy,
    ) -> TestRun:
        plog.info(Event.PACK_TEST_STARTED, trigger=trigger.value)
        run = self.tester.run(version_dir, pack.manifest, cancel=cancel)
        if serving is not None and run.problem is None and not run.result.cancelled:
            run = replace(run, result=self._against_serving(pack, run.result, serving, policy))
        result = run.result
        gate = result.gate
        if gate.regressions:
            plog.warning(
                Event.PACK_TEST_REGRESSED,
                cases=gate.regressions,
                baseline_version=gate.baseline_version,
                policy=gate.regression_policy,
            )
        if gate.slower:
            plog.warning(
                Event.PACK_TEST_SLOWER, cases=gate.slower, baseline_version=gate.baseline_version
            )
        if gate.flaky:
            plog.info(Event.PACK_TEST_FLAKY, cases=gate.flaky)
        fields: dict[str, Any] = dict(
            status=result.status.value,
            passed=result.passed,
            total=result.total_tests,
            pass_rate=result.pass_rate,
            gate_passed=result.gate.passed,
            gate_reason=result.gate.reason,
            duration_ms=result.duration_ms,
        )
        plog.info(Event.PACK_TEST_FINISHED, **fields)
        if not result.gate.passed:
            plog.warning(Event.PACK_TEST_FAILED, **fields)
        return run

    def _regression_policy(self, pack: Pack, source_says: str | None) -> RegressionPolicy:
        """The source's word, else the pack's `testing.regressions`, else the operator's."""
        testing = pack.manifest.testing
        pack_says = testing.regressions if testing is not None else None
        return RegressionPolicy(source_says or pack_says or self.executor.settings.regressions)

    def _against_serving(
        self,
        pack: Pack,
        result: PackTestResult,
        serving: RegisteredPack,
        policy: RegressionPolicy,
    ) -> PackTestResult:
        """The result with the regression gate applied: each case against the serving
        version's newest run; a case that flips within the runs of one content (served or
        candidate) is flaky and never a regression. No baseline (served untested): as is."""
        history = self.executor.settings.history
        with self.db.read() as session:
            served = cases.digest_runs(session, pack.ref, serving.digest, history.flaky_window)
            earlier = cases.digest_runs(session, pack.ref, pack.digest, history.flaky_window - 1)
        if not served.cases:
            return result
        now = cases_of(result)
        comparison = compare(
            served.newest,
            now,
            flaky=flaky_cases(served.statuses())
            | flaky_cases([*earlier.statuses(), {c.key: c.status for c in now}]),
            baseline_ms=medians(served.durations()),
            thresholds=Thresholds(history.slower_percent, history.slower_ms),
        )
        gate = with_regressions(result.gate, comparison, policy, serving.version)
        return result.model_copy(update={"gate": gate})

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
            run_id, written = _store_run(session, result, trigger, outcome, facts)
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

    def _commit(
        self,
        pack: Pack,
        result: PackTestResult | None,
        decision: Decision,
        provenance: Provenance,
        plog: Any,
        version_dir: Path,
        force: bool,
    ) -> tuple[repository.Saved, list[EventRecord]]:
        """Attune's rows (pack, components, test execution), attuned's own (managed pack,
        revision, test run, provenance), the events that tell of it and the cluster's
        duties, in one transaction."""
        trigger, outcome = decision.trigger, decision.outcome
        facts = about(pack, provenance.source, provenance.source_revision)
        tested_in = self.environments if result is not None else None
        try:  # the files hashed before the write lock is taken
            captured = provenances.capture(version_dir, pack.files, tested_in)
            with self._write_lock, self.db.write() as session:
                saved = repository.save_pack(
                    session,
                    pack,
                    origin=provenance.origin,
                    install=Installation(
                        source_type=provenance.source_type,
                        source_url=provenance.source_url or provenance.origin,
                        source_ref=provenance.source_revision,
                        storage_path=str(self.store.link(pack.ref).absolute()),
                    ),
                    source=provenance.source,
                    source_revision=provenance.source_revision,
                    force=force,
                )
                record = saved.pack
                repository.record_activation(session, record, reason=trigger.value)
                run_id, written = _store_run(session, result, trigger, outcome, facts)
                provenances.record(session, record, provenance, captured, result, run_id)
                self._tested_since_pruned.add(pack.ref)
                if outcome is not Outcome.REGISTERED:
                    reason = result.gate.reason if result else ""
                    written.append(
                        events.record(
                            Event.PACK_FORCED,
                            {**facts, "outcome": outcome.value, "reason": reason},
                        )
                    )
                runtimes = reader.runtime_names(session.connection(), record.id, version_dir)
                written.append(
                    events.record(
                        _REGISTERED_EVENT[trigger],
                        {
                            **facts,
                            "pack_id": record.id,
                            "previous_version": decision.previous_version,
                            "trigger": trigger.value,
                            "outcome": outcome.value,
                            "test_status": result.status.value if result else "skipped",
                            "test_run_id": run_id,
                            "runtime_names": runtimes,
                        },
                    )
                )
                self._add_events(session, written)
                self.hooks.pack_committed(session, record, version_dir)
                self.hooks.before_commit(session)
                session.flush()
                faults.point("before_commit")
        except Exception as exc:
            error = headline(exc)
            try:  # the run happened: keep it for the audit trail, and say what failed
                self._record_only(result, trigger, Outcome.ABORTED, facts, error=error)
            except Exception as again:  # the database is gone: the caller hears the first
                log.warning(Event.NOTIFY_RECORD_FAILED, pack=pack.ref, error=str(again))
            plog.error(Event.PACK_REGISTER_FAILED, error=error)
            raise
        for warning in saved.report.warnings:  # said once the registration stands
            plog.warning(Event.PACK_REGISTRATION_WARNING, problem=warning)
        return saved, written

    def _add_events(self, session: Session, records: list[EventRecord]) -> None:
        for record in records:
            self.outbox.add(session, record)

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

    # -- removal and upkeep ---------------------------------------------------------------

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
            facts = about(record, record.source, record.source_revision)
            fields = dict(forced=bool(users), files_removed=record.managed)
            written = [
                events.record(
                    Event.PACK_UNREGISTERED,
                    {**facts, "pack_id": record.id, "reason": reason, **fields},
                )
            ]
            if pruned is not None:
                written.append(events.record(Event.PACK_REMOVED, {**facts, "reason": pruned}))
            self._add_events(session, written)
            self.hooks.pack_removed(session, ref)
            self.hooks.before_commit(session)
        if record.managed:  # a pack Attune registered itself: its files are Attune's
            self.store.remove(ref)
        log.info(
            Event.PACK_UNREGISTERED,
            pack=ref,
            version=record.version,
            event_id=written[0].id,
            **fields,
        )
        if pruned is not None:
            log.info(
                Event.PACK_REMOVED,
                pack=ref,
                version=record.version,
                reason=pruned,
                event_id=written[1].id,
            )
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

    def test(self, path: Path, cancel: threading.Event | None = None) -> PackTestResult:
        """Run a pack's tests without storing anything (`attuned test`)."""
        pack = load_pack(path)
        return self.tester.run(pack.path, pack.manifest, cancel=cancel).result

    def test_served(self, ref: str, cancel: threading.Event | None = None) -> PackTestResult:
        """Test the version attuned serves of `ref` again and record the run, in Attune's
        table too (trigger `manual`), as Attune's test route does; changes nothing else."""
        with self.db.read() as session:
            registered = repository.get_pack(session, ref)
        served = self.store.active_dir(ref)
        if registered is None or not registered.managed or served is None:
            why = "is not registered" if registered is None else "is not served by attuned"
            raise ValidationFailed([Problem(None, f"pack {ref!r} {why}")])
        pack = load_pack(served)
        log.info(Event.PACK_TEST_STARTED, pack=ref, version=pack.version, trigger="manual")
        result = self.tester.run(served, pack.manifest, cancel=cancel).result
        facts = about(pack, registered.source, registered.source_revision)
        self._record_only(result, Trigger.MANUAL, Outcome.TESTED, facts)
        return result


def stored_pack_dirs(store: PackStore, snapshots_dir: Path | None) -> list[Path]:
    """Every version directory kept in the store, and every snapshot."""
    return [
        entry
        for parent in (store.versions, snapshots_dir)
        if parent is not None and parent.is_dir()
        for entry in sorted(parent.iterdir())
        if entry.is_dir() and not entry.name.startswith(".")
    ]


def tester_for(config: AttunedConfig) -> PackTester:
    """The executor and the environments of this configuration (no database needed)."""
    hidden = private_paths(config)
    return PackTester(
        TestExecutor(config.testing, hidden_paths=hidden),
        PythonEnvironments(
            config.environments_path, config.environments, config.testing, hidden_paths=hidden
        ),
    )


def private_paths(config: AttunedConfig) -> tuple[Path, ...]:
    """What sandboxed pack tests must not see: attuned's state, database and config, and
    the environments of other packs (a test's own is shown read-only)."""
    paths = [config.state_dir.absolute()]
    envs = config.environments_path.absolute()
    if not envs.is_relative_to(paths[0]):
        paths.append(envs)
    if config.database_url.startswith("sqlite:///"):
        paths.append(Path(config.database_url.removeprefix("sqlite:///")).parent)
    if config.path is not None:
        paths.append(config.path.absolute())
    return tuple(dict.fromkeys(paths))


_REGISTERED_EVENT = {
    Trigger.REGISTER: Event.PACK_REGISTERED,
    Trigger.UPGRADE: Event.PACK_UPGRADED,
    Trigger.REINSTALL: Event.PACK_REINSTALLED,
    Trigger.MANUAL: Event.PACK_REGISTERED,
}


def _store_run(
    session: Session,
    result: PackTestResult | None,
    trigger: Trigger,
    outcome: Outcome,
    facts: dict[str, Any],
) -> tuple[int | None, list[EventRecord]]:
    """Add the run (if tests ran) to the audit trail; returns its id and its events, for the
    caller's transaction to write."""
    if result is None:
        return None, []
    run = repository.add_test_run(
        session,
        result,
        trigger_type=trigger.value,
        outcome=outcome.value,
        pack_digest=facts["digest"] or "",
        source=facts["source"],
        source_revision=facts["revision"],
    )
    return run.id, _run_events(result, run.id, trigger, outcome, facts)


def _run_events(
    result: PackTestResult,
    run_id: int | None,
    trigger: Trigger,
    outcome: Outcome,
    facts: dict[str, Any],
) -> list[EventRecord]:
    """The events of a stored test run: it finished, the gate failed, it was rolled back."""
    fields = {
        **facts,
        "trigger": trigger.value,
        "outcome": outcome.value,
        "tests": events.test_summary(result, run_id),
    }
    written = [events.record(Event.PACK_TEST_FINISHED, fields)]
    if not result.gate.passed:
        written.append(events.record(Event.PACK_TEST_FAILED, fields))
    if outcome in (Outcome.ROLLED_BACK, Outcome.ENVIRONMENT_FAILED):
        written.append(
            events.record(Event.PACK_ROLLED_BACK, {**fields, "reason": result.gate.reason})
        )
    return written


def _id_of(written: list[EventRecord], event: Event) -> str | None:
    return next((r.id for r in written if r.name == event), None)


def _trigger_for(existing: RegisteredPack | None, pack: Pack) -> Trigger:
    if existing is None:
        return Trigger.REGISTER
    return Trigger.REINSTALL if existing.version == pack.version else Trigger.UPGRADE


def _outcome(result: PackTestResult | None, force: bool) -> Outcome:
    if result is None or result.gate.passed:
        return Outcome.REGISTERED
    if force:
        return Outcome.FORCED
    return Outcome.WARNED if not result.gate.blocks else Outcome.ROLLED_BACK
