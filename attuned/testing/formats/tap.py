"""TAP 13/14 on stdout: `ok`/`not ok` lines with SKIP and TODO directives, and a plan that
must be present and kept (a producer that dies half-way must not look like a short success).

TODO tests follow pytest's xfail: `not ok # TODO` is skipped (a known failure), `ok # TODO`
passed. Indented lines (subtests, YAML diagnostics) do not count as tests; diagnostics after a
`not ok` line become its error message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from attuned.results import CaseStatus, TestCaseResult
from attuned.testing.formats.base import ResultFormatError, RunnerOutput, SuiteReading

_VERSION = re.compile(r"^TAP version (?P<version>\d+)\s*$", re.IGNORECASE)
_PLAN = re.compile(r"^1\.\.(?P<count>\d+)\s*(?:#\s*(?P<comment>.*))?$")
_TEST = re.compile(r"^(?P<result>ok|not ok)\b\s*(?P<number>\d+)?\s*(?:-\s*)?(?P<rest>.*)$")
_BAIL_OUT = re.compile(r"^Bail out!\s*(?P<reason>.*)$", re.IGNORECASE)
_DIRECTIVE = re.compile(r"^(?P<kind>skip\w*|todo)\b\s*(?P<reason>.*)$", re.IGNORECASE)
_UNESCAPED_HASH = re.compile(r"(?<!\\)#")
_DIAGNOSTIC_LIMIT = 4096


@dataclass
class _Test:
    number: int
    description: str
    status: CaseStatus
    message: str | None
    diagnostics: list[str] = field(default_factory=list)

    def case(self) -> TestCaseResult:
        message = "\n".join(filter(None, [self.message, *self.diagnostics]))
        return TestCaseResult(
            name=self.description or f"test {self.number}",
            status=self.status,
            error_message=message[:_DIAGNOSTIC_LIMIT] or None,
        )


class TapFormat:
    def read(self, output: RunnerOutput) -> SuiteReading:
        return SuiteReading.from_cases(parse_tap(output.stdout))


def parse_tap(text: str) -> list[TestCaseResult]:
    """Cases for every test line, plus `error` cases for a broken plan or a bail-out."""
    tests: list[_Test] = []
    plans: list[int] = []
    problems: list[str] = []
    seen_tap = False
    for line in text.splitlines():
        if line[:1].isspace() or line.startswith("#"):
            if tests and tests[-1].status is CaseStatus.FAILED:
                tests[-1].diagnostics.append(line.strip().lstrip("#").strip())
            continue
        if match := _TEST.match(line):
            seen_tap = True
            tests.append(_test(match, len(tests) + 1, problems))
        elif match := _PLAN.match(line):
            seen_tap = True
            plans.append(int(match["count"]))
        elif match := _BAIL_OUT.match(line):
            seen_tap = True
            problems.append(f"bailed out: {match['reason'] or 'no reason given'}")
            break
        elif _VERSION.match(line):
            seen_tap = True
    if not seen_tap:
        raise ResultFormatError("no TAP on stdout (no plan, no ok/not ok lines)")
    problems.extend(_plan_problems(plans, len(tests)))
    return [t.case() for t in tests] + [
        TestCaseResult(name="TAP stream", status=CaseStatus.ERROR, error_message=problem)
        for problem in problems
    ]


def _test(match: re.Match[str], expected_number: int, problems: list[str]) -> _Test:
    number = int(match["number"]) if match["number"] else expected_number
    if number != expected_number:
        problems.append(f"test number {number} out of sequence: expected {expected_number}")
    parts = _UNESCAPED_HASH.split(match["rest"], maxsplit=1)
    description = parts[0].strip().replace("\\#", "#")
    directive = _DIRECTIVE.match(parts[1].strip()) if len(parts) > 1 else None
    ok = match["result"] == "ok"
    if directive and directive["kind"].lower().startswith("skip"):
        return _Test(number, description, CaseStatus.SKIPPED, _reason("SKIP", directive))
    if directive:  # TODO
        status = CaseStatus.PASSED if ok else CaseStatus.SKIPPED
        return _Test(number, description, status, _reason("TODO", directive))
    return _Test(number, description, CaseStatus.PASSED if ok else CaseStatus.FAILED, None)


def _reason(kind: str, directive: re.Match[str]) -> str:
    return f"{kind}: {directive['reason']}" if directive["reason"] else kind


def _plan_problems(plans: list[int], ran: int) -> list[str]:
    if not plans:
        return ["no TAP plan (1..N): the producer may have stopped before the end"]
    if len(plans) > 1:
        return [f"{len(plans)} TAP plans; exactly one is allowed"]
    planned = plans[0]
    if ran < planned:
        return [f"planned {planned} tests but only {ran} ran"]
    if ran > planned:
        return [f"planned {planned} tests but {ran} ran"]
    return []
