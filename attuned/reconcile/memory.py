"""What the daemon remembers between passes, updated from step results (pure functions).

Deterministic failures are keyed by (ref, digest): the same content is not retried until it
changes. Transient failures back off exponentially, capped.
"""

from __future__ import annotations

from collections.abc import Iterable

from attuned.reconcile.apply import StepOutcome, StepResult
from attuned.reconcile.model import Failure, FailureKind, Memory


def backoff(attempts: int, initial: float, cap: float) -> float:
    """Seconds to wait after the `attempts`-th consecutive transient failure."""
    return float(min(initial * 2 ** max(attempts - 1, 0), cap))


def remember(
    memory: Memory,
    results: Iterable[StepResult],
    now: float,
    *,
    retry_initial: float,
    retry_max: float,
) -> Memory:
    failures = dict(memory.failures)
    for result in results:
        candidate = result.action.candidate
        if result.outcome is StepOutcome.DONE:
            failures.pop(result.ref, None)
            continue
        if result.outcome is not StepOutcome.FAILED or candidate is None:
            continue
        kind = result.failure_kind or FailureKind.TRANSIENT
        previous = failures.get(result.ref)
        attempts = 1
        if previous is not None and previous.digest == candidate.digest:
            attempts = previous.attempts + 1
        retry_at = now + backoff(attempts, retry_initial, retry_max)
        failures[result.ref] = Failure(
            ref=result.ref,
            digest=candidate.digest,
            kind=kind,
            reason=result.error or "failed",
            at=now,
            attempts=attempts,
            retry_at=retry_at if kind is FailureKind.TRANSIENT else 0.0,
        )
    return Memory(failures=failures, suspended=memory.suspended)


def with_suspended(memory: Memory, refs: Iterable[str]) -> Memory:
    return Memory(failures=memory.failures, suspended=frozenset(refs))
