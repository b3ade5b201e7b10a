"""attuned's JSON format: TestSuiteResult's shape, from stdout or a result file."""

from __future__ import annotations

import json

from attuned.testing import CaseStatus

DOCUMENT = {
    "test_cases": [
        {"name": "adds", "status": "passed", "duration_ms": 3},
        {"name": "divides", "status": "failed", "error_message": "ZeroDivisionError"},
        {"name": "uploads", "status": "skipped"},
        {"name": "boots", "status": "error", "error_message": "no VM"},
    ]
}


def js(entry: str = "tests/run.sh") -> dict[str, object]:
    return {"type": "script", "entry_point": entry, "result_format": "json"}


def printing(document: object, before: str = "") -> str:
    return f"{before}cat <<'EOF'\n{json.dumps(document)}\nEOF\n"


def test_cases_on_stdout(run_pack):
    result = run_pack({"tests/run.sh": printing(DOCUMENT)}, {"j": js()})

    (suite,) = result.test_suites
    assert [(c.name, c.status) for c in suite.test_cases] == [
        ("adds", CaseStatus.PASSED),
        ("divides", CaseStatus.FAILED),
        ("uploads", CaseStatus.SKIPPED),
        ("boots", CaseStatus.ERROR),
    ]
    assert (suite.total, suite.passed, suite.failed, suite.skipped) == (4, 1, 2, 1)
    assert suite.test_cases[0].duration_ms == 3
    assert suite.test_cases[1].error_message == "ZeroDivisionError"


def test_last_json_line_after_other_output(run_pack):
    document = {"test_cases": [{"name": "only", "status": "passed"}]}
    result = run_pack(
        {"tests/run.sh": printing(document, before="echo starting up\n")}, {"j": js()}
    )

    assert (result.total_tests, result.passed) == (1, 1)


def test_pretty_printed_document(run_pack):
    script = f"cat <<'EOF'\n{json.dumps(DOCUMENT, indent=2)}\nEOF\n"

    result = run_pack({"tests/run.sh": script}, {"j": js()})

    assert result.total_tests == 4


def test_counts_only(run_pack):
    document = {"total": 10, "passed": 8, "skipped": 1}
    result = run_pack({"tests/run.sh": printing(document)}, {"j": js()})

    assert (result.total_tests, result.passed, result.failed, result.skipped) == (10, 8, 1, 1)


def test_result_files_under_result_path(run_pack):
    script = (
        "mkdir -p out\n"
        f"echo '{json.dumps(DOCUMENT)}' > out/one.json\n"
        """echo '{"test_cases": [{"name": "more", "status": "passed"}]}' > out/two.json\n"""
        "echo 'not json on stdout'\n"
    )

    result = run_pack({"tests/run.sh": script}, {"j": js()}, testing={"result_path": "out"})

    assert result.total_tests == 5
    assert result.test_suites[0].test_cases[-1].name == "more"


def test_counts_that_disagree_with_the_cases_are_refused(run_pack):
    document = {**DOCUMENT, "total": 3}
    result = run_pack({"tests/run.sh": printing(document)}, {"j": js()})

    (case,) = result.test_suites[0].test_cases
    assert case.status is CaseStatus.ERROR
    assert "total is 3 but test_cases give 4" in (case.error_message or "")


def test_unknown_status_is_refused(run_pack):
    document = {"test_cases": [{"name": "x", "status": "flaky"}]}
    result = run_pack({"tests/run.sh": printing(document)}, {"j": js()})

    message = result.test_suites[0].test_cases[0].error_message or ""
    assert message.startswith("could not read json results: stdout: test_cases.0.status")


def test_invalid_json_is_an_error_case(run_pack):
    result = run_pack({"tests/run.sh": "echo '{\"test_cases\": ['"}, {"j": js()})

    (case,) = result.test_suites[0].test_cases
    assert (case.error_message or "").startswith("could not read json results: stdout:")


def test_no_json_at_all(run_pack):
    result = run_pack({"tests/run.sh": "echo hello"}, {"j": js()})

    assert "no JSON found" in (result.test_suites[0].test_cases[0].error_message or "")
