"""Failure memory: deterministic per digest, transient with capped exponential backoff."""

from __future__ import annotations

from pathlib import Path

from attuned.reconcile.apply import StepOutcome, StepResult
from attuned.reconcile.memory import backoff, remember
from attuned.reconcile.model import (
    Action,
    ActionKind,
    Candidate,
    Failure,
    FailureKind,
    Memory,
)


def step(outcome: StepOutcome, digest: str = "d1", kind: FailureKind | None = None) -> StepResult:
    candidate = Candidate("a", "1.0.0", digest, "src", Path("/s"))
    return StepResult(
        Action(ActionKind.INSTALL, "a", candidate=candidate),
        outcome,
        error="boom" if outcome is StepOutcome.FAILED else None,
        failure_kind=kind,
    )


def test_backoff_doubles_and_caps() -> None:
    assert [backoff(n, 5, 60) for n in range(1, 7)] == [5, 10, 20, 40, 60, 60]


def test_transient_failures_count_attempts_per_digest() -> None:
    memory = Memory()
    for expected in (1, 2, 3):
        memory = remember(
            memory,
            [step(StepOutcome.FAILED, kind=FailureKind.TRANSIENT)],
            100.0,
            retry_initial=5,
            retry_max=60,
        )
        failure = memory.failures["a"]
        assert failure.attempts == expected
        assert failure.retry_at == 100.0 + backoff(expected, 5, 60)
    # new content starts counting again
    memory = remember(
        memory,
        [step(StepOutcome.FAILED, "d2", FailureKind.TRANSIENT)],
        200.0,
        retry_initial=5,
        retry_max=60,
    )
    assert (memory.failures["a"].attempts, memory.failures["a"].digest) == (1, "d2")


def test_deterministic_failure_has_no_retry_time() -> None:
    memory = remember(
        Memory(),
        [step(StepOutcome.FAILED, kind=FailureKind.DETERMINISTIC)],
        100.0,
        retry_initial=5,
        retry_max=60,
    )
    assert memory.failures["a"].kind is FailureKind.DETERMINISTIC
    assert memory.failures["a"].retry_at == 0.0 and memory.failures["a"].reason == "boom"


def test_success_forgets_and_skips_change_nothing() -> None:
    failed = Memory(
        failures={"a": Failure("a", "d1", FailureKind.TRANSIENT, "x", 1.0)},
        suspended=frozenset({"z"}),
    )
    assert (
        remember(failed, [step(StepOutcome.SKIPPED)], 5.0, retry_initial=1, retry_max=2) == failed
    )
    done = remember(failed, [step(StepOutcome.DONE)], 5.0, retry_initial=1, retry_max=2)
    assert done.failures == {} and done.suspended == frozenset({"z"})
