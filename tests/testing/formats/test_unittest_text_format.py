"""unittest's own output (`-v` lines, failure blocks, summary), from real unittest runs."""

from __future__ import annotations

from attuned.testing import CaseStatus

EVERY_OUTCOME = '''
import unittest

class Outcomes(unittest.TestCase):
    def test_ok(self):
        pass

    def test_documented(self):
        """A docstring moves the result onto its own line."""

    def test_fails(self):
        self.assertEqual(1, 2)

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
'''


def unit(entry: str, **spec: object) -> dict[str, object]:
    return {"type": "unittest", "entry_point": entry, **spec}


def test_every_outcome_becomes_a_named_case(run_pack):
    result = run_pack(
        {"tests/test_outcomes.py": EVERY_OUTCOME}, {"u": unit("tests/test_outcomes.py")}
    )

    (suite,) = result.test_suites
    name = "tests.test_outcomes.Outcomes."
    assert {c.name: c.status for c in suite.test_cases} == {
        name + "test_ok": CaseStatus.PASSED,
        name + "test_documented": CaseStatus.PASSED,
        name + "test_fails": CaseStatus.FAILED,
        name + "test_errors": CaseStatus.ERROR,
        name + "test_skipped": CaseStatus.SKIPPED,
        name + "test_expected_failure": CaseStatus.SKIPPED,
        name + "test_unexpected_success": CaseStatus.FAILED,
    }
    assert (suite.total, suite.passed, suite.failed, suite.skipped) == (7, 2, 3, 2)
    by_name = {c.name: c for c in suite.test_cases}
    assert "AssertionError: 1 != 2" in (by_name[name + "test_fails"].error_message or "")
    assert "RuntimeError: kaboom" in (by_name[name + "test_errors"].error_message or "")
    assert by_name[name + "test_skipped"].error_message == "skipped 'not here'"


def test_discovery_in_a_directory(run_pack):
    files = {
        "tests/test_a.py": "import unittest\nclass A(unittest.TestCase):\n    def test_a(self): pass\n",
        "tests/test_b.py": "import unittest\nclass B(unittest.TestCase):\n    def test_b(self): pass\n",
    }

    result = run_pack(files, {"u": unit("tests")})

    assert [c.name for c in result.test_suites[0].test_cases] == [
        "test_a.A.test_a",
        "test_b.B.test_b",
    ]
    assert result.gate.passed


def test_import_error_is_a_failed_run(run_pack):
    result = run_pack({"tests/test_broken.py": "import no_such_module\n"}, {"u": unit("tests")})

    suite = result.test_suites[0]
    assert suite.failed == 1
    assert "no_such_module" in (suite.test_cases[0].error_message or "")


def test_subtest_failures_count_once_each(run_pack):
    code = """
import unittest
class Sub(unittest.TestCase):
    def test_many(self):
        for i in range(3):
            with self.subTest(i=i):
                self.assertLess(i, 1)
"""
    result = run_pack({"tests/test_sub.py": code}, {"u": unit("tests/test_sub.py")})

    suite = result.test_suites[0]
    assert (suite.total, suite.passed, suite.failed) == (2, 0, 2)
    assert not result.gate.passed


def test_output_printed_by_tests_does_not_break_the_counts(run_pack):
    code = """
import sys, unittest
class Noisy(unittest.TestCase):
    def test_noise(self):
        sys.stderr.write("half a line ... ")
    def test_quiet(self):
        pass
"""
    result = run_pack({"tests/test_noisy.py": code}, {"u": unit("tests/test_noisy.py")})

    assert (result.total_tests, result.passed) == (2, 2)
    assert result.gate.passed


def test_no_tests_is_an_empty_run_not_an_error(run_pack):
    result = run_pack({"tests/test_none.py": "x = 1\n"}, {"u": unit("tests/test_none.py")})

    assert result.total_tests == 0
    assert result.test_suites[0].test_cases == [] or all(
        c.status != CaseStatus.ERROR for c in result.test_suites[0].test_cases
    )
    assert "no tests were executed" in result.gate.reason
