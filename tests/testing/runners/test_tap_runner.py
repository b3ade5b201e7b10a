"""`tap`: any executable whose stdout is TAP; read as TAP by default."""

from __future__ import annotations

import shutil

import pytest

needs_perl = pytest.mark.skipif(shutil.which("perl") is None, reason="perl is not installed")


@needs_perl
def test_executable_perl_test_with_default_format(run_pack):
    script = "#!/usr/bin/perl\nuse Test::More tests => 3;\nok(1, $_) for qw(a b c);\n"

    result = run_pack(
        {"t/basic.t": script},
        {"perl": {"type": "tap", "entry_point": "t/basic.t"}},
        executable=("t/basic.t",),
    )

    (suite,) = result.test_suites
    assert suite.runner_type == "tap"
    assert [c.name for c in suite.test_cases] == ["a", "b", "c"]
    assert result.gate.passed


def test_arguments_reach_the_producer(run_pack):
    script = 'echo "1..$#"\nn=0\nfor a in "$@"; do n=$((n+1)); echo "ok $n - $a"; done\n'

    result = run_pack(
        {"t/args.sh": script},
        {"t": {"type": "tap", "entry_point": "t/args.sh", "args": ["alpha", "beta"]}},
    )

    assert [c.name for c in result.test_suites[0].test_cases] == ["alpha", "beta"]


def test_tap_runner_with_explicit_simple_lines(run_pack):
    # A `tap` runner that prints Attune's lines instead is still understood.
    script = "echo 'Total Tests: 2'\necho 'Passed: 2'\necho 'Failed: 0'\n"

    result = run_pack({"t/run.sh": script}, {"t": {"type": "tap", "entry_point": "t/run.sh"}})

    assert (result.total_tests, result.passed) == (2, 2)
