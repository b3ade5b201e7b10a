"""The gate: is this result good enough to register the pack? Decided by the pack's own
`min_pass_rate`, `allow_empty` and `on_failure`, with a reason a human can act on."""

from __future__ import annotations

from fractions import Fraction

from attuned.pack.manifest import TestingSection
from attuned.results import GateDecision, TestStatus, pass_rate_of, status_of
from attuned.settings.testing import RegressionPolicy
from attuned.testing.regressions import Comparison

SHOWN_CASES = 10  # regressed cases named in a reason; all of them are in `regressions`


def decide_gate(
    testing: TestingSection | None,
    *,
    total: int,
    passed: int,
    failed: int,
    skipped: int,
    no_tests_reason: str = "no tests were executed",
    runner_errors: tuple[str, ...] = (),
) -> GateDecision:
    """Zero tests fail unless `allow_empty`; all passed passes; otherwise the pass rate must
    reach `min_pass_rate` (compared exactly: 4 of 5 reaches 0.8)."""
    section = testing or TestingSection()
    minimum = section.min_pass_rate

    def decision(passed_gate: bool, reason: str) -> GateDecision:
        return GateDecision(
            passed=passed_gate,
            reason=reason,
            min_pass_rate=minimum,
            on_failure=section.on_failure,
            allow_empty=section.allow_empty,
        )

    if total == 0:
        if section.allow_empty:
            return decision(
                True, f"{no_tests_reason}; accepted because testing.allow_empty is true"
            )
        return decision(False, f"{no_tests_reason}; set testing.allow_empty: true to accept that")
    if runner_errors:
        # a runner that crashed or timed out did not run its tests: no threshold covers that
        return decision(
            False,
            f"a runner did not complete ({'; '.join(runner_errors)}); "
            "min_pass_rate does not cover runner errors",
        )
    status = status_of(total, passed, failed, skipped)
    if status is TestStatus.PASSED:
        return decision(True, f"all {total} tests passed")
    rate = pass_rate_of(total, passed)
    counts = f"{passed} of {total} passed, {failed} failed, {skipped} skipped"
    # Exact: the float min_pass_rate is read as the decimal the author wrote.
    if Fraction(passed, total) >= Fraction(repr(minimum)):
        return decision(True, f"pass rate {rate:.4g} reaches min_pass_rate {minimum:g} ({counts})")
    if status is TestStatus.SKIPPED:
        return decision(
            False,
            f"all {total} tests were skipped: pass rate 0 is below min_pass_rate {minimum:g}",
        )
    return decision(False, f"pass rate {rate:.4g} is below min_pass_rate {minimum:g} ({counts})")


def with_regressions(
    gate: GateDecision,
    comparison: Comparison,
    policy: RegressionPolicy,
    serving_version: str,
) -> GateDecision:
    """The gate once the candidate's cases are compared with the serving version's: a case
    that passed there and fails here blocks (`block`, whatever the pass rate), warns
    (`warn`) or is only recorded (`ignore`). Flaky cases and slower ones never block."""
    regressions = comparison.regressions
    found = dict(
        baseline_version=serving_version,
        regression_policy=policy.value,
        regressions=regressions,
        flaky=[c.case for c in comparison.flaky],
        slower=[c.case for c in comparison.slower],
    )
    if not regressions or policy is RegressionPolicy.IGNORE:
        return gate.model_copy(update=found)
    shown = ", ".join(regressions[:SHOWN_CASES])
    more = f" and {len(regressions) - SHOWN_CASES} more" if len(regressions) > SHOWN_CASES else ""
    cases = "case" if len(regressions) == 1 else "cases"
    reason = (
        f"{len(regressions)} {cases} passed in the serving version {serving_version} and "
        f"fail now: {shown}{more} (testing.regressions: {policy.value})"
    )
    blocks = policy is RegressionPolicy.BLOCK or (not gate.passed and gate.on_failure == "block")
    return gate.model_copy(
        update=found
        | dict(
            passed=False,
            reason=f"{reason}; {gate.reason}",
            on_failure="block" if blocks else "warn",
        )
    )
