"""attuned's JSON format: one object shaped like TestSuiteResult, from a *.json file written
under `result_path` during the run, else from stdout (the whole of it, or its last line that
is a JSON object).

    {"test_cases": [{"name": "adds", "status": "passed", "duration_ms": 3},
                    {"name": "divides", "status": "failed", "error_message": "..."}]}

Counts (`total`, `passed`, `failed`, `skipped`) are derived from `test_cases`; when given
they must agree. Without `test_cases` the counts alone are used.
"""

from __future__ import annotations

import json

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from attuned.results import TestCaseResult
from attuned.testing.formats.base import (
    ResultFormatError,
    RunnerOutput,
    SuiteReading,
    read_report,
)


class JsonSuite(BaseModel):
    """The accepted document: TestSuiteResult's fields, all optional but consistent."""

    model_config = ConfigDict(extra="ignore")

    name: str | None = None
    total: int | None = Field(default=None, ge=0)
    passed: int | None = Field(default=None, ge=0)
    failed: int | None = Field(default=None, ge=0)
    skipped: int | None = Field(default=None, ge=0)
    duration_ms: int | None = Field(default=None, ge=0)
    test_cases: list[TestCaseResult] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> JsonSuite:
        if self.test_cases is None:
            if self.total is None or self.passed is None:
                raise ValueError("needs test_cases, or at least total and passed")
            if (self.passed + (self.failed or 0) + (self.skipped or 0)) > self.total:
                raise ValueError("passed + failed + skipped exceeds total")
        else:
            derived = SuiteReading.from_cases(self.test_cases)
            for key in ("total", "passed", "failed", "skipped"):
                given = getattr(self, key)
                if given is not None and given != getattr(derived, key):
                    raise ValueError(
                        f"{key} is {given} but test_cases give {getattr(derived, key)}"
                    )
        return self

    def reading(self) -> SuiteReading:
        if self.test_cases is not None:
            return SuiteReading.from_cases(self.test_cases)
        assert self.total is not None and self.passed is not None
        skipped = self.skipped or 0
        failed = self.failed if self.failed is not None else self.total - self.passed - skipped
        return SuiteReading(self.total, self.passed, failed, skipped)


class JsonFormat:
    def read(self, output: RunnerOutput) -> SuiteReading:
        files = [path for path in output.result_files if path.suffix.lower() == ".json"]
        if files:
            readings = [_parse(read_report(path, output.read_limit), path.name) for path in files]
            return _combined(readings)
        document = _document_on_stdout(output.stdout)
        if document is None:
            raise ResultFormatError(
                "no JSON found (a *.json file under result_path written by this runner, "
                "or a JSON object on stdout)"
            )
        return _parse(document, "stdout")


def _document_on_stdout(stdout: str) -> str | None:
    stripped = stdout.strip()
    if stripped.startswith("{"):
        try:
            json.loads(stripped)
        except ValueError:
            pass
        else:
            return stripped
    for line in reversed(stripped.splitlines()):
        if line.strip().startswith("{"):
            return line
    return None


def _parse(text: str, source: str) -> SuiteReading:
    try:
        return JsonSuite.model_validate_json(text).reading()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'document'}: {error['msg']}"
            for error in exc.errors()
        )
        raise ResultFormatError(f"{source}: {problems}") from exc


def _combined(readings: list[SuiteReading]) -> SuiteReading:
    return SuiteReading(
        total=sum(r.total for r in readings),
        passed=sum(r.passed for r in readings),
        failed=sum(r.failed for r in readings),
        skipped=sum(r.skipped for r in readings),
        cases=[case for r in readings for case in r.cases],
    )
