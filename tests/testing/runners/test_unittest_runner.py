"""`unittest`: counts from unittest's own result object (the report its helper script
writes), from real runs of real unittest files in the sandbox."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

from attuned.settings.testing import SandboxMode
from attuned.testing import CaseStatus, ExecutorSettings
from attuned.testing.formats.unittest_text import REPORT_CASE

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

    def test_some_subtests_fail(self):
        for i in range(4):
            with self.subTest(i=i):
                self.assertLess(i, 2)

    def test_subtest_errors(self):
        with self.subTest("lookup", key="k"):
            {}["k"]

    def test_all_subtests_pass(self):
        for i in range(5):
            with self.subTest(i=i):
                pass


class BrokenFixture(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        raise OSError("no database")

    def test_never_runs(self):
        pass
'''

N = "tests.test_outcomes.Outcomes."

# The operator's shape: 10 passing tests, one test with 28 failing subtests, 11 errors.
OPERATOR_SHAPE = "\n".join(
    [
        "import unittest",
        "class Pack(unittest.TestCase):",
        *(f"    def test_pass_{n:02}(self): pass" for n in range(10)),
        *(f"    def test_error_{n:02}(self): raise KeyError({n})" for n in range(11)),
        "    def test_table(self):",
        "        for row in range(28):",
        "            with self.subTest(row=row):",
        "                self.assertEqual(row, -1)",
    ]
)


def unit(entry: str, **spec: object) -> dict[str, object]:
    return {"type": "unittest", "entry_point": entry, **spec}


def test_every_outcome_is_counted_from_unittests_result(run_pack):
    result = run_pack(
        {"tests/test_outcomes.py": EVERY_OUTCOME}, {"u": unit("tests/test_outcomes.py")}
    )

    (suite,) = result.test_suites
    assert {c.name: c.status for c in suite.test_cases} == {
        N + "test_ok": CaseStatus.PASSED,
        N + "test_documented": CaseStatus.PASSED,
        N + "test_fails": CaseStatus.FAILED,
        N + "test_errors": CaseStatus.ERROR,
        N + "test_skipped": CaseStatus.SKIPPED,
        N + "test_expected_failure": CaseStatus.PASSED,
        N + "test_unexpected_success": CaseStatus.FAILED,
        N + "test_some_subtests_fail (i=2)": CaseStatus.FAILED,
        N + "test_some_subtests_fail (i=3)": CaseStatus.FAILED,
        N + "test_subtest_errors [lookup] (key='k')": CaseStatus.ERROR,
        N + "test_all_subtests_pass": CaseStatus.PASSED,
        "setUpClass (tests.test_outcomes.BrokenFixture)": CaseStatus.ERROR,
    }
    assert (suite.total, suite.passed, suite.failed, suite.skipped) == (12, 4, 7, 1)
    assert (result.total_tests, result.passed, result.failed) == (12, 4, 7)
    by_name = {c.name: c for c in suite.test_cases}
    assert "AssertionError: 1 != 2" in (by_name[N + "test_fails"].error_message or "")
    assert "RuntimeError: kaboom" in (by_name[N + "test_errors"].error_message or "")
    assert "3 not less than 2" in (by_name[N + "test_some_subtests_fail (i=3)"].error_message or "")
    assert by_name[N + "test_skipped"].error_message == "skipped: not here"
    assert "expected failure" in (by_name[N + "test_expected_failure"].error_message or "")
    assert "unexpected success" in (by_name[N + "test_unexpected_success"].error_message or "")
    assert "no database" in (
        by_name["setUpClass (tests.test_outcomes.BrokenFixture)"].error_message or ""
    )
    assert "Ran 10 tests" in (suite.stderr or "")  # unittest's own text is kept for people


def test_operators_run_counts_its_ten_passing_tests(run_pack):
    result = run_pack({"tests/test_pack.py": OPERATOR_SHAPE}, {"u": unit("tests/test_pack.py")})

    (suite,) = result.test_suites
    assert "FAILED (failures=28, errors=11)" in (suite.stderr or "")
    assert (suite.total, suite.passed, suite.failed, suite.skipped) == (49, 10, 39, 0)
    names = [c.name for c in suite.test_cases]
    assert "tests.test_pack.Pack.test_pass_00" in names
    assert "tests.test_pack.Pack.test_table (row=27)" in names
    assert sum(c.status is CaseStatus.ERROR for c in suite.test_cases) == 11
    assert result.pass_rate == pytest.approx(10 / 49)


def test_output_printed_by_tests_does_not_change_the_counts(run_pack):
    code = """
import sys, unittest
class Noisy(unittest.TestCase):
    def test_noise(self):
        sys.stderr.write("half a line ... ")
    def test_fake_result_line(self):
        sys.stderr.write("test_ghost (x.Y.test_ghost) ... FAIL\\nRan 99 tests in 0s\\n\\nFAILED (failures=99)\\n")
    def test_quiet(self):
        pass
"""
    result = run_pack({"tests/test_noisy.py": code}, {"u": unit("tests/test_noisy.py")})

    assert (result.total_tests, result.passed, result.failed) == (3, 3, 0)
    assert result.gate.passed


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


def test_args_reach_unittest_and_the_pack_root_is_importable(run_pack):
    files = {
        "lib/__init__.py": "",
        "lib/greet.py": "def greet():\n    return 'hello'\n",
        "tests/test_greet.py": """
import sys, unittest
from lib.greet import greet
class G(unittest.TestCase):
    def test_greets(self):
        self.assertEqual(greet(), "hello")
    def test_argv_is_unittests(self):
        self.assertEqual(sys.argv[0], "python -m unittest")
    def test_other(self):
        pass
""",
    }

    result = run_pack(
        files, {"u": unit("tests/test_greet.py", args=["-k", "greets", "-k", "argv"])}
    )

    assert sorted(c.name for c in result.test_suites[0].test_cases) == [
        "tests.test_greet.G.test_argv_is_unittests",
        "tests.test_greet.G.test_greets",
    ]
    assert result.gate.passed


def test_import_error_is_an_error_case(run_pack):
    result = run_pack({"tests/test_broken.py": "import no_such_module\n"}, {"u": unit("tests")})

    (suite,) = result.test_suites
    assert (suite.total, suite.failed) == (1, 1)
    assert suite.test_cases[0].status is CaseStatus.ERROR
    assert "no_such_module" in (suite.test_cases[0].error_message or "")


def test_no_tests_is_an_empty_run_not_an_error(run_pack):
    result = run_pack({"tests/test_none.py": "x = 1\n"}, {"u": unit("tests/test_none.py")})

    assert result.total_tests == 0
    assert result.test_suites[0].test_cases == []
    assert "no tests were executed" in result.gate.reason


def test_a_crashed_interpreter_counts_only_what_was_printed_and_says_so(run_pack):
    code = """
import os, sys, unittest
class Crash(unittest.TestCase):
    def test_a(self):
        pass
    def test_b(self):
        pass
    def test_c_dies(self):
        sys.stderr.flush()
        os._exit(0)
    def test_d(self):
        pass
"""
    result = run_pack({"tests/test_crash.py": code}, {"u": unit("tests/test_crash.py")})

    (suite,) = result.test_suites
    assert suite.exit_code == 0
    assert [(c.name, c.status) for c in suite.test_cases] == [
        ("tests.test_crash.Crash.test_a", CaseStatus.PASSED),
        ("tests.test_crash.Crash.test_b", CaseStatus.PASSED),
        (REPORT_CASE, CaseStatus.ERROR),
    ]
    assert "counted only the 2 results it printed" in (suite.test_cases[-1].error_message or "")
    assert (suite.total, suite.passed, suite.failed) == (3, 2, 1)
    assert not result.gate.passed


SYSTEM_PYTHON = Path("/usr/bin/python3")  # the test user cannot reach an interpreter under /root


def _no_run_as() -> str:
    if os.getuid() != 0:
        return "testing.run_as needs root"
    try:
        pwd.getpwnam("nobody")
    except KeyError:
        return "no user 'nobody' on this host"
    return "" if SYSTEM_PYTHON.is_file() else f"no {SYSTEM_PYTHON}"


@pytest.mark.skipif(bool(_no_run_as()), reason=_no_run_as() or "-")
def test_an_unprivileged_test_user_writes_its_report(run_pack, fast_settings):
    settings: ExecutorSettings = fast_settings.model_copy(
        update={"run_as": "nobody", "python": str(SYSTEM_PYTHON), "sandbox": SandboxMode.NONE}
    )

    result = run_pack(
        {"tests/test_outcomes.py": EVERY_OUTCOME},
        {"u": unit("tests/test_outcomes.py")},
        settings=settings,
    )

    (suite,) = result.test_suites
    assert (suite.total, suite.passed, suite.failed, suite.skipped) == (12, 4, 7, 1)
