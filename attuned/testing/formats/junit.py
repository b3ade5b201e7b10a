"""JUnit XML: the runner's own report (pytest's --junitxml), else XML files written under
`result_path` during the run, else XML printed on stdout. One case per <testcase>."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from attuned.results import CaseStatus, TestCaseResult
from attuned.testing.formats.base import (
    ResultFormatError,
    RunnerOutput,
    SuiteReading,
    read_report,
)

_MESSAGE_LIMIT = 4096  # per case: the first lines of a traceback say what failed


class JUnitFormat:
    def read(self, output: RunnerOutput) -> SuiteReading:
        documents = _documents(output)
        if not documents:
            raise ResultFormatError(
                "no JUnit XML found (the runner's report, *.xml under result_path "
                "written by this runner, or XML on stdout)"
            )
        cases: list[TestCaseResult] = []
        for source, text in documents:
            cases.extend(parse_junit(text, source))
        return SuiteReading.from_cases(cases)


def _documents(output: RunnerOutput) -> list[tuple[str, str]]:
    if output.report is not None and output.report.is_file():
        return [(output.report.name, read_report(output.report, output.read_limit))]
    files = [path for path in output.result_files if path.suffix.lower() == ".xml"]
    if files:
        return [(path.name, read_report(path, output.read_limit)) for path in files]
    stripped = output.stdout.lstrip()
    if stripped.startswith(("<?xml", "<testsuite")):
        return [("stdout", stripped)]
    return []


def parse_junit(text: str, source: str) -> list[TestCaseResult]:
    try:
        root = ET.fromstring(text)  # noqa: S314 - see the import
    except ET.ParseError as exc:
        raise ResultFormatError(f"{source} is not valid XML: {exc}") from exc
    if root.tag not in ("testsuites", "testsuite"):
        raise ResultFormatError(f"{source}: root element <{root.tag}> is not JUnit")
    return [_case(element) for element in root.iter("testcase")]


def _case(element: ET.Element) -> TestCaseResult:
    name = element.get("name", "?")
    classname = element.get("classname")
    status, message = CaseStatus.PASSED, None
    # pytest reports xfail as <skipped type="pytest.xfail">: a known failure, not a pass.
    for tag, tag_status in (
        ("error", CaseStatus.ERROR),
        ("failure", CaseStatus.FAILED),
        ("skipped", CaseStatus.SKIPPED),
    ):
        found = element.find(tag)
        if found is not None:
            status, message = tag_status, _message(found)
            break
    return TestCaseResult(
        name=f"{classname}.{name}" if classname else name,
        status=status,
        duration_ms=_milliseconds(element.get("time")),
        error_message=message,
        stdout=_text(element.find("system-out")),
        stderr=_text(element.find("system-err")),
    )


def _message(element: ET.Element) -> str | None:
    parts = [part for part in (element.get("message"), (element.text or "").strip()) if part]
    joined = "\n".join(dict.fromkeys(parts))  # pytest repeats the message in the text
    return joined[:_MESSAGE_LIMIT] or None


def _text(element: ET.Element | None) -> str | None:
    if element is None or not element.text:
        return None
    return element.text[:_MESSAGE_LIMIT]


def _milliseconds(seconds: str | None) -> int:
    try:
        return max(0, round(float(seconds or 0) * 1000))
    except ValueError:
        return 0
