"""The unittest runner's report: one case per test as unittest's own result object saw it,
written by unittest_report.py when the run finished. Not a pack.yaml format: the unittest
runner reads it when the pack keeps the default `simple` format.

Without a usable report (the test process crashed the interpreter or called os._exit, or
something overwrote the report), only the result lines unittest printed are counted, with an
`error` case saying why; see unittest_text.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from attuned.results import TestCaseResult
from attuned.testing.formats.base import (
    ResultFormatError,
    RunnerOutput,
    SuiteReading,
    read_report,
)
from attuned.testing.formats.unittest_text import UnittestTextFormat, read_printed_results


class UnittestReport(BaseModel):
    """What unittest_report.py writes."""

    model_config = ConfigDict(extra="ignore")

    tests_run: int = Field(ge=0)
    test_cases: list[TestCaseResult]


class UnittestJsonFormat:
    def read(self, output: RunnerOutput) -> SuiteReading:
        if output.report is None or not output.report.is_file():
            return UnittestTextFormat().read(output)
        try:
            text = read_report(output.report, output.read_limit)
            report = UnittestReport.model_validate_json(text)
        except ResultFormatError as exc:
            return read_printed_results(output, f"unittest's report is unusable: {exc}")
        except ValidationError as exc:  # e.g. a test overwrote it: say where, no traceback
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "document"
            problem = f"{output.report.name}: {where}: {first['msg']}"
            return read_printed_results(output, f"unittest's report is unusable: {problem}")
        return SuiteReading.from_cases(report.test_cases)
