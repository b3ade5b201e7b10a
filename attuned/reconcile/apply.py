"""Carry out a plan's changes through the registry, and say how each step ended.

Packs whose dependencies are not changing in this plan are tested in parallel (`concurrency`
threads); the registry serializes database writes. A step whose dependency failed in this
pass is not attempted: the next plan decides about it with the new facts.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from attuned.errors import DependencyError, ValidationFailed
from attuned.reconcile.model import Action, ActionKind, Candidate, FailureKind, Plan
from attuned.registry import (
    EnvironmentNotReady,
    Registration,
    Registry,
    TestsRolledBack,
)
from attuned.report.log import Event, get_logger
from attuned.store.archive import is_archive
from attuned.store.provenance import Provenance

log = get_logger()


class StepOutcome(StrEnum):
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"  # not attempted (a dependency failed, or the daemon is stopping)


@dataclass(frozen=True)
class SourcePolicy:
    """Per-source registration options, and what Attune's pack row says of the source."""

    skip_tests: bool = False
    force: bool = False
    regressions: str | None = None  # block | warn | ignore; None: the pack's, else testing's
    git: bool = False  # else a watched folder
    location: str | None = None  # the folder, or the repository URL without credentials

    def provenance(self, candidate: Candidate) -> Provenance:
        if self.git:
            source_type, url = "git", self.location
        else:
            source_type = "local_archive" if is_archive(candidate.entry) else "local_directory"
            url = str(Path(self.location) / candidate.entry) if self.location else None
        return Provenance(
            origin=f"{candidate.source}:{candidate.entry}",
            source=candidate.source,
            source_revision=candidate.source_revision,
            source_type=source_type,
            source_url=url,
            source_tree=candidate.source_tree,
            signer=candidate.signer,
        )


@dataclass(frozen=True)
class StepResult:
    action: Action
    outcome: StepOutcome
    duration_ms: int = 0
    error: str | None = None
    failure_kind: FailureKind | None = None
    registration: Registration | None = None
    test_status: str | None = None  # the status of the test run this step made, if any

    @property
    def ref(self) -> str:
        return self.action.ref


def classify(exc: BaseException) -> FailureKind:
    """Bad content fails the same way again; anything else may pass on a retry."""
    if isinstance(exc, TestsRolledBack | ValidationFailed) and not isinstance(exc, DependencyError):
        return FailureKind.DETERMINISTIC
    return FailureKind.TRANSIENT


def first_line(exc: BaseException) -> str:
    if isinstance(exc, TestsRolledBack):  # the CLI's advice (--force) means nothing here
        result = exc.result
        return f"tests of {result.pack_version} failed: {result.gate.reason}"
    text = str(exc).strip() or type(exc).__name__
    lines = text.splitlines()
    return lines[0] + (f" (+{len(lines) - 1} more)" if len(lines) > 1 else "")


class Applier:
    def __init__(
        self,
        registry: Registry,
        policies: Mapping[str, SourcePolicy],
        *,
        concurrency: int = 2,
        cancel: threading.Event | None = None,
        on_result: Callable[[StepResult], None] | None = None,
        heartbeat: Callable[[], None] | None = None,
    ) -> None:
        self.registry = registry
        self.policies = policies
        self.concurrency = concurrency
        self.cancel = cancel or threading.Event()
        self.on_result = on_result or (lambda _result: None)
        # called about once a second while tests run: the caller's loop is alive, just waiting
        self.heartbeat = heartbeat or (lambda: None)

    def apply(self, plan: Plan) -> list[StepResult]:
        changes = plan.changes()
        installs = [a for a in changes if a.kind is not ActionKind.REMOVE]
        removals = [a for a in changes if a.kind is ActionKind.REMOVE]
        results: dict[str, StepResult] = {}
        for wave in _waves(installs):
            runnable = []
            for action in wave:
                blocker = self._failed_dependency(action, results)
                if blocker or self.cancel.is_set():
                    why = f"dependency {blocker} failed in this pass" if blocker else "stopping"
                    results[action.ref] = self._report(
                        StepResult(action, StepOutcome.SKIPPED, error=why)
                    )
                else:
                    runnable.append(action)
            for result in self._run_wave(runnable):
                results[result.ref] = self._report(result)
        for action in removals:
            if self.cancel.is_set():
                results[action.ref] = self._report(
                    StepResult(action, StepOutcome.SKIPPED, error="stopping")
                )
                continue
            results[action.ref] = self._report(self._remove(action))
        return list(results.values())

    def _run_wave(self, runnable: list[Action]) -> Iterator[StepResult]:
        """Install a wave's actions, a few at a time: `wait` arms a waiter on every future
        it is given, so handing it all 10,000 of a first sync at once made each completion
        cost a pass over the rest (quadratic); twice the worker count keeps the pool busy."""
        queued = iter(runnable)
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            pending = {
                pool.submit(self._install, action)
                for action in itertools.islice(queued, 2 * self.concurrency)
            }
            while pending:
                done, pending = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
                self.heartbeat()
                for action in itertools.islice(queued, len(done)):
                    pending.add(pool.submit(self._install, action))
                for future in done:
                    yield future.result()

    def _report(self, result: StepResult) -> StepResult:
        self.on_result(result)
        return result

    @staticmethod
    def _failed_dependency(action: Action, results: Mapping[str, StepResult]) -> str | None:
        assert action.candidate is not None
        for req in action.candidate.requires:
            done = results.get(req.ref)
            if done is not None and done.outcome is not StepOutcome.DONE:
                return req.ref
        return None

    def _install(self, action: Action) -> StepResult:
        candidate = action.candidate
        assert candidate is not None
        policy = self.policies.get(candidate.source, SourcePolicy())
        started = time.monotonic()
        try:
            registration = self.registry.register(
                candidate.snapshot,
                replace=True,
                force=policy.force,
                skip_tests=policy.skip_tests,
                regressions=policy.regressions,
                provenance=policy.provenance(candidate),
                cancel=self.cancel,
            )
        except Exception as exc:
            return self._failed(action, exc, started)
        tested = registration.test_result
        return StepResult(
            action,
            StepOutcome.DONE,
            _ms(started),
            registration=registration,
            test_status=tested.status.value if tested else None,
        )

    def _remove(self, action: Action) -> StepResult:
        started = time.monotonic()
        try:
            self.registry.unregister(action.ref, reason="pruned", pruned=action.reason)
        except Exception as exc:
            return self._failed(action, exc, started)
        return StepResult(action, StepOutcome.DONE, _ms(started))

    def _failed(self, action: Action, exc: Exception, started: float) -> StepResult:
        kind = classify(exc)
        if self.cancel.is_set() and not isinstance(exc, TestsRolledBack | ValidationFailed):
            kind = FailureKind.TRANSIENT
        log.warning(Event.PACK_FAILED, **failure_fields(action, kind, first_line(exc)))
        return StepResult(
            action,
            StepOutcome.FAILED,
            _ms(started),
            error=first_line(exc),
            failure_kind=kind,
            test_status=(
                exc.result.status.value
                if isinstance(exc, TestsRolledBack | EnvironmentNotReady)
                else None
            ),
        )


def action_fields(action: Action) -> dict[str, Any]:
    """The pack an action is about, as every event of it names it: the candidate's, or for a
    removal (no candidate) what is served now, so a pruned pack keeps its source and digest."""
    candidate = action.candidate
    if candidate is None:
        version, digest, source = (
            action.current_version,
            action.current_digest,
            action.current_source,
        )
    else:
        version, digest, source = candidate.version, candidate.digest, candidate.source
    return {
        "pack": action.ref,
        "version": version,
        "digest": digest,
        "source": source,
        "revision": candidate.source_revision if candidate else None,
        "action": action.kind.value,
    }


def failure_fields(
    action: Action, failure: FailureKind | None, error: str | None
) -> dict[str, Any]:
    """What `pack.failed` says, in the log and in the outbox."""
    return {
        **action_fields(action),
        "failure": failure.value if failure else None,
        "error": error,
    }


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _waves(actions: list[Action]) -> list[list[Action]]:
    """Group installs so that each runs after the changes it depends on (plan order kept)."""
    level: dict[str, int] = {}
    for action in actions:  # the plan lists dependencies first
        assert action.candidate is not None
        deps = [level[r.ref] for r in action.candidate.requires if r.ref in level]
        level[action.ref] = 1 + max(deps, default=-1)
    waves: list[list[Action]] = [[] for _ in range(max(level.values(), default=-1) + 1)]
    for action in actions:
        waves[level[action.ref]].append(action)
    return waves
