"""Derive each pack's status from facts (served packs, plan, step results, memory).

Like Flux's summarisers: nothing assigns a pack state along the way; after each pass the state
is computed from what happened, so it cannot disagree with the database.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from attuned.reconcile.apply import StepOutcome, StepResult
from attuned.reconcile.model import ActionKind, FailureKind, InvalidCandidate, Memory, Plan
from attuned.report.status import LastTest, PackState, PackStatus, failing_case_names
from attuned.results import PackTestResult


@dataclass(frozen=True)
class ServedPack:
    ref: str
    version: str
    digest: str
    source: str | None
    active_since: datetime | None


_STATE_OF_ACTION: dict[ActionKind, PackState] = {
    ActionKind.NOOP: "active",
    ActionKind.SUSPENDED: "suspended",
    ActionKind.BLOCKED: "blocked",
    ActionKind.FAILED: "failed",
    ActionKind.WAIT: "pending",
    ActionKind.KEEP: "kept",
    ActionKind.INSTALL: "pending",
    ActionKind.UPGRADE: "pending",
    ActionKind.REINSTALL: "pending",
    ActionKind.REMOVE: "pending",
}


def derive_packs(
    previous: Mapping[str, PackStatus],
    served: Mapping[str, ServedPack],
    plan: Plan,
    results: Mapping[str, StepResult],
    memory: Memory,
    last_tests: Mapping[str, LastTest],
    now: datetime,
    invalid: Sequence[InvalidCandidate] = (),
) -> dict[str, PackStatus]:
    actions = plan.by_ref()
    refs = sorted(
        set(served) | set(actions) | {r for r, p in previous.items() if p.state == "removed"}
    )
    packs: dict[str, PackStatus] = {}
    for ref in refs:
        pack = served.get(ref)
        action = actions.get(ref)
        result = results.get(ref)
        before = previous.get(ref)
        status = PackStatus(
            state="active",
            version=pack.version if pack else None,
            digest=pack.digest if pack else None,
            source=pack.source if pack else None,
            active_since=pack.active_since if pack else None,
            last_test=last_tests.get(ref),
        )
        if action is not None:
            status.state = _STATE_OF_ACTION[action.kind]
            status.reason = action.reason
            candidate = action.candidate
            status.source = status.source or action.current_source  # a pruned pack's too
            if candidate is not None:
                status.source = status.source or candidate.source
                if pack is None or candidate.digest != pack.digest:
                    status.desired_version = candidate.version
        elif pack is None and before is not None:
            status = before  # removed earlier: keep saying so
        if result is not None:
            _apply_result(status, result, memory, now)
        if status.state in ("failed", "pending", "blocked") and status.last_error is None:
            failure = memory.failures.get(ref)
            if before is not None and before.last_error:
                status.last_error, status.last_error_at = before.last_error, before.last_error_at
            elif failure is not None:
                status.last_error = failure.reason
        if status.state == "active" and pack is None:
            status.state = "removed" if before is not None else "pending"
        packs[ref] = status
    for bad in invalid:
        _show_invalid(packs, bad, served.get(bad.ref_hint or bad.entry), last_tests)
    return packs


def _show_invalid(
    packs: dict[str, PackStatus],
    bad: InvalidCandidate,
    served: ServedPack | None,
    last_tests: Mapping[str, LastTest],
) -> None:
    """An entry that is not a valid pack is listed under its ref (or its entry's name, when
    its pack.yaml does not say one) as `invalid`, with the first problem; a version served
    before keeps serving and is named. Another source's valid content of the ref decides
    its state instead."""
    ref = bad.ref_hint or bad.entry
    shown = packs.get(ref)
    if shown is not None and shown.state not in ("kept", "removed"):
        return
    problem = bad.problems[0] if bad.problems else "not a valid pack"
    why = f"{bad.entry!r} in source {bad.source!r} is not a valid pack: {problem}"
    packs[ref] = PackStatus(
        state="invalid",
        version=served.version if served else None,
        digest=served.digest if served else None,
        source=bad.source,
        active_since=served.active_since if served else None,
        last_test=last_tests.get(ref),
        reason=f"serving {served.version}; {why}" if served else why,
    )


def landed(previous: PackStatus | None, result: StepResult, now: datetime) -> PackStatus | None:
    """A pack's status the moment its step succeeded, before the pass ends (the status file
    shows registrations as they land); None for a step that did not succeed, which the pass's
    summary judges with the memory of failures. The summary replaces it with the database's
    facts (the stored activation time, the test run as recorded)."""
    candidate = result.action.candidate
    if result.outcome is not StepOutcome.DONE:
        return None
    if result.action.kind is ActionKind.REMOVE:
        source = result.action.current_source or (previous.source if previous else None)
        return PackStatus(state="removed", source=source, reason=result.action.reason)
    if candidate is None:
        return None
    tested = result.registration.test_result if result.registration is not None else None
    return PackStatus(
        state="active",
        version=candidate.version,
        digest=candidate.digest,
        source=candidate.source,
        active_since=now,
        reason=result.action.reason,
        # the run that just passed; tests skipped: the newest run stays the newest
        last_test=_last_test(tested) if tested else previous.last_test if previous else None,
    )


def _last_test(tested: PackTestResult) -> LastTest:
    """The status of a run this pass made, as the database will give it after the pass."""
    cases = (
        (suite.name, case.name, case.status.value)
        for suite in tested.test_suites
        for case in suite.test_cases
    )
    return LastTest(
        status=tested.status.value,
        passed=tested.passed,
        total=tested.total_tests,
        at=tested.execution_time,
        version=tested.pack_version,
        regressions=list(tested.gate.regressions),
        reason=tested.gate.reason,
        failed_cases=failing_case_names(cases),
    )


def _apply_result(status: PackStatus, result: StepResult, memory: Memory, now: datetime) -> None:
    if result.outcome is StepOutcome.DONE:
        if result.action.kind is ActionKind.REMOVE:
            status.state, status.version, status.digest = "removed", None, None
            status.active_since = None
        else:
            status.state = "active"
            status.desired_version = None
        status.reason = result.action.reason
        status.last_error = status.last_error_at = None
        return
    if result.outcome is StepOutcome.SKIPPED:
        status.state, status.reason = "pending", result.error or "not attempted"
        return
    failure = memory.failures.get(result.ref)
    deterministic = (failure.kind if failure else result.failure_kind) is FailureKind.DETERMINISTIC
    status.state = "failed" if deterministic else "pending"
    status.last_error, status.last_error_at = result.error, now
    version = result.action.candidate.version if result.action.candidate else "?"
    # the why at once (the gate's reason, the error): the next pass's reason says it too
    why = (
        f"{version} failed at {now:%H:%M:%S}: {result.error}"
        if result.error
        else (f"{version} failed at {now:%H:%M:%S}")
    )
    status.reason = f"serving {status.version}; {why}" if status.version is not None else why


def pass_counts(results: Iterable[StepResult], packs: Mapping[str, PackStatus]) -> dict[str, int]:
    """What a pass did and left: its steps by kind (or by how they ended, when not done),
    then its packs by state, as `reconcile.finished` and the status file count them."""
    counts: dict[str, int] = {}
    for result in results:
        key = (
            result.action.kind.value
            if result.outcome is StepOutcome.DONE
            else (result.outcome.value)
        )
        counts[key] = counts.get(key, 0) + 1
    for pack in packs.values():
        counts[f"state_{pack.state}"] = counts.get(f"state_{pack.state}", 0) + 1
    return counts


def any_failed(packs: Mapping[str, PackStatus]) -> bool:
    """Whether `reconcile --once` exits 4: a pack failed, is invalid or is blocked."""
    return any(p.state in ("failed", "invalid", "blocked") for p in packs.values())
