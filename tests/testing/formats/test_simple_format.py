"""Attune's `simple` format, read from real script output."""

from __future__ import annotations

from attuned.testing import CaseStatus


def shell(entry: str = "tests/run.sh", **spec: object) -> dict[str, object]:
    return {"type": "script", "entry_point": entry, **spec}


def suite_of(result):
    (suite,) = result.test_suites
    return suite


def test_counts_are_read_from_the_summary_lines(run_pack):
    script = "echo 'Total Tests: 7'\necho 'Passed: 4'\necho 'Failed: 2'\necho 'Skipped: 1'\n"

    suite = suite_of(run_pack({"tests/run.sh": script}, {"sh": shell()}))

    assert (suite.total, suite.passed, suite.failed, suite.skipped) == (7, 4, 2, 1)
    (case,) = suite.test_cases
    assert (case.name, case.status) == ("sh", CaseStatus.FAILED)
    assert case.error_message == "2 failed, 4 passed, 1 skipped"


def test_summary_lines_may_be_embedded_in_other_text_and_on_stderr(run_pack):
    script = (
        "echo '== Total Tests: 3 ==' >&2\necho '[ok] Passed: 3' >&2\necho 'Failed: 0 (none)' >&2\n"
    )

    suite = suite_of(run_pack({"tests/run.sh": script}, {"sh": shell()}))

    assert (suite.total, suite.passed, suite.failed, suite.skipped) == (3, 3, 0, 0)
    assert suite.test_cases[0].status is CaseStatus.PASSED


def test_the_last_summary_wins(run_pack):
    script = (
        "echo 'Total Tests: 1'; echo 'Passed: 0'; echo 'Failed: 1'\n"
        "echo 'Total Tests: 5'; echo 'Passed: 5'; echo 'Failed: 0'\n"
    )

    suite = suite_of(run_pack({"tests/run.sh": script}, {"sh": shell()}))

    assert (suite.total, suite.passed, suite.failed) == (5, 5, 0)


def test_missing_failed_line_counts_the_rest_as_failed(run_pack):
    script = "echo 'Total Tests: 5'\necho 'Passed: 3'\necho 'Skipped: 1'\n"

    suite = suite_of(run_pack({"tests/run.sh": script}, {"sh": shell()}))

    assert (suite.total, suite.passed, suite.failed, suite.skipped) == (5, 3, 1, 1)


def test_without_total_the_exit_code_decides_zero_is_one_pass(run_pack):
    suite = suite_of(run_pack({"tests/run.sh": "echo 'Passed: 9'\nexit 0"}, {"sh": shell()}))

    assert (suite.total, suite.passed, suite.failed) == (1, 1, 0)
    assert suite.test_cases[0].status is CaseStatus.PASSED


def test_without_passed_the_exit_code_decides_nonzero_is_one_failure(run_pack):
    result = run_pack({"tests/run.sh": "echo 'Total Tests: 9'\nexit 4"}, {"sh": shell()})

    suite = suite_of(result)
    assert (suite.total, suite.passed, suite.failed) == (1, 0, 1)
    (case,) = suite.test_cases
    assert case.status is CaseStatus.FAILED
    assert (case.error_message or "").startswith("exited with code 4")
    assert result.status == "failed"
