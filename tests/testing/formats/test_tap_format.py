"""TAP from real producers (perl's Test::More, a shell script), and the plan rules."""

from __future__ import annotations

import shutil

import pytest

from attuned.testing import CaseStatus
from attuned.testing.formats import ResultFormatError
from attuned.testing.formats.tap import parse_tap

needs_perl = pytest.mark.skipif(shutil.which("perl") is None, reason="perl is not installed")

MIXED_PERL = """
    #!/usr/bin/perl
    use strict;
    use warnings;
    use Test::More tests => 5;
    ok(1, 'adds');
    is(2, 3, 'subtracts');
    SKIP: { skip "no network here", 1; ok(1, 'downloads'); }
    TODO: { local $TODO = "not written yet"; ok(0, 'flies'); }
    TODO: { local $TODO = "fixed by accident"; ok(1, 'swims'); }
"""


def tap(entry: str, **spec: object) -> dict[str, object]:
    return {"type": "script", "entry_point": entry, "result_format": "tap", **spec}


def statuses(suite):
    return [(case.name, case.status) for case in suite.test_cases]


@needs_perl
def test_test_more_output_maps_every_outcome(run_pack):
    result = run_pack({"t/mixed.t": MIXED_PERL}, {"perl": tap("t/mixed.t")})

    (suite,) = result.test_suites
    assert statuses(suite) == [
        ("adds", CaseStatus.PASSED),
        ("subtracts", CaseStatus.FAILED),
        ("test 3", CaseStatus.SKIPPED),
        ("flies", CaseStatus.SKIPPED),
        ("swims", CaseStatus.PASSED),
    ]
    assert suite.test_cases[2].error_message == "SKIP: no network here"
    assert suite.test_cases[3].error_message == "TODO: not written yet"
    assert (suite.total, suite.passed, suite.failed, suite.skipped) == (5, 2, 1, 2)
    assert suite.exit_code == 1  # Test::More exits with the number of failures: no extra error
    assert "Failed test 'subtracts'" in (suite.stderr or "")


@needs_perl
def test_producer_dying_half_way_fails_the_plan(run_pack):
    script = """
        #!/usr/bin/perl
        use Test::More tests => 4;
        ok(1, 'one');
        ok(1, 'two');
        die "database went away\\n";
    """
    result = run_pack({"t/dies.pl": script}, {"perl": tap("t/dies.pl")})

    (suite,) = result.test_suites
    assert suite.passed == 2
    errors = [c.error_message for c in suite.test_cases if c.status is CaseStatus.ERROR]
    assert errors == ["planned 4 tests but only 2 ran"]
    assert "database went away" in (suite.stderr or "")
    assert not result.gate.passed


@needs_perl
def test_done_testing_puts_the_plan_at_the_end(run_pack):
    script = "#!/usr/bin/perl\nuse Test::More;\nok(1, 'a');\nok(1, 'b');\ndone_testing();\n"

    result = run_pack({"t/end.t": script}, {"perl": tap("t/end.t")})

    assert (result.total_tests, result.passed) == (2, 2)
    assert result.gate.passed


@needs_perl
def test_skip_all_is_an_empty_run(run_pack):
    script = "#!/usr/bin/perl\nuse Test::More skip_all => 'needs a GPU';\n"

    result = run_pack({"t/skip.t": script}, {"perl": tap("t/skip.t")})

    assert result.total_tests == 0
    assert not result.gate.passed
    assert "allow_empty" in result.gate.reason


@needs_perl
def test_bail_out_is_an_error(run_pack):
    script = "#!/usr/bin/perl\nuse Test::More tests => 3;\nok(1);\nBAIL_OUT('no config');\n"

    result = run_pack({"t/bail.t": script}, {"perl": tap("t/bail.t")})

    errors = [c.error_message for c in result.test_suites[0].test_cases if c.status == "error"]
    assert errors == ["bailed out: no config", "planned 3 tests but only 1 ran"]


@needs_perl
def test_subtests_count_once(run_pack):
    script = """
        #!/usr/bin/perl
        use Test::More tests => 2;
        subtest 'group' => sub { plan tests => 3; ok(1) for 1..3; };
        ok(1, 'after');
    """

    result = run_pack({"t/sub.t": script}, {"perl": tap("t/sub.t")})

    assert [c.name for c in result.test_suites[0].test_cases] == ["group", "after"]
    assert result.gate.passed


def test_shell_tap_producer_with_yaml_diagnostics(run_pack):
    script = """
        echo 'TAP version 13'
        echo '1..3'
        echo 'ok 1 - reads config'
        echo 'not ok 2 - writes config'
        echo '  ---'
        echo '  message: permission denied'
        echo '  ...'
        echo 'ok 3 - counts \\# of items # skip not on this host'
    """

    result = run_pack({"tests/tap.sh": script}, {"sh": tap("tests/tap.sh")})

    suite = result.test_suites[0]
    assert statuses(suite) == [
        ("reads config", CaseStatus.PASSED),
        ("writes config", CaseStatus.FAILED),
        ("counts # of items", CaseStatus.SKIPPED),
    ]
    assert "permission denied" in (suite.test_cases[1].error_message or "")
    assert suite.test_cases[2].error_message == "SKIP: not on this host"


def test_no_plan_is_an_error():
    cases = parse_tap("ok 1\nok 2\n")

    assert [c.status for c in cases] == [CaseStatus.PASSED, CaseStatus.PASSED, CaseStatus.ERROR]
    assert cases[-1].error_message.startswith("no TAP plan")


def test_more_tests_than_planned_is_an_error():
    cases = parse_tap("1..1\nok 1\nok 2\n")

    assert cases[-1].error_message == "planned 1 tests but 2 ran"


def test_two_plans_are_an_error():
    assert (
        parse_tap("1..1\nok 1\n1..1\n")[-1].error_message == "2 TAP plans; exactly one is allowed"
    )


def test_out_of_sequence_numbers_are_an_error():
    cases = parse_tap("1..2\nok 1\nok 3\n")

    assert cases[-1].error_message == "test number 3 out of sequence: expected 2"


def test_unnumbered_tests_and_junk_lines():
    cases = parse_tap("1..2\nsome junk\nok - first\nnot ok\nokay this is junk\n")

    assert [(c.name, c.status) for c in cases] == [
        ("first", CaseStatus.PASSED),
        ("test 2", CaseStatus.FAILED),
    ]


def test_comment_diagnostics_attach_to_the_failed_test():
    cases = parse_tap("1..1\nnot ok 1 - sums\n# got: 3\n# expected: 4\n")

    assert cases[0].error_message == "got: 3\nexpected: 4"


def test_output_without_tap_is_unreadable():
    with pytest.raises(ResultFormatError, match="no TAP"):
        parse_tap("hello\nworld\n")


def test_tap_runner_without_tap_falls_back_to_the_exit_code(run_pack):
    result = run_pack(
        {"tests/run.sh": "echo just text; exit 0"},
        {"t": {"type": "tap", "entry_point": "tests/run.sh"}},
    )

    assert (result.total_tests, result.passed) == (1, 1)


def test_explicit_tap_format_without_tap_is_an_error_case(run_pack):
    result = run_pack({"tests/run.sh": "echo just text"}, {"t": tap("tests/run.sh")})

    (case,) = result.test_suites[0].test_cases
    assert case.status is CaseStatus.ERROR
    assert case.error_message == (
        "could not read tap results: no TAP on stdout (no plan, no ok/not ok lines)"
    )
