"""The gate: every edge of min_pass_rate, allow_empty and on_failure, first as a pure
decision, then through real runs."""

from __future__ import annotations

import pytest

from attuned.pack.manifest import TestingSection
from attuned.testing.gate import decide_gate


def gate(total, passed, failed=0, skipped=0, **section):
    return decide_gate(
        TestingSection(**section), total=total, passed=passed, failed=failed, skipped=skipped
    )


def test_all_passed_passes_whatever_the_threshold():
    decision = gate(3, 3, min_pass_rate=1.0)

    assert decision.passed
    assert decision.reason == "all 3 tests passed"


@pytest.mark.parametrize(
    ("total", "passed", "minimum"),
    [(5, 4, 0.8), (10, 7, 0.7), (20, 7, 0.35), (3, 1, 0.333), (100, 99, 0.99), (3, 2, 0.6666)],
)
def test_pass_rate_exactly_at_or_just_above_the_threshold_passes(total, passed, minimum):
    decision = gate(total, passed, failed=total - passed, min_pass_rate=minimum)

    assert decision.passed, decision.reason
    assert "reaches min_pass_rate" in decision.reason


@pytest.mark.parametrize(
    ("total", "passed", "minimum"), [(5, 3, 0.8), (3, 2, 0.67), (1000, 999, 1.0), (3, 1, 0.334)]
)
def test_pass_rate_just_below_the_threshold_fails(total, passed, minimum):
    decision = gate(total, passed, failed=total - passed, min_pass_rate=minimum)

    assert not decision.passed
    assert "is below min_pass_rate" in decision.reason


def test_reason_names_the_numbers():
    decision = gate(4, 3, failed=1, min_pass_rate=0.8)

    assert decision.reason == (
        "pass rate 0.75 is below min_pass_rate 0.8 (3 of 4 passed, 1 failed, 0 skipped)"
    )


def test_partial_result_passes_when_skips_keep_it_above_the_threshold():
    assert gate(10, 9, skipped=1, min_pass_rate=0.9).passed
    assert not gate(10, 9, skipped=1).passed  # default 1.0: a skip counts against the rate


def test_zero_tests_fail_unless_allow_empty():
    refused = gate(0, 0)
    accepted = gate(0, 0, allow_empty=True)

    assert not refused.passed
    assert refused.reason == "no tests were executed; set testing.allow_empty: true to accept that"
    assert accepted.passed
    assert accepted.allow_empty


def test_zero_tests_fail_even_at_min_pass_rate_zero():
    assert not gate(0, 0, min_pass_rate=0.0).passed


def test_all_skipped_fails_unless_min_pass_rate_is_zero():
    refused = gate(3, 0, skipped=3)
    accepted = gate(3, 0, skipped=3, min_pass_rate=0.0)

    assert not refused.passed
    assert refused.reason.startswith("all 3 tests were skipped")
    assert accepted.passed


def test_all_skipped_is_not_empty_so_allow_empty_does_not_apply():
    assert not gate(2, 0, skipped=2, allow_empty=True).passed


def test_on_failure_decides_whether_a_failed_gate_blocks():
    blocking = gate(2, 1, failed=1, on_failure="block")
    warning = gate(2, 1, failed=1, on_failure="warn")

    assert not blocking.passed and blocking.blocks
    assert not warning.passed and not warning.blocks
    assert warning.on_failure == "warn"


def test_a_passed_gate_never_blocks():
    assert not gate(1, 1, on_failure="block").blocks


def test_missing_testing_section_uses_the_defaults():
    decision = decide_gate(None, total=1, passed=0, failed=1, skipped=0)

    assert (decision.passed, decision.min_pass_rate, decision.on_failure) == (False, 1.0, "block")


# --- through real runs ----------------------------------------------------------------------


def counts(total: int, passed: int, failed: int, skipped: int = 0) -> str:
    return (
        f"echo 'Total Tests: {total}'; echo 'Passed: {passed}'; "
        f"echo 'Failed: {failed}'; echo 'Skipped: {skipped}'\n"
    )


def shell(entry: str) -> dict[str, str]:
    return {"type": "script", "entry_point": entry}


def test_failed_run_exactly_at_min_pass_rate_passes_the_gate(run_pack):
    result = run_pack(
        {"tests/run.sh": counts(5, 4, 1)},
        {"s": shell("tests/run.sh")},
        testing={"min_pass_rate": 0.8},
    )

    assert result.status == "failed"
    assert result.gate.passed
    assert result.gate.min_pass_rate == 0.8


def test_failing_run_with_warn_is_recorded_but_does_not_block(run_pack):
    result = run_pack(
        {"tests/run.sh": counts(4, 3, 1)},
        {"s": shell("tests/run.sh")},
        testing={"on_failure": "warn"},
    )

    assert not result.gate.passed
    assert not result.gate.blocks
    assert result.model_dump(mode="json")["gate"]["on_failure"] == "warn"


def test_all_skipped_run_fails_the_default_gate(run_pack):
    result = run_pack({"tests/run.sh": counts(2, 0, 0, 2)}, {"s": shell("tests/run.sh")})

    assert result.status == "skipped"
    assert not result.gate.passed
    assert result.gate.blocks


def test_runner_error_fails_the_gate_whatever_the_pass_rate():
    decision = decide_gate(
        TestingSection(min_pass_rate=0.5),
        total=100,
        passed=99,
        failed=1,
        skipped=0,
        runner_errors=("slow: timed out after 60 s",),
    )

    assert not decision.passed
    assert "slow: timed out after 60 s" in decision.reason
    assert "min_pass_rate does not cover runner errors" in decision.reason
