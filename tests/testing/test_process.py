"""run_process with real processes: the session is always cleaned up, output is read while
the process runs, and the grace period between SIGTERM and SIGKILL is honoured."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from attuned.testing.process import Ending, run_process

ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}


def bash(script: str, tmp_path: Path, *, timeout: float = 10, grace: float = 0.3, **kw):
    return run_process(
        ["bash", "-c", script],
        cwd=tmp_path,
        env=ENV,
        timeout=timeout,
        kill_grace=grace,
        capture_limit=1024 * 1024,
        **kw,
    )


def test_exit_code_and_both_streams(tmp_path):
    outcome = bash("echo out; echo err >&2; exit 7", tmp_path)

    assert outcome.ending is Ending.EXITED
    assert (outcome.returncode, outcome.exit_code, outcome.signal) == (7, 7, None)
    assert outcome.stdout.text() == "out\n"
    assert outcome.stderr.text() == "err\n"


def test_background_process_left_behind_is_killed_after_a_normal_exit(tmp_path, process_is_gone):
    # The leftover does not even hold the pipes: only a look at the session can find it.
    outcome = bash("sleep 300 >/dev/null 2>&1 & echo $!", tmp_path)

    assert outcome.exit_code == 0
    assert outcome.duration < 2
    assert process_is_gone(int(outcome.stdout.text()))


def test_process_that_moved_to_its_own_group_is_still_killed(tmp_path, process_is_gone):
    # `set -m` puts the background job in a process group of its own, same session.
    outcome = bash("set -m; sleep 300 & echo $!; wait", tmp_path, timeout=0.5)

    assert outcome.ending is Ending.TIMED_OUT
    assert process_is_gone(int(outcome.stdout.text()))


def test_grace_period_lets_a_runner_clean_up(tmp_path):
    script = "trap 'echo cleaning; sleep 0.2; echo clean; exit 0' TERM; sleep 60 & wait"

    outcome = bash(script, tmp_path, timeout=0.5, grace=3)

    assert outcome.ending is Ending.TIMED_OUT
    assert outcome.stdout.text() == "cleaning\nclean\n"
    assert outcome.returncode == 0  # it exited by itself within the grace period


def test_zero_grace_kills_at_once(tmp_path):
    started = time.monotonic()
    outcome = bash("trap '' TERM; sleep 60", tmp_path, timeout=0.3, grace=0)

    assert outcome.returncode == -9
    assert time.monotonic() - started < 2


def test_program_that_cannot_start(tmp_path):
    outcome = run_process(
        [str(tmp_path / "missing")],
        cwd=tmp_path,
        env=ENV,
        timeout=1,
        kill_grace=0,
        capture_limit=100,
    )

    assert outcome.ending is Ending.NOT_STARTED
    assert outcome.returncode is None
    assert "No such file" in (outcome.start_error or "")


def test_cancel_event_stops_the_process(tmp_path):
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    started = time.monotonic()

    outcome = bash("sleep 60", tmp_path, cancel=cancel)

    assert outcome.ending is Ending.CANCELLED
    assert time.monotonic() - started < 2


def test_pipes_held_open_by_an_escaped_process_do_not_hang_the_run(tmp_path):
    # setsid leaves the session: it cannot be killed by session, but must not block us.
    started = time.monotonic()
    outcome = bash("setsid sleep 3 & echo started", tmp_path)

    assert outcome.exit_code == 0
    assert outcome.stdout.text() == "started\n"
    assert time.monotonic() - started < 2.5


def test_an_exception_in_the_caller_still_kills_the_session(tmp_path, process_is_gone):
    pid_file = tmp_path / "pid"

    class Interrupt(BaseException):
        pass

    class RaisingEvent(threading.Event):
        """A cancel event whose check fails once the test process is up, like a ^C."""

        def is_set(self) -> bool:
            if pid_file.exists() and pid_file.read_text().strip():
                raise Interrupt
            return False

    try:
        bash(f"sleep 300 & echo $! > {pid_file}; wait", tmp_path, cancel=RaisingEvent())
    except Interrupt:
        pass
    else:
        raise AssertionError("the exception was swallowed")

    assert process_is_gone(int(pid_file.read_text()))
