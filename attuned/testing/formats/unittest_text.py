"""What `python -m unittest -v` prints on stderr: per-test lines, failure blocks and the
`Ran N tests` / `OK (...)` / `FAILED (...)` summary. Not a pack.yaml format: the unittest
runner reads it when the pack keeps the default `simple` format.

The summary is authoritative. Per-test lines are used when they add up to it; output that a
test prints in the middle of them can break that, and then one summary case stands in.
"""

from __future__ import annotations

import re

from attuned.testing.formats.base import (
    ResultFormatError,
    RunnerOutput,
    SuiteReading,
    summary_case,
)
from attuned.testing.results import CaseStatus, TestCaseResult

_RAN = re.compile(r"^Ran (?P<count>\d+) tests? in ", re.MULTILINE)
_VERDICT = re.compile(r"^(?P<verdict>OK|FAILED|NO TESTS RAN)(?: \((?P<details>[^)]*)\))?\s*$", re.M)
_TEST_ID = r"(?P<method>\S+) \((?P<where>[\w.]+)\)"
_RESULT_LINE = re.compile(
    rf"^(?:{_TEST_ID})?.*?\.\.\. "
    r"(?P<outcome>ok|FAIL|ERROR|skipped.*|expected failure|unexpected success)\s*$"
)
_NAME_ONLY = re.compile(rf"^{_TEST_ID}\s*$")
_BLOCK = re.compile(
    rf"^={{70}}\n(?:FAIL|ERROR|UNEXPECTED SUCCESS): {_TEST_ID}.*?\n-{{70}}\n"
    r"(?P<body>.*?)(?=^={70}$|^-{70}$|\Z)",
    re.MULTILINE | re.DOTALL,
)
_STATUS = {
    "ok": CaseStatus.PASSED,
    "FAIL": CaseStatus.FAILED,
    "ERROR": CaseStatus.ERROR,
    "expected failure": CaseStatus.SKIPPED,  # like pytest's xfail
    "unexpected success": CaseStatus.FAILED,  # unittest counts it as unsuccessful
}
_MESSAGE_LIMIT = 4096


class UnittestTextFormat:
    def read(self, output: RunnerOutput) -> SuiteReading:
        text = output.stderr
        ran, verdicts = _RAN.findall(text), list(_VERDICT.finditer(text))
        if not ran or not verdicts:
            raise ResultFormatError("no unittest summary ('Ran N tests' and OK/FAILED)")
        details = _details(verdicts[-1]["details"] or "")
        failed = details.get("failures", 0) + details.get("errors", 0)
        failed += details.get("unexpected successes", 0)
        skipped = details.get("skipped", 0) + details.get("expected failures", 0)
        # Failing subtests count once each, so failures may exceed the tests that ran.
        total = max(int(ran[-1]), failed + skipped)
        passed = total - failed - skipped
        cases = _cases(text)
        reading = SuiteReading.from_cases(cases)
        if (reading.total, reading.passed, reading.failed, reading.skipped) == (
            total,
            passed,
            failed,
            skipped,
        ):
            return reading
        return SuiteReading(
            total,
            passed,
            failed,
            skipped,
            [summary_case(output.runner_name, passed, failed, skipped)],
        )


def _details(text: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for part in text.split(","):
        key, _, value = part.partition("=")
        if value.strip().isdigit():
            counts[key.strip()] = int(value)
    return counts


def _cases(text: str) -> list[TestCaseResult]:
    messages = {
        _name(block["method"], block["where"]): block["body"].strip()[:_MESSAGE_LIMIT]
        for block in _BLOCK.finditer(text)
    }
    cases: list[TestCaseResult] = []
    pending: str | None = None  # a test whose docstring line carries the result
    for line in text.splitlines():
        if match := _RESULT_LINE.match(line):
            name = _name(match["method"], match["where"]) if match["method"] else pending
            pending = None
            if name is None:
                continue
            outcome = match["outcome"]
            status = CaseStatus.SKIPPED if outcome.startswith("skipped") else _STATUS[outcome]
            message = messages.get(name)
            if outcome.startswith("skipped"):
                message = outcome
            cases.append(TestCaseResult(name=name, status=status, error_message=message))
        elif match := _NAME_ONLY.match(line):
            pending = _name(match["method"], match["where"])
    return cases


def _name(method: str, where: str) -> str:
    """Python 3.11 prints `test_x (module.Class.test_x)`, older ones `test_x (module.Class)`."""
    return where if where.endswith("." + method) else f"{where}.{method}"
