"""The registry: registering a pack, as a chain of steps that each leave nothing behind
when they fail (removal and upkeep live in `upkeep`, which this class extends).

load -> check (conflict, dependencies) -> stage an unserved copy -> test it -> decide
(gate, regressions, force) -> commit one transaction -> swap the store symlink -> announce.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sqlmodel import Session
from structlog.typing import FilteringBoundLogger

from attuned import faults
from attuned.config import AttunedConfig
from attuned.errors import ConflictError, Problem, ValidationFailed, headline
from attuned.notify import events
from attuned.pack.loader import Pack, load_pack
from attuned.registry import announce, trial, verdict
from attuned.registry.announce import about, id_of
from attuned.registry.dependencies import check_dependencies
from attuned.registry.upkeep import RegistryUpkeep
from attuned.registry.verdict import (
    Decision,
    EnvironmentNotReady,
    Outcome,
    RegistrationCancelled,
    TestsRolledBack,
    Trigger,
)
from attuned.registry.wiring import open_database, tester_for
from attuned.report.log import Event, get_logger
from attuned.results import PackTestResult
from attuned.store import provenance as provenances
from attuned.store import repository
from attuned.store.attune import reader
from attuned.store.attune.rows import Installation
from attuned.store.outbox import EventRecord, Outbox
from attuned.store.packstore import PackStore
from attuned.store.provenance import Captured, Provenance
from attuned.store.repository import RegisteredPack

log = get_logger()


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


@dataclass(frozen=True)
class Candidate:
    """A pack on its way in, as the steps of `register` pass it along: what it is, where it
    comes from, the facts its events carry and its bound log; once checked, the version it
    replaces and why it runs."""

    pack: Pack
    provenance: Provenance
    facts: dict[str, Any]
    log: FilteringBoundLogger
    existing: RegisteredPack | None = None
    trigger: Trigger = Trigger.REGISTER


class Registry(RegistryUpkeep):
    @classmethod
    def from_config(cls, config: AttunedConfig) -> Registry:
        database = open_database(config)
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
        loaded = self._load(path, provenance, skip_tests)
        candidate = self._check(loaded, force=force, replace=replace)
        pack = candidate.pack
        previous = self.store.active_dir(pack.ref)  # fails early on a hand-made directory
        with trial.staged(self.store, pack) as version_dir:
            result = None
            if not skip_tests:
                result = self._test(candidate, version_dir, cancel, regressions, force)
            decision = self._decide(candidate, result, force)
            saved, written = self._commit(candidate, result, decision, version_dir, force)
            faults.point("after_commit")
            # its fsync rides on the next registration's: the row just committed names the
            # digest, and repair_store relinks from it after a crash
            self.store.activate(pack.ref, version_dir, sync=False)
        self._retire_previous(pack.ref, previous, version_dir)
        announce.log_registered(candidate.log, decision, result, written)
        warnings = [*pack.warnings, *(Problem(None, w) for w in saved.report.warnings)]
        return Registration(saved.pack, result, decision.outcome, decision.trigger, warnings)

    def _load(self, path: Path, provenance: Provenance | None, skip_tests: bool) -> Candidate:
        """Validate the pack at `path`, saying its warnings; refuse it untested unless told."""
        pack = load_pack(path)
        provenance = provenance or Provenance(origin=str(path.absolute()))
        facts = about(pack, provenance.source, provenance.source_revision)
        plog = log.bind(
            pack=pack.ref, version=pack.version, digest=pack.digest, source=provenance.source
        )
        for warning in pack.warnings:
            plog.warning(Event.PACK_VALIDATION_WARNING, problem=str(warning))
        verdict.require_tests(pack, path, skip_tests)
        return Candidate(pack, provenance, facts, plog)

    def _check(self, candidate: Candidate, *, force: bool, replace: bool) -> Candidate:
        """Refuse a conflict (registered already, unless replacing or forced) and missing
        dependencies; the candidate, with the version it replaces and why it runs."""
        pack = candidate.pack
        with self.db.read() as session:
            existing = repository.get_pack(session, pack.ref)
            if existing is not None and not (force or replace):
                raise ConflictError(
                    f"pack {pack.ref!r} is already registered (version {existing.version}); "
                    "use --upgrade to replace it if its tests pass, or --force"
                )
            checked = repository.preflight(session, pack, force=force)
            check_dependencies(session, pack, checked.runnerless_sensors)
            if checked.removal_refusal is not None:
                raise ConflictError(checked.removal_refusal)
        return _checked(candidate, existing)

    def _test(
        self,
        candidate: Candidate,
        version_dir: Path,
        cancel: threading.Event | None,
        regressions: str | None,
        force: bool,
    ) -> PackTestResult:
        """Run the staged copy's tests, gated against the serving version's; a run the
        daemon cancelled, or that could not run at all (unless forced), ends here."""
        pack, existing = candidate.pack, candidate.existing
        baseline = existing if existing is not None and existing.managed else None
        policy = verdict.regression_policy(pack, regressions, self.executor.settings.regressions)

        def regression_gate(result: PackTestResult) -> PackTestResult:
            assert baseline is not None
            history = self.executor.settings.history
            return verdict.against_serving(self.db, history, pack, result, baseline, policy)

        gate = regression_gate if baseline is not None else None
        run = trial.run_tests(
            self.tester, pack, version_dir, candidate.trigger, cancel, candidate.log, gate
        )
        result = run.result
        faults.point("after_tests")
        if cancel is not None and cancel.is_set():  # killed by shutdown: not a verdict
            self._record_only(result, candidate.trigger, Outcome.CANCELLED, candidate.facts)
            raise RegistrationCancelled(f"tests of {pack.ref} {pack.version} cancelled")
        if run.problem is not None and not force:  # the tests could not run at all
            self._roll_back(candidate, result, Outcome.ENVIRONMENT_FAILED)
            if run.problem.transient:  # pip's index may be back on the next try
                raise EnvironmentNotReady(result)
            raise TestsRolledBack(result)  # a missing runtime: the same again
        return result

    def _decide(self, candidate: Candidate, result: PackTestResult | None, force: bool) -> Decision:
        """The gate's verdict with `force`: go ahead (registered, warned, forced), or roll
        back, storing the run that registered nothing."""
        outcome = verdict.outcome_for(result, force)
        if outcome is Outcome.ROLLED_BACK:
            assert result is not None
            self._roll_back(candidate, result, outcome)
            raise TestsRolledBack(result)
        existing = candidate.existing
        return Decision(candidate.trigger, outcome, existing.version if existing else None)

    def _roll_back(self, candidate: Candidate, result: PackTestResult, outcome: Outcome) -> None:
        written = self._record_only(result, candidate.trigger, outcome, candidate.facts)
        candidate.log.warning(
            Event.PACK_ROLLED_BACK,
            reason=result.gate.reason,
            event_id=id_of(written, Event.PACK_ROLLED_BACK),
        )

    def _commit(
        self,
        candidate: Candidate,
        result: PackTestResult | None,
        decision: Decision,
        version_dir: Path,
        force: bool,
    ) -> tuple[repository.Saved, list[EventRecord]]:
        """Attune's rows (pack, components, test execution), attuned's own (managed pack,
        revision, test run, provenance), the events that tell of it and the cluster's
        duties, in one transaction."""
        pack = candidate.pack
        tested_in = self.environments if result is not None else None
        try:  # the files hashed before the write lock is taken
            captured = provenances.capture(version_dir, pack.files, tested_in)
            with self._write_lock, self.db.write() as session:
                saved, written = self._write(
                    session, candidate, result, decision, version_dir, force, captured
                )
                self.hooks.pack_committed(session, saved.pack, version_dir)
                self.hooks.before_commit(session)
                session.flush()
                faults.point("before_commit")
        except Exception as exc:
            self._aborted(candidate, result, decision.trigger, headline(exc))
            raise
        for warning in saved.report.warnings:  # said once the registration stands
            candidate.log.warning(Event.PACK_REGISTRATION_WARNING, problem=warning)
        return saved, written

    def _write(
        self,
        session: Session,
        candidate: Candidate,
        result: PackTestResult | None,
        decision: Decision,
        version_dir: Path,
        force: bool,
        captured: Captured,
    ) -> tuple[repository.Saved, list[EventRecord]]:
        """The registration's rows and events, in the caller's transaction."""
        pack, facts, trigger = candidate.pack, candidate.facts, decision.trigger
        saved = self._save_pack(session, candidate, force)
        record = saved.pack
        repository.record_activation(session, record, reason=trigger.value)
        run_id, written = announce.store_run(session, result, trigger, decision.outcome, facts)
        provenances.record(session, record, candidate.provenance, captured, result, run_id)
        self._tested_since_pruned.add(pack.ref)
        written += announce.forced_events(facts, decision, result)
        runtimes = reader.runtime_names(session.connection(), record.id, version_dir)
        written.append(
            announce.registered_event(facts, decision, result, record.id, run_id, runtimes)
        )
        self._add_events(session, written)
        return saved, written

    def _save_pack(self, session: Session, candidate: Candidate, force: bool) -> repository.Saved:
        """Attune's pack and component rows, and attuned's managed pack row."""
        pack, provenance = candidate.pack, candidate.provenance
        return repository.save_pack(
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

    def _aborted(
        self, candidate: Candidate, result: PackTestResult | None, trigger: Trigger, error: str
    ) -> None:
        """The transaction failed: keep the run for the audit trail, and say what failed."""
        try:
            self._record_only(result, trigger, Outcome.ABORTED, candidate.facts, error=error)
        except Exception as again:  # the database is gone: the caller hears the first
            log.warning(Event.NOTIFY_RECORD_FAILED, pack=candidate.pack.ref, error=str(again))
        candidate.log.error(Event.PACK_REGISTER_FAILED, error=error)

    def _retire_previous(self, ref: str, previous: Path | None, version_dir: Path) -> None:
        """Once another version is served, drop the oldest kept ones and their environments."""
        if previous is not None and previous != version_dir.resolve():
            self.store.retire(ref, keep=self.keep_versions)
            self.collect_environments()

    # -- tests without registering ------------------------------------------------------

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


def _checked(candidate: Candidate, existing: RegisteredPack | None) -> Candidate:
    return replace(
        candidate, existing=existing, trigger=verdict.trigger_for(existing, candidate.pack)
    )
