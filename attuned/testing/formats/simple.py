"""Attune's `simple` format: `Total Tests:`/`Passed:`/`Failed:`/`Skipped:` lines, else the
exit code decides (0 = one passed test, anything else one failed test)."""

from __future__ import annotations

import re

from attuned.results import CaseStatus, TestCaseResult
from attuned.testing.formats.base import (
    ResultFormatError,
    RunnerOutput,
    SuiteReading,
    summary_case,
)

_COUNT = {
    key: re.compile(rf"{label}:\s*(\d+)")
    for key, label in (
        ("total", "Total Tests"),
        ("passed", "Passed"),
        ("failed", "Failed"),
        ("skipped", "Skipped"),
    )
}


def _last_count(key: str, text: str) -> int | None:
    """The last occurrence wins: a summary is printed at the end, after any progress lines."""
    matches = _COUNT[key].findall(text)
    return int(matches[-1]) if matches else None


class SimpleFormat:
    def read(self, output: RunnerOutput) -> SuiteReading:
        text = output.stdout + "\n" + output.stderr
        total, passed = _last_count("total", text), _last_count("passed", text)
        if total is not None and passed is not None:
            skipped = _last_count("skipped", text) or 0
            failed = _last_count("failed", text)
            if failed is None:  # not printed: whatever neither passed nor skipped failed
                failed = max(total - passed - skipped, 0)
            return SuiteReading(
                total,
                passed,
                failed,
                skipped,
                [summary_case(output.runner_name, passed, failed, skipped)],
            )
        return _from_exit_code(output)


def _from_exit_code(output: RunnerOutput) -> SuiteReading:
    if output.exit_code is None:
        raise ResultFormatError("no 'Total Tests:'/'Passed:' summary and no exit code")
    if output.exit_code == 0:
        case = TestCaseResult(name=output.runner_name, status=CaseStatus.PASSED)
        return SuiteReading(1, 1, 0, 0, [case])
    case = TestCaseResult(
        name=output.runner_name,
        status=CaseStatus.FAILED,
        error_message=f"exited with code {output.exit_code} "
        "(no 'Total Tests:'/'Passed:' summary, so the exit code decides)",
    )
    return SuiteReading(1, 0, 1, 0, [case])
