"""What every result format implements: turn a finished runner's output into test cases."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from attuned.results import CaseStatus, TestCaseResult


class ResultFormatError(Exception):
    """The output holds nothing this format can read (as opposed to failing tests)."""


@dataclass(frozen=True)
class RunnerOutput:
    """Everything a format may read after a runner has finished."""

    runner_name: str
    stdout: str
    stderr: str
    exit_code: int | None  # None when the process did not exit by itself
    report: Path | None = None  # a report file the runner asked its tool to write
    result_files: tuple[Path, ...] = ()  # files under result_path written during this run
    read_limit: int = 16 * 1024 * 1024  # bytes read from any one report file


@dataclass(frozen=True)
class SuiteReading:
    """Counts and cases read from one runner. Formats with per-case results derive the counts
    from the cases; `simple` reports counts with a single summary case."""

    total: int
    passed: int
    failed: int
    skipped: int
    cases: list[TestCaseResult] = field(default_factory=list)

    @classmethod
    def from_cases(cls, cases: list[TestCaseResult]) -> SuiteReading:
        statuses = [case.status for case in cases]
        return cls(
            total=len(cases),
            passed=statuses.count(CaseStatus.PASSED),
            failed=statuses.count(CaseStatus.FAILED) + statuses.count(CaseStatus.ERROR),
            skipped=statuses.count(CaseStatus.SKIPPED),
            cases=cases,
        )


class ResultReader(Protocol):
    """One result format. Content problems (a missing TAP plan) become `error` cases;
    ResultFormatError means there was nothing to read at all."""

    def read(self, output: RunnerOutput) -> SuiteReading: ...


def read_report(path: Path, limit: int) -> str:
    """A report file as text, at most `limit` bytes, invalid UTF-8 replaced."""
    try:
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:  # e.g. a test made its report unreadable
        raise ResultFormatError(f"cannot read {path.name}: {exc.strerror}") from exc
    if len(data) > limit:
        raise ResultFormatError(f"{path.name} is larger than {limit // (1024 * 1024)} MiB")
    return data.decode("utf-8", "replace")


def summary_case(name: str, passed: int, failed: int, skipped: int) -> TestCaseResult:
    """The one case of a format that reports counts but no per-test results."""
    if failed:
        status, message = CaseStatus.FAILED, f"{failed} failed, {passed} passed, {skipped} skipped"
    elif passed:
        status, message = CaseStatus.PASSED, None
    else:
        status, message = CaseStatus.SKIPPED, None
    return TestCaseResult(name=name, status=status, error_message=message)
