"""What `python -m unittest -v` prints on stderr: per-test result lines and failure blocks.
Only a fallback: the unittest runner counts from its JSON report (unittest_json), and reads
the text only when that report is missing, i.e. the run did not finish (a test crashed the
interpreter or called os._exit).

Then only the result lines actually printed are counted, one case each, plus one `error`
case saying that the run is incomplete. unittest's `Ran N tests` / `FAILED (...)` summary,
when there is one, is quoted but never turned into counts: it cannot say which tests passed,
and its numbers do not add up (a test with failing subtests is one test but many failures).
"""

from __future__ import annotations

import re

from attuned.results import CaseStatus, TestCaseResult
from attuned.testing.formats.base import RunnerOutput, SuiteReading

REPORT_CASE = "unittest report"  # the name of the case that says the report is missing
_SUMMARY = re.compile(r"^Ran \d+ tests? in .*?$\n+^(?:OK|FAILED|NO TESTS RAN).*?$", re.M)
_TEST_ID = r"(?P<method>\S+) \((?P<where>[\w.]+)\)"
_SUBTEST = r"(?P<sub>(?: \[[^\n]*?\])?(?: \([^\n]*?\))?)"  # ` [msg] (i=3)` of a subtest
_RESULT_LINE = re.compile(
    rf"^\s*(?:{_TEST_ID}{_SUBTEST})?.*?\.\.\. "
    r"(?P<outcome>ok|FAIL|ERROR|skipped.*|expected failure|unexpected success)\s*$"
)
_NAME_ONLY = re.compile(rf"^{_TEST_ID}\s*$")
_BLOCK = re.compile(
    rf"^={{70}}\n(?:FAIL|ERROR|UNEXPECTED SUCCESS): {_TEST_ID}{_SUBTEST}\n.*?^-{{70}}\n"
    r"(?P<body>.*?)(?=^={70}$|^-{70}$|\Z)",
    re.MULTILINE | re.DOTALL,
)
_STATUS = {
    "ok": CaseStatus.PASSED,
    "FAIL": CaseStatus.FAILED,
    "ERROR": CaseStatus.ERROR,
    "expected failure": CaseStatus.PASSED,  # unittest counts it as a success
    "unexpected success": CaseStatus.FAILED,  # unittest counts it as unsuccessful
}
_MESSAGE_LIMIT = 4096
MISSING_REPORT = "unittest wrote no report: the run did not finish (a test may have crashed \
the interpreter or called os._exit)"


class UnittestTextFormat:
    def read(self, output: RunnerOutput) -> SuiteReading:
        return read_printed_results(output, MISSING_REPORT)


def read_printed_results(output: RunnerOutput, why: str) -> SuiteReading:
    """The printed result lines, and an `error` case saying `why` they are all there is."""
    cases = _cases(output.stderr)
    message = f"{why}; counted only the {len(cases)} results it printed"
    if summary := _SUMMARY.findall(output.stderr):
        message += f" (its summary, not counted: {' '.join(summary[-1].split())})"
    problem = TestCaseResult(name=REPORT_CASE, status=CaseStatus.ERROR, error_message=message)
    return SuiteReading.from_cases([*cases, problem])


def _cases(text: str) -> list[TestCaseResult]:
    messages = {
        _name(block["method"], block["where"], block["sub"]): block["body"].strip()[:_MESSAGE_LIMIT]
        for block in _BLOCK.finditer(text)
    }
    cases: list[TestCaseResult] = []
    pending: str | None = None  # a test whose docstring line carries the result
    for line in text.splitlines():
        if match := _RESULT_LINE.match(line):
            name = (
                _name(match["method"], match["where"], match["sub"]) if match["method"] else pending
            )
            pending = None
            if name is None:
                continue
            outcome = match["outcome"]
            status = CaseStatus.SKIPPED if outcome.startswith("skipped") else _STATUS[outcome]
            message = outcome if outcome.startswith("skipped") else messages.get(name)
            cases.append(TestCaseResult(name=name, status=status, error_message=message))
        elif match := _NAME_ONLY.match(line):
            pending = _name(match["method"], match["where"], "")
    return cases


def _name(method: str, where: str, subtest: str | None) -> str:
    """Python 3.11 prints `test_x (module.Class.test_x)`, older ones `test_x (module.Class)`;
    a subtest adds its ` [msg] (i=3)`, as its unittest id does."""
    test = where if where.endswith("." + method) else f"{where}.{method}"
    return test + (subtest or "")
