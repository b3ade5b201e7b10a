"""unittest's printed output, the fallback when its report is missing: read from the stderr
of real `python -m unittest -v` runs. Only printed result lines count, and one `error` case
says the run is incomplete."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from attuned.testing import CaseStatus
from attuned.testing.formats.base import RunnerOutput
from attuned.testing.formats.unittest_json import UnittestJsonFormat
from attuned.testing.formats.unittest_text import REPORT_CASE, UnittestTextFormat
from tests.testing.runners.test_unittest_runner import OPERATOR_SHAPE  # 10 pass, 28+11 fail

OUTCOMES = '''
import unittest

class Outcomes(unittest.TestCase):
    def test_ok(self):
        pass

    def test_documented(self):
        """A docstring moves the result onto its own line."""

    def test_errors(self):
        raise RuntimeError("kaboom")

    @unittest.skip("not here")
    def test_skipped(self):
        pass

    @unittest.expectedFailure
    def test_expected_failure(self):
        self.fail("known")

    @unittest.expectedFailure
    def test_unexpected_success(self):
        pass

    def test_rows(self):
        for row in range(3):
            with self.subTest(row=row):
                self.assertLess(row, 1)
'''


def unittest_stderr(tmp_path: Path, code: str) -> str:
    """What `python -m unittest -v` really prints for `code`."""
    (tmp_path / "test_mod.py").write_text(code)
    done = subprocess.run(
        [sys.executable, "-m", "unittest", "-v", "test_mod.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stderr


def read(stderr: str) -> list[tuple[str, CaseStatus]]:
    reading = UnittestTextFormat().read(RunnerOutput("u", stdout="", stderr=stderr, exit_code=1))
    assert reading.total == len(reading.cases)
    return [(case.name, case.status) for case in reading.cases]


def test_printed_lines_become_cases_and_the_missing_report_an_error(tmp_path):
    stderr = unittest_stderr(tmp_path, OUTCOMES)

    reading = UnittestTextFormat().read(RunnerOutput("u", stdout="", stderr=stderr, exit_code=1))

    n = "test_mod.Outcomes."
    assert {c.name: c.status for c in reading.cases} == {
        n + "test_ok": CaseStatus.PASSED,
        n + "test_documented": CaseStatus.PASSED,
        n + "test_errors": CaseStatus.ERROR,
        n + "test_skipped": CaseStatus.SKIPPED,
        n + "test_expected_failure": CaseStatus.PASSED,
        n + "test_unexpected_success": CaseStatus.FAILED,
        n + "test_rows (row=1)": CaseStatus.FAILED,
        n + "test_rows (row=2)": CaseStatus.FAILED,
        REPORT_CASE: CaseStatus.ERROR,
    }
    assert (reading.total, reading.passed, reading.failed, reading.skipped) == (9, 3, 5, 1)
    by_name = {c.name: c for c in reading.cases}
    assert "2 not less than 1" in (by_name[n + "test_rows (row=2)"].error_message or "")
    assert "RuntimeError: kaboom" in (by_name[n + "test_errors"].error_message or "")
    problem = by_name[REPORT_CASE].error_message or ""
    assert "unittest wrote no report" in problem
    assert "counted only the 8 results it printed" in problem
    assert "Ran 7 tests" in problem  # quoted, never turned into counts


def test_operators_output_keeps_its_ten_passes(tmp_path):
    stderr = unittest_stderr(tmp_path, OPERATOR_SHAPE)
    assert "FAILED (failures=28, errors=11)" in stderr

    cases = read(stderr)

    statuses = [status for _name, status in cases]
    assert statuses.count(CaseStatus.PASSED) == 10
    assert statuses.count(CaseStatus.FAILED) == 28
    assert statuses.count(CaseStatus.ERROR) == 11 + 1  # the errors and the missing report
    assert ("test_mod.Pack.test_table (row=27)", CaseStatus.FAILED) in cases


def test_nothing_printed_counts_nothing_but_the_missing_report():
    assert read("Segmentation fault\n") == [(REPORT_CASE, CaseStatus.ERROR)]


def test_an_unusable_report_falls_back_to_the_printed_lines(tmp_path):
    stderr = unittest_stderr(tmp_path, OUTCOMES)
    report = tmp_path / "unittest.json"
    report.write_text('{"tests_run": 7, "test_cases": [{"name": "x", "status": "great"}]}')
    output = RunnerOutput("u", stdout="", stderr=stderr, exit_code=1, report=report)

    reading = UnittestJsonFormat().read(output)

    assert (reading.total, reading.passed, reading.failed, reading.skipped) == (9, 3, 5, 1)
    problem = reading.cases[-1]
    assert (problem.name, problem.status) == (REPORT_CASE, CaseStatus.ERROR)
    assert "unittest's report is unusable: unittest.json: test_cases.0.status" in (
        problem.error_message or ""
    )
