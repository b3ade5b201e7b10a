"""Test results as Attune shapes them (PackTestResult > TestSuiteResult > TestCaseResult).

The verdict (`status`, `pass_rate`) follows Attune's rule exactly; the `gate` says whether the
result is good enough to register, by the pack's own `min_pass_rate` / `on_failure`.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class CaseStatus(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"
    ERROR = "error"  # the runner could not produce a verdict (crash, timeout, no start)


class TestStatus(StrEnum):
    __test__ = False  # not a pytest class

    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"
    PARTIAL = "partial"
    # attuned's addition: the tests could not run at all, because the pack's environment
    # could not be prepared (a runtime is missing, pip failed); zero tests, the gate fails
    ERROR = "error"


def status_of(total: int, passed: int, failed: int, skipped: int) -> TestStatus:
    """Attune's rule: any failure fails; all passed passes; all skipped skips; else partial."""
    if failed > 0:
        return TestStatus.FAILED
    if passed == total:
        return TestStatus.PASSED
    if skipped == total:
        return TestStatus.SKIPPED
    return TestStatus.PARTIAL


def pass_rate_of(total: int, passed: int) -> float:
    return passed / total if total > 0 else 0.0


class _Result(BaseModel):
    model_config = ConfigDict(frozen=True)


class TestCaseResult(_Result):
    __test__ = False

    name: str
    status: CaseStatus
    duration_ms: int = 0
    error_message: str | None = None
    stdout: str | None = None
    stderr: str | None = None


class TestSuiteResult(_Result):
    """One runner's outcome. `error` cases count as failed in `failed`."""

    __test__ = False

    name: str
    runner_type: str
    total: int
    passed: int
    failed: int
    skipped: int
    duration_ms: int
    test_cases: list[TestCaseResult] = Field(default_factory=list)
    # attuned additions: how the runner process ended and what it printed (elided to
    # `output_limit_kib` per stream), so a failure can be understood from history alone.
    exit_code: int | None = None
    stdout: str | None = None
    stderr: str | None = None


class GateDecision(_Result):
    """Whether the result lets the pack register, and why (shown by `attuned history`)."""

    passed: bool
    reason: str
    min_pass_rate: float = 1.0
    on_failure: str = "block"
    allow_empty: bool = False
    # the regression gate's findings against the serving version (empty on a first install)
    baseline_version: str | None = None
    regression_policy: str = "ignore"  # block | warn | ignore
    regressions: list[str] = Field(default_factory=list)  # suite::case, passed there, fail here
    flaky: list[str] = Field(default_factory=list)  # flip on one content: never block
    slower: list[str] = Field(default_factory=list)  # warnings only

    @property
    def blocks(self) -> bool:
        """True when registration must be refused (failed gate with on_failure=block)."""
        return not self.passed and self.on_failure == "block"


class PackTestResult(_Result):
    __test__ = False

    pack_ref: str
    pack_version: str
    execution_time: datetime
    status: TestStatus
    total_tests: int
    passed: int
    failed: int
    skipped: int
    pass_rate: float
    duration_ms: int
    test_suites: list[TestSuiteResult] = Field(default_factory=list)
    gate: GateDecision
    cancelled: bool = False  # stopped by the cancel event (e.g. daemon shutdown) before the end

    @classmethod
    def from_suites(
        cls,
        *,
        pack_ref: str,
        pack_version: str,
        execution_time: datetime,
        duration_ms: int,
        suites: list[TestSuiteResult],
        gate: GateDecision,
        cancelled: bool = False,
    ) -> PackTestResult:
        total = sum(s.total for s in suites)
        passed = sum(s.passed for s in suites)
        failed = sum(s.failed for s in suites)
        skipped = sum(s.skipped for s in suites)
        return cls(
            pack_ref=pack_ref,
            pack_version=pack_version,
            execution_time=execution_time,
            status=status_of(total, passed, failed, skipped),
            total_tests=total,
            passed=passed,
            failed=failed,
            skipped=skipped,
            pass_rate=pass_rate_of(total, passed),
            duration_ms=duration_ms,
            test_suites=suites,
            gate=gate,
            cancelled=cancelled,
        )
