"""A pack's test run as a row of Attune's `pack_test_execution`, the way Attune's
PackTestRepository writes it: Attune's web UI and API show attuned's runs from there.

Pure, as `rows` is: the writer puts the row into the database.
"""

from __future__ import annotations

from attuned.results import PackTestResult
from attuned.store.attune.rows import Row

_TRIGGER_REASON = {"register": "install", "upgrade": "update", "reinstall": "update"}


def trigger_reason(trigger: str) -> str:
    """attuned's trigger of a run as Attune's `pack_test_execution.trigger_reason`."""
    return _TRIGGER_REASON.get(trigger, "manual")


def attune_result(result: PackTestResult) -> Row:
    """Attune's PackTestResult JSON (camelCase, Attune's fields only)."""
    return {
        "packRef": result.pack_ref,
        "packVersion": result.pack_version,
        "executionTime": result.execution_time.isoformat(),
        "status": result.status.value,
        "totalTests": result.total_tests,
        "passed": result.passed,
        "failed": result.failed,
        "skipped": result.skipped,
        "passRate": result.pass_rate,
        "durationMs": result.duration_ms,
        "testSuites": [
            {
                "name": suite.name,
                "runnerType": suite.runner_type,
                "total": suite.total,
                "passed": suite.passed,
                "failed": suite.failed,
                "skipped": suite.skipped,
                "durationMs": suite.duration_ms,
                "testCases": [
                    {
                        "name": case.name,
                        "status": case.status.value,
                        "durationMs": case.duration_ms,
                        "errorMessage": case.error_message,
                        "stdout": case.stdout,
                        "stderr": case.stderr,
                    }
                    for case in suite.test_cases
                ],
            }
            for suite in result.test_suites
        ],
    }


def test_execution_row(pack_id: int, result: PackTestResult, trigger: str) -> Row:
    return {
        "pack_id": pack_id,
        "pack_version": result.pack_version,
        "execution_time": result.execution_time,
        "trigger_reason": trigger_reason(trigger),
        "total_tests": result.total_tests,
        "passed": result.passed,
        "failed": result.failed,
        "skipped": result.skipped,
        "pass_rate": round(result.pass_rate, 4),
        "duration_ms": result.duration_ms,
        "result": attune_result(result),
    }
