"""TestExecutor end to end, with real processes: staging, order, environment, failures of
the process itself, output limits, cancellation and the overall verdict."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import pydantic
import pytest

from attuned.testing import (
    CaseStatus,
    ExecutorSettings,
    TestExecutor,
    TestStatus,
)

SUMMARY = """
    echo "Total Tests: {total}"
    echo "Passed: {passed}"
    echo "Failed: {failed}"
    echo "Skipped: {skipped}"
"""


def summary(total: int, passed: int, failed: int = 0, skipped: int = 0) -> str:
    return SUMMARY.format(total=total, passed=passed, failed=failed, skipped=skipped)


def shell(entry: str, **spec: object) -> dict[str, object]:
    return {"type": "script", "entry_point": entry, **spec}


# --- the verdict: Attune's four statuses, through real runs ---------------------------------


@pytest.mark.parametrize(
    ("counts", "status", "pass_rate"),
    [
        ((3, 3, 0, 0), TestStatus.PASSED, 1.0),
        ((3, 2, 1, 0), TestStatus.FAILED, 2 / 3),
        ((2, 0, 0, 2), TestStatus.SKIPPED, 0.0),
        ((4, 3, 0, 1), TestStatus.PARTIAL, 0.75),
    ],
)
def test_status_and_pass_rate_follow_attune(run_pack, counts, status, pass_rate):
    result = run_pack({"tests/run.sh": summary(*counts)}, {"shell": shell("tests/run.sh")})

    assert result.status is status
    assert (result.total_tests, result.passed, result.failed, result.skipped) == counts
    assert result.pass_rate == pytest.approx(pass_rate)


def test_counts_add_up_across_runners_run_in_written_order(run_pack):
    files = {
        "tests/b.sh": "echo b >> $HOME/../order\n" + summary(2, 2),
        "tests/a.sh": "echo a >> $HOME/../order\ncat $HOME/../order\n" + summary(3, 1, 2),
    }
    result = run_pack(files, {"zeta": shell("tests/b.sh"), "alpha": shell("tests/a.sh")})

    assert [s.name for s in result.test_suites] == ["zeta", "alpha"]
    assert result.test_suites[1].stdout.startswith("b\na\n")  # zeta really ran first
    assert (result.total_tests, result.passed, result.failed) == (5, 3, 2)
    assert result.status is TestStatus.FAILED


def test_result_records_pack_identity_and_durations(run_pack):
    result = run_pack({"tests/run.sh": "sleep 0.2\n" + summary(1, 1)}, {"s": shell("tests/run.sh")})

    assert (result.pack_ref, result.pack_version) == ("demo", "1.2.3")
    assert result.test_suites[0].duration_ms >= 200
    assert result.duration_ms >= result.test_suites[0].duration_ms
    assert result.execution_time.tzinfo is not None


def test_result_round_trips_through_json(run_pack):
    result = run_pack({"tests/run.sh": summary(2, 1, 1)}, {"s": shell("tests/run.sh")})

    dumped = result.model_dump(mode="json")
    assert type(result).model_validate(dumped) == result
    assert dumped["gate"]["passed"] is False


# --- no tests at all ------------------------------------------------------------------------


def test_pack_without_testing_section_fails_the_gate_with_a_reason(make_pack):
    pack = make_pack({"README.md": "hi"})

    result = TestExecutor().run(pack.path, pack.manifest)

    assert result.total_tests == 0
    assert result.test_suites == []
    assert not result.gate.passed
    assert "no testing section" in result.gate.reason
    assert "allow_empty: true" in result.gate.reason


def test_no_runners_pass_only_with_allow_empty(make_pack):
    refused = make_pack({}, {})
    accepted = make_pack({}, {}, testing={"allow_empty": True})

    assert not TestExecutor().run(refused.path, refused.manifest).gate.passed
    result = TestExecutor().run(accepted.path, accepted.manifest)
    assert result.gate.passed
    assert "allow_empty is true" in result.gate.reason


def test_disabled_testing_runs_nothing(run_pack, tmp_path):
    marker = tmp_path / "ran"
    result = run_pack(
        {"tests/run.sh": f"touch {marker}\n" + summary(1, 1)},
        {"s": shell("tests/run.sh")},
        testing={"enabled": False},
    )

    assert not marker.exists()
    assert result.total_tests == 0
    assert "testing.enabled is false" in result.gate.reason


def test_runner_that_reports_zero_tests_is_empty(run_pack):
    result = run_pack({"tests/run.sh": summary(0, 0)}, {"s": shell("tests/run.sh")})

    assert result.total_tests == 0
    assert not result.gate.passed
    assert result.gate.reason.startswith("no tests were executed")


# --- staging --------------------------------------------------------------------------------


def test_tests_run_in_a_private_copy_that_is_removed(run_pack, make_pack):
    script = """
        pwd
        echo scribble > actions/new_file
        rm -f pack.yaml README.md
    """ + summary(1, 1)
    pack = make_pack(
        {"tests/run.sh": script, "README.md": "keep me", "actions/.keep": ""},
        {"s": shell("tests/run.sh")},
    )

    result = TestExecutor().run(pack.path, pack.manifest)

    workdir = Path(result.test_suites[0].stdout.splitlines()[0])
    assert workdir != pack.path
    assert not workdir.exists(), "the staging copy must be removed"
    assert (pack.path / "README.md").read_text() == "keep me"
    assert not (pack.path / "actions" / "new_file").exists()
    assert result.gate.passed


def test_staging_copy_is_removed_even_when_tests_lock_it_down(make_pack):
    script = """
        pwd
        mkdir -p locked/deeper && touch locked/deeper/f
        chmod 000 locked/deeper locked
    """ + summary(1, 1)
    pack = make_pack({"tests/run.sh": script}, {"s": shell("tests/run.sh")})

    result = TestExecutor().run(pack.path, pack.manifest)

    workdir = Path(result.test_suites[0].stdout.splitlines()[0])
    assert not workdir.parent.exists()


def test_staging_directory_is_configurable(make_pack, tmp_path):
    staging = tmp_path / "staging"
    staging.mkdir()
    pack = make_pack({"tests/run.sh": "pwd\n" + summary(1, 1)}, {"s": shell("tests/run.sh")})

    result = TestExecutor(ExecutorSettings(staging_dir=staging)).run(pack.path, pack.manifest)

    assert result.test_suites[0].stdout.startswith(str(staging))
    assert list(staging.iterdir()) == []


def test_missing_entry_point_is_an_error_case(run_pack):
    result = run_pack({"tests/other.sh": "true"}, {"s": shell("tests/run.sh")})

    (case,) = result.test_suites[0].test_cases
    assert case.status is CaseStatus.ERROR
    assert case.error_message == "entry point tests/run.sh is not in the pack"
    assert result.failed == 1


def test_result_path_outside_the_pack_is_refused_before_anything_runs(run_pack):
    with pytest.raises(pydantic.ValidationError, match="must be a path inside the pack"):
        run_pack(
            {"tests/run.sh": summary(1, 1)},
            {"s": shell("tests/run.sh", result_format="junit")},
            testing={"result_path": "../elsewhere"},
        )


# --- environment ----------------------------------------------------------------------------


def test_environment_is_scrubbed(run_pack, monkeypatch):
    monkeypatch.setenv("ATTUNED_DATABASE_URL", "postgresql://secret@db/attuned")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_secret")

    result = run_pack({"tests/env.sh": "env\n" + summary(1, 1)}, {"env": shell("tests/env.sh")})

    lines = result.test_suites[0].stdout.splitlines()
    env = dict(line.split("=", 1) for line in lines if "=" in line)
    names = {name for name in env if name not in ("PWD", "SHLVL", "_", "OLDPWD")}
    assert names == {
        "PATH",
        "HOME",
        "LANG",
        "TMPDIR",
        "ATTUNE_PACK_REF",
        "ATTUNE_PACK_VERSION",
        "ATTUNE_PACK_DIR",
    }
    assert "secret" not in result.test_suites[0].stdout
    assert env["ATTUNE_PACK_REF"] == "demo"
    assert env["ATTUNE_PACK_VERSION"] == "1.2.3"
    assert env["ATTUNE_PACK_DIR"] == env["PWD"]
    assert env["HOME"] != os.environ.get("HOME")
    assert Path(env["HOME"]).parent == Path(env["TMPDIR"]).parent == Path(env["PWD"]).parent


def test_home_and_tmpdir_are_writable_and_private(run_pack):
    script = """
        echo x > "$HOME/.rc" && echo x > "$TMPDIR/scratch" || exit 9
        stat -c %a "$HOME" "$TMPDIR"
    """ + summary(1, 1)

    result = run_pack({"tests/run.sh": script}, {"s": shell("tests/run.sh")})

    assert result.test_suites[0].stdout.splitlines()[:2] == ["700", "700"]
    assert result.gate.passed


def test_stdin_is_closed(run_pack):
    script = """
        if read -r line; then echo "read: $line"; else echo "stdin at EOF"; fi
    """ + summary(1, 1)

    result = run_pack({"tests/run.sh": script}, {"s": shell("tests/run.sh", timeout=5)})

    assert result.test_suites[0].stdout.startswith("stdin at EOF")
    assert result.test_suites[0].duration_ms < 4000


# --- a process that fails as a process --------------------------------------------------------


def test_crash_by_signal_is_an_error_case(run_pack):
    result = run_pack(
        {"tests/run.sh": "echo started\nkill -SEGV $$\n"}, {"s": shell("tests/run.sh")}
    )

    suite = result.test_suites[0]
    (case,) = suite.test_cases
    assert case.status is CaseStatus.ERROR
    assert case.error_message == "killed by signal SIGSEGV (11)"
    assert suite.exit_code == -11
    assert suite.stdout == "started\n"
    assert result.status is TestStatus.FAILED


def test_crash_after_printing_counts_keeps_the_counts_and_adds_an_error(run_pack):
    result = run_pack(
        {"tests/run.sh": summary(2, 2) + "kill -ABRT $$\n"}, {"s": shell("tests/run.sh")}
    )

    suite = result.test_suites[0]
    assert (suite.total, suite.passed, suite.failed) == (3, 2, 1)
    assert suite.test_cases[-1].error_message == "killed by signal SIGABRT (6)"


def test_interpreter_that_does_not_exist_is_an_error_case(run_pack):
    result = run_pack(
        {"tests/run.py": "#!/nonexistent/python9\nprint('hi')\n"},
        {"s": shell("tests/run.py")},
        executable=("tests/run.py",),
    )

    (case,) = result.test_suites[0].test_cases
    assert case.status is CaseStatus.ERROR
    assert (case.error_message or "").startswith("could not start")
    assert "No such file" in (case.error_message or "")


def test_nonzero_exit_with_no_failures_reported_is_an_error(run_pack):
    result = run_pack({"tests/run.sh": summary(2, 2) + "exit 3\n"}, {"s": shell("tests/run.sh")})

    suite = result.test_suites[0]
    assert (suite.total, suite.passed, suite.failed) == (3, 2, 1)
    assert suite.test_cases[-1].error_message == (
        "exited with code 3 although its results report no failure"
    )
    assert not result.gate.passed


def test_timeout_kills_the_runner_and_its_background_grandchild(
    run_pack, tmp_path, process_is_gone
):
    pids = tmp_path / "pids"
    script = f"""
        sleep 300 &
        echo $! > {pids}
        echo $$ >> {pids}
        echo waiting
        wait
    """
    started = time.monotonic()
    unsandboxed = ExecutorSettings(kill_grace=0.3, sandbox="none")  # it writes to tmp_path
    result = run_pack(
        {"tests/run.sh": script},
        {"slow": shell("tests/run.sh", timeout=1)},
        settings=unsandboxed,
    )
    elapsed = time.monotonic() - started

    suite = result.test_suites[0]
    (case,) = suite.test_cases
    assert case.status is CaseStatus.ERROR
    assert case.error_message == "timed out after 1 s"
    assert suite.stdout == "waiting\n"
    assert elapsed < 5
    for pid in map(int, pids.read_text().split()):
        assert process_is_gone(pid), f"process {pid} survived the timeout"


def test_sigterm_ignoring_runner_is_killed_after_the_grace_period(run_pack, tmp_path):
    script = """
        trap 'echo got TERM' TERM
        while :; do sleep 0.05; done
    """
    settings = ExecutorSettings(kill_grace=0.5)
    started = time.monotonic()
    result = run_pack(
        {"tests/run.sh": script}, {"s": shell("tests/run.sh", timeout=1)}, settings=settings
    )
    elapsed = time.monotonic() - started

    suite = result.test_suites[0]
    assert "got TERM" in (suite.stdout or "")
    assert suite.exit_code == -9  # SIGKILL after the grace period
    assert 1.4 <= elapsed < 5


def test_timeout_is_capped_by_the_operator(run_pack):
    settings = ExecutorSettings(kill_grace=0.2, timeout_cap=0.5)
    result = run_pack(
        {"tests/run.sh": "sleep 30"}, {"s": shell("tests/run.sh", timeout=100)}, settings=settings
    )

    assert result.test_suites[0].test_cases[0].error_message == "timed out after 0.5 s"


def test_default_timeout_applies_when_the_runner_sets_none(run_pack):
    settings = ExecutorSettings(kill_grace=0.2, default_timeout=0.5)
    result = run_pack({"tests/run.sh": "sleep 30"}, {"s": shell("tests/run.sh")}, settings=settings)

    assert result.test_suites[0].test_cases[0].error_message == "timed out after 0.5 s"


def test_a_failing_runner_does_not_stop_the_next(run_pack):
    result = run_pack(
        {"tests/crash.sh": "kill -KILL $$", "tests/ok.sh": summary(1, 1)},
        {"crash": shell("tests/crash.sh"), "ok": shell("tests/ok.sh")},
    )

    assert [s.failed for s in result.test_suites] == [1, 0]
    assert result.test_suites[1].passed == 1


# --- output ---------------------------------------------------------------------------------


def test_fifty_megabytes_of_output_finish_and_are_stored_truncated(run_pack):
    script = """
        echo FIRST LINE
        head -c 50000000 /dev/zero | tr '\\0' 'x'
        echo
    """ + summary(1, 1)
    started = time.monotonic()
    result = run_pack({"tests/run.sh": script}, {"s": shell("tests/run.sh", timeout=20)})
    elapsed = time.monotonic() - started

    stdout = result.test_suites[0].stdout or ""
    assert stdout.startswith("FIRST LINE\nxxx")
    assert stdout.endswith("Passed: 1\nFailed: 0\nSkipped: 0\n")
    assert "bytes elided" in stdout
    assert len(stdout.encode()) < 64 * 1024 + 100
    assert result.gate.passed  # the summary at the end was still read
    assert elapsed < 15


def test_output_limit_is_configurable(run_pack):
    settings = ExecutorSettings(output_limit_kib=1)
    result = run_pack(
        {"tests/run.sh": "seq 1 10000\nseq 1 10000 >&2\n" + summary(1, 1)},
        {"s": shell("tests/run.sh")},
        settings=settings,
    )

    suite = result.test_suites[0]
    for text in (suite.stdout or "", suite.stderr or ""):
        head, marker, _ = text.partition("bytes elided")
        assert marker
        assert head.startswith("1\n2\n3\n")
        assert len(text.encode()) < 1024 + 100
    assert (suite.stderr or "").endswith("9999\n10000\n")


def test_stdout_and_stderr_are_read_concurrently(run_pack):
    # 4 MB on stderr before anything on stdout: reading one pipe at a time would deadlock.
    script = """
        head -c 4000000 /dev/zero | tr '\\0' 'e' >&2
        head -c 4000000 /dev/zero | tr '\\0' 'o'
    """ + summary(1, 1)

    result = run_pack({"tests/run.sh": script}, {"s": shell("tests/run.sh", timeout=10)})

    assert result.gate.passed
    assert (result.test_suites[0].stderr or "").startswith("eeee")


def test_non_utf8_output_is_stored_with_replacement_characters(run_pack):
    script = r"""
        printf 'caf\351 \377\376 done\n'
        printf '\303\050 on stderr\n' >&2
    """ + summary(1, 1)

    result = run_pack({"tests/run.sh": script}, {"s": shell("tests/run.sh")})

    suite = result.test_suites[0]
    assert (suite.stdout or "").startswith("caf\ufffd \ufffd\ufffd done\n")
    assert (suite.stderr or "").startswith("\ufffd( on stderr")
    assert result.gate.passed


# --- cancellation ---------------------------------------------------------------------------


def test_cancel_kills_the_running_runner_and_skips_the_rest(make_pack, tmp_path, process_is_gone):
    pid_file = tmp_path / "pid"
    pack = make_pack(
        {
            "tests/slow.sh": f"sleep 60 & echo $! > {pid_file}; wait",
            "tests/never.sh": f"touch {tmp_path / 'never'}",
        },
        {"slow": shell("tests/slow.sh"), "never": shell("tests/never.sh")},
    )
    cancel = threading.Event()
    timer = threading.Timer(0.5, cancel.set)
    timer.start()
    started = time.monotonic()
    try:
        result = TestExecutor(ExecutorSettings(kill_grace=0.3, sandbox="none")).run(  # pid_file
            pack.path, pack.manifest, cancel=cancel
        )
    finally:
        timer.cancel()

    assert time.monotonic() - started < 5
    assert result.cancelled
    assert [s.name for s in result.test_suites] == ["slow"]
    assert result.test_suites[0].test_cases[0].error_message == "cancelled before it finished"
    assert not (tmp_path / "never").exists()
    assert process_is_gone(int(pid_file.read_text()))
    assert not result.gate.passed
    assert result.gate.reason.startswith("test run was cancelled")


def test_cancel_set_before_the_run_starts_nothing(make_pack, tmp_path):
    pack = make_pack({"tests/run.sh": f"touch {tmp_path / 'ran'}"}, {"s": shell("tests/run.sh")})
    cancel = threading.Event()
    cancel.set()

    result = TestExecutor().run(pack.path, pack.manifest, cancel=cancel)

    assert result.cancelled
    assert result.test_suites == []
    assert not (tmp_path / "ran").exists()
    assert not result.gate.passed


# --- the interpreter ------------------------------------------------------------------------


def test_python_interpreter_is_chosen_per_pack(make_pack, tmp_path):
    marker = tmp_path / "used-wrapper"
    wrapper = tmp_path / "python-wrapper"
    wrapper.write_text(f'#!/bin/sh\ntouch {marker}\nexec {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    pack = make_pack(
        {
            "tests/test_one.py": "import unittest\nclass T(unittest.TestCase):\n  def test(self): pass\n"
        },
        {"py": {"type": "unittest", "entry_point": "tests/test_one.py"}},
    )

    unsandboxed = ExecutorSettings(sandbox="none")  # the wrapper writes to tmp_path
    result = TestExecutor(unsandboxed).run(pack.path, pack.manifest, python=str(wrapper))

    assert marker.exists()
    assert (result.total_tests, result.passed) == (1, 1)


def test_pack_directory_that_cannot_be_staged_is_a_failed_suite(make_pack, tmp_path):
    pack = make_pack({"tests/run.sh": summary(1, 1)}, {"s": shell("tests/run.sh")})

    result = TestExecutor().run(tmp_path / "gone", pack.manifest)

    (suite,) = result.test_suites
    assert suite.test_cases[0].status is CaseStatus.ERROR
    assert (suite.test_cases[0].error_message or "").startswith("could not stage the pack")
    assert not result.gate.passed


def test_timed_out_runner_fails_the_gate_even_when_the_pass_rate_reaches_it(run_pack):
    many = 'echo "Total Tests: 99"; echo "Passed: 99"; echo "Failed: 0"'
    result = run_pack(
        {"tests/many.sh": many, "tests/slow.sh": "sleep 30"},
        {"many": shell("tests/many.sh"), "slow": shell("tests/slow.sh", timeout=1)},
        testing={"min_pass_rate": 0.5},
    )

    assert (result.passed, result.total_tests) == (99, 100)
    assert not result.gate.passed
    assert "slow: timed out after 1 s" in result.gate.reason
