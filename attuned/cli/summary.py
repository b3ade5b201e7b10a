"""Human-readable rendering of a test result (register, test, show)."""

from __future__ import annotations

from attuned.cli.common import STATUS_COLOUR, colour
from attuned.results import CaseStatus, PackTestResult

_CASE_MARK = {
    CaseStatus.PASSED: ("ok", "green"),
    CaseStatus.FAILED: ("FAIL", "red"),
    CaseStatus.ERROR: ("ERROR", "red"),
    CaseStatus.SKIPPED: ("skip", "yellow"),
}


def render_result(result: PackTestResult, *, verbose: bool = False) -> str:
    status = result.status.value
    lines = [
        f"tests: {colour(status, STATUS_COLOUR.get(status, 'bold'))}, "
        f"{result.passed}/{result.total_tests} passed"
        + (f", {result.failed} failed" if result.failed else "")
        + (f", {result.skipped} skipped" if result.skipped else "")
        + f" (pass rate {result.pass_rate:.0%}, {result.duration_ms} ms)",
        f"gate: {'passed' if result.gate.passed else 'not passed'} ({result.gate.reason})",
    ]
    for suite in result.test_suites:
        lines.append(
            f"  {suite.name} [{suite.runner_type}]: {suite.passed}/{suite.total} passed"
            + (f", {suite.failed} failed" if suite.failed else "")
            + (f", {suite.skipped} skipped" if suite.skipped else "")
        )
        for case in suite.test_cases:
            if case.status is CaseStatus.PASSED and not verbose:
                continue
            mark, name = _CASE_MARK[case.status]
            detail = f": {case.error_message}" if case.error_message else ""
            lines.append(f"    {colour(mark, name)} {case.name}{detail}")
    return "\n".join(lines)
