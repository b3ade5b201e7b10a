"""The case-by-case comparison the regression gate and `attuned compare` share."""

from __future__ import annotations

from datetime import UTC, datetime

from attuned.pack.manifest import TestingSection
from attuned.results import (
    CaseStatus,
    GateDecision,
    PackTestResult,
    TestCaseResult,
    TestSuiteResult,
)
from attuned.settings.testing import RegressionPolicy
from attuned.testing.gate import decide_gate, with_regressions
from attuned.testing.regressions import (
    Case,
    Thresholds,
    case_id,
    cases_of,
    compare,
    flaky_cases,
    medians,
)


def run(**statuses: str) -> list[Case]:
    return [Case("unit", name, status) for name, status in statuses.items()]


def test_each_kind_of_change_lands_in_its_own_bucket() -> None:
    before = run(a="passed", b="passed", c="failed", d="failed", gone="passed", same="passed")
    after = run(a="passed", b="failed", c="passed", d="error", fresh="passed", same="skipped")

    found = compare(before, after)

    assert [c.case for c in found.newly_failing] == ["unit::b"]
    assert [c.case for c in found.fixed] == ["unit::c"]
    assert [c.case for c in found.still_failing] == ["unit::d"]
    assert [c.case for c in found.new] == ["unit::fresh"]
    assert [c.case for c in found.removed] == ["unit::gone"]
    assert found.regressions == ["unit::b"]
    assert found.unchanged == 2  # a, and same (passed -> skipped is no verdict change)


def test_a_flaky_case_is_reported_as_flaky_not_as_a_regression() -> None:
    found = compare(run(x="passed", y="failed"), run(x="failed", y="passed"), flaky={("unit", "x")})

    assert found.regressions == []
    assert [c.case for c in found.flaky] == ["unit::x"]
    assert [c.case for c in found.fixed] == ["unit::y"]


def test_flaky_means_both_verdicts_on_one_content_and_skips_take_no_side() -> None:
    runs = [
        {("s", "a"): "passed", ("s", "b"): "passed", ("s", "c"): "passed"},
        {("s", "a"): "failed", ("s", "b"): "skipped", ("s", "c"): "passed"},
        {("s", "a"): "passed", ("s", "b"): "passed", ("s", "c"): "error"},
    ]
    assert flaky_cases(runs) == {("s", "a"), ("s", "c")}
    assert flaky_cases(runs[:1]) == set()


def test_slower_needs_both_the_percentage_and_the_milliseconds() -> None:
    before = [Case("s", "quick", "passed", 10), Case("s", "slow", "passed", 1000)]
    after = [Case("s", "quick", "passed", 30), Case("s", "slow", "passed", 1600)]
    limits = Thresholds(percent=50, ms=100)

    found = compare(before, after, thresholds=limits)

    # quick tripled but by 20 ms only; slow grew 60 % and 600 ms
    assert [(c.case, c.before_ms, c.after_ms) for c in found.slower] == [("s::slow", 1000, 1600)]
    back = compare(after, before, thresholds=limits)
    assert [c.case for c in back.faster] == ["s::slow"]


def test_slower_is_judged_against_the_baselines_median() -> None:
    durations = [{("s", "t"): 100}, {("s", "t"): 900}, {("s", "t"): 120}]
    baseline = medians(durations)
    assert baseline == {("s", "t"): 120}

    found = compare(
        [Case("s", "t", "passed", 900)],  # the newest baseline run happened to be slow
        [Case("s", "t", "passed", 400)],
        baseline_ms=baseline,
        thresholds=Thresholds(percent=50, ms=100),
    )
    assert [c.case for c in found.slower] == ["s::t"]


def test_cases_of_a_result_are_keyed_by_suite_and_name() -> None:
    result = PackTestResult.from_suites(
        pack_ref="p",
        pack_version="1",
        execution_time=datetime.now(UTC),
        duration_ms=5,
        suites=[
            TestSuiteResult(
                name="tap",
                runner_type="script",
                total=2,
                passed=1,
                failed=1,
                skipped=0,
                duration_ms=5,
                test_cases=[
                    TestCaseResult(name="a", status=CaseStatus.PASSED, duration_ms=3),
                    TestCaseResult(name="b", status=CaseStatus.FAILED, error_message="boom"),
                ],
            )
        ],
        gate=GateDecision(passed=False, reason="x"),
    )
    assert [(case_id(c.key), c.status, c.message) for c in cases_of(result)] == [
        ("tap::a", "passed", None),
        ("tap::b", "failed", "boom"),
    ]


def _rate_gate(passed: int, total: int = 5) -> GateDecision:
    return decide_gate(
        TestingSection(min_pass_rate=0.8),
        total=total,
        passed=passed,
        failed=total - passed,
        skipped=0,
    )


def test_block_refuses_a_regression_even_above_min_pass_rate() -> None:
    gate = _rate_gate(4)
    assert gate.passed  # 4 of 5 reaches 0.8
    found = compare(run(a="passed", b="passed"), run(a="passed", b="failed"))

    blocked = with_regressions(gate, found, RegressionPolicy.BLOCK, "1.0.0")

    assert not blocked.passed and blocked.blocks
    assert blocked.regressions == ["unit::b"]
    assert blocked.reason.startswith(
        "1 case passed in the serving version 1.0.0 and fail now: unit::b "
        "(testing.regressions: block); pass rate 0.8 reaches"
    )


def test_warn_fails_the_gate_without_blocking_and_ignore_only_records() -> None:
    found = compare(run(a="passed"), run(a="failed"))

    warned = with_regressions(_rate_gate(4), found, RegressionPolicy.WARN, "1.0.0")
    ignored = with_regressions(_rate_gate(4), found, RegressionPolicy.IGNORE, "1.0.0")

    assert not warned.passed and not warned.blocks
    assert ignored.passed and ignored.regressions == ["unit::a"]
    assert ignored.reason == _rate_gate(4).reason


def test_warn_does_not_soften_a_pass_rate_that_blocks() -> None:
    found = compare(run(a="passed"), run(a="failed"))
    low = _rate_gate(2)
    assert low.blocks

    assert with_regressions(low, found, RegressionPolicy.WARN, "1.0.0").blocks


def test_a_long_list_of_regressions_is_cut_in_the_reason_but_kept_whole() -> None:
    before = run(**{f"t{i:02}": "passed" for i in range(14)})
    after = run(**{f"t{i:02}": "failed" for i in range(14)})

    gate = with_regressions(_rate_gate(5), compare(before, after), RegressionPolicy.BLOCK, "1")

    assert len(gate.regressions) == 14
    assert "unit::t09 and 4 more" in gate.reason
