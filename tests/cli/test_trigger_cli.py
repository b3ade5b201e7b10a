"""`attuned trigger SOURCE` tells the truth: with a daemon holding the state directory it asks
it (exit 0); with none, it says so and exits 5, the trigger file kept for the next start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from attuned.cli.daemonlock import NO_DAEMON, holder
from attuned.reconcile.daemon.statelock import StateLock
from tests.cli.inprocess import run_attuned, subprocess_attuned

SOURCES = (
    "sources:\n  - {name: local, path: packs.d, create: true}\n"
    "  - {name: repo, type: git, url: 'https://git.example.com/p.git', ref: {branch: main}}\n"
)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "attuned.yaml"
    path.write_text(f"state_dir: {tmp_path / 'state'}\n{SOURCES}")
    return path


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[StateLock]:
    """The daemon's own lock on the state directory, held as a running daemon holds it."""
    lock = StateLock(tmp_path / "state")
    lock.acquire()
    try:
        yield lock
    finally:
        lock.release()


def test_with_a_daemon_it_asks_it_to_poll(
    config: Path, tmp_path: Path, daemon: StateLock, capsys: pytest.CaptureFixture[str]
) -> None:
    done = run_attuned(["trigger", "repo", "--config", config], capsys)

    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == f"asked attuned to poll repo now (pid {os.getpid()})\n"
    assert float((tmp_path / "state/triggers/repo").read_text()) > 0


def test_json_names_the_file_and_the_daemon(
    config: Path, tmp_path: Path, daemon: StateLock, capsys: pytest.CaptureFixture[str]
) -> None:
    done = run_attuned(["trigger", "local", "--json", "--config", config], capsys)

    assert json.loads(done.stdout) == {
        "source": "local",
        "trigger": str(tmp_path / "state/triggers/local"),
        "daemon_pid": os.getpid(),
    }


def test_a_watched_folder_is_asked_for_a_pass(
    config: Path, daemon: StateLock, capsys: pytest.CaptureFixture[str]
) -> None:
    done = run_attuned(["trigger", "local", "--config", config], capsys)

    assert done.stdout == f"asked attuned to rescan local now (pid {os.getpid()})\n"


def test_without_a_daemon_it_says_so_keeps_the_file_and_exits_5(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ran_once = StateLock(tmp_path / "state")  # a daemon ran here once, and stopped
    ran_once.acquire()
    ran_once.release()

    done = run_attuned(["trigger", "repo", "--config", config], capsys)

    assert (done.returncode, done.stdout) == (NO_DAEMON, "")
    assert done.stderr == (
        f"error: no attuned daemon runs on {tmp_path / 'state'}: nothing reads repo now "
        "(the daemon's first pass reads every source when it starts)\n"
    )
    assert (tmp_path / "state/triggers/repo").is_file()
    as_json = run_attuned(["trigger", "repo", "--json", "--config", config], capsys)
    assert json.loads(as_json.stdout)["exit_code"] == NO_DAEMON


def test_an_unknown_source_is_a_usage_error_naming_the_sources(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    done = run_attuned(["trigger", "nosuch", "--config", config], capsys)

    assert done.returncode == 2
    assert done.stderr == f"error: {config}: no source named 'nosuch' (sources: local, repo)\n"
    assert not (tmp_path / "state/triggers").exists()


def test_an_invalid_config_is_the_full_loaders_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "attuned.yaml"
    config.write_text(f"{SOURCES}  - {{name: local, path: again}}\n")

    done = run_attuned(["trigger", "local", "--config", config], capsys)

    assert done.returncode == 2
    assert "source names must be unique: local" in done.stderr


def test_the_probe_sees_the_daemons_lock_and_only_while_it_is_held(tmp_path: Path) -> None:
    state = tmp_path / "state"
    assert holder(state) is None  # no attuned ever ran here
    lock = StateLock(state)
    lock.acquire()
    assert holder(state) == str(os.getpid())
    lock.release()
    assert holder(state) is None
    assert not (state / "triggers").exists()  # the probe writes nothing


HOLD = """
import sys, time
from pathlib import Path
from attuned.reconcile.daemon.statelock import StateLock
lock = StateLock(Path(sys.argv[1]))
lock.acquire()
print("held", flush=True)
time.sleep(60)
"""


def test_the_real_command_against_another_process_holding_the_lock(
    config: Path, tmp_path: Path
) -> None:
    """End to end, as the post-receive hook runs it: the daemon is another process."""
    held = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path / "state")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert held.stdout is not None and held.stdout.readline() == "held\n"
        running = subprocess_attuned(["trigger", "repo", "--config", config], cwd=tmp_path)
    finally:
        held.kill()
        held.wait()
    gone = subprocess_attuned(["trigger", "repo", "--config", config], cwd=tmp_path)

    assert (running.returncode, running.stderr) == (0, "")
    assert running.stdout == f"asked attuned to poll repo now (pid {held.pid})\n"
    assert gone.returncode == NO_DAEMON and "no attuned daemon runs" in gone.stderr


def test_a_trigger_that_cannot_be_written_is_one_line_and_exit_1(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "state").mkdir()
    (tmp_path / "state/triggers").write_text("a file where the folder should be")

    done = run_attuned(["trigger", "repo", "--config", config], capsys)

    assert done.returncode == 1
    assert done.stderr == f"error: cannot write {tmp_path / 'state/triggers/repo'}: File exists\n"
