"""`attuned status` renders the status file from its JSON (no pydantic), exactly as the models
would: `--json` is `Status.model_dump(mode="json")`, for this version's files and older ones."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from attuned.cli.daemonlock import NO_DAEMON
from attuned.cli.statusfile import SHAPE
from attuned.report.status import (
    DaemonStatus,
    LastTest,
    PackStatus,
    ReconcileSummary,
    SinkStatus,
    SourceStatus,
    Status,
    now,
    read_status,
    write_status,
)
from tests.cli.inprocess import run_attuned, subprocess_attuned


def a_status() -> Status:
    """A daemon's status with one of each: a failing source, a regression, a conflict, a sink."""
    at = now() - timedelta(minutes=5)
    test = LastTest(status="passed", passed=3, total=3, at=at, version="1.0.0")
    regressed = LastTest(
        status="failed", passed=1, total=3, at=at, version="1.1.0", regressions=["a", "b"]
    )
    return Status(
        daemon=DaemonStatus(
            version="1.2.3",
            pid=os.getpid(),  # a live process: the daemon runs
            started_at=at,
            phase="idle",
            config_file="/etc/a.yaml",
        ),
        updated_at=at,
        last_reconcile=ReconcileSummary(
            started_at=at, finished_at=at, duration_ms=17, trigger="full", counts={"active": 1}
        ),
        sources=[
            SourceStatus(name="local", type="directory", location="/srv/packs.d", candidates=2),
            SourceStatus(
                name="repo",
                type="git",
                location="https://git.example.com/p.git",
                readable=False,
                error="connection refused",
                error_since=at,
                invalid=[{"entry": "junk", "problems": ["no pack.yaml", "not a pack"]}],
            ),
        ],
        packs={
            "hello": PackStatus(state="active", version="1.0.0", source="local", last_test=test),
            "welcome": PackStatus(
                state="failed", version="1.0.0", source="local", reason="tests", last_test=regressed
            ),
            "byhand": PackStatus(state="pending"),
        },
        conflicts=[{"reason": "two sources offer hello"}],
        notify=[SinkStatus(name="chat", type="webhook", target="https://chat/x", pending=2)],
    )


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "attuned.yaml"
    path.write_text(f"state_dir: {tmp_path / 'state'}\n")
    return path


@pytest.fixture
def status_path(tmp_path: Path) -> Path:
    return tmp_path / "state/status.json"


def test_json_is_the_models_dump_byte_for_byte(
    config: Path, status_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_status(status_path, a_status())

    done = run_attuned(["status", "--json", "--config", config], capsys)

    assert done.returncode == 0
    expected = read_status(status_path).model_dump(mode="json")
    alive = {"running": True, "not_running_since": None}
    assert done.stdout == json.dumps({**expected, **alive}, indent=2) + "\n"


def test_an_older_daemons_file_is_filled_in_by_the_models(
    config: Path, status_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file without fields this version added (`notify`, `daemon.role`) prints as the
    models complete it, not as it is."""
    data = a_status().model_dump(mode="json")
    del data["notify"], data["daemon"]["role"]
    status_path.parent.mkdir(parents=True)
    status_path.write_text(json.dumps(data))

    shown = json.loads(run_attuned(["status", "--json", "--config", config], capsys).stdout)

    assert shown["notify"] == [] and shown["daemon"]["role"] == "leader"
    assert shown.pop("running") is True and shown.pop("not_running_since") is None
    assert shown == read_status(status_path).model_dump(mode="json")


def test_the_text_shows_daemon_sources_packs_and_conflicts(
    config: Path, status_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_status(status_path, a_status())

    lines = run_attuned(["status", "--config", config], capsys).stdout.splitlines()

    started = read_status(status_path).daemon.started_at
    pid = os.getpid()
    assert lines[0] == f"attuned 1.2.3  pid {pid}  idle  up since {started:%Y-%m-%d %H:%M:%S}"
    assert lines[1] == "last reconcile 5 min ago (full, 17 ms)"
    assert lines[2] == "source local (directory /srv/packs.d): 2 packs, ok"
    assert lines[3] == (
        "source repo (git https://git.example.com/p.git): 0 packs, "
        "ERROR since 5 min ago: connection refused"
    )
    assert lines[4] == "  invalid junk: no pack.yaml; not a pack"
    assert [" ".join(line.split()) for line in lines[6:10]] == [  # the table, spaces squeezed
        "PACK STATE VERSION SOURCE LAST TEST DETAIL",
        "byhand pending - by hand -",
        "hello active 1.0.0 local passed 3/3",
        "welcome failed 1.0.0 local failed 1/3 tests; regressed: a, b",
    ]
    assert lines[10:] == ["conflict: two sources offer hello"]


@pytest.mark.parametrize(
    ("content", "complaint"),
    [
        ("not json", "is not a status file"),
        ('{"daemon": {"pid": 1}}', "is not a status file"),
        (None, "cannot read the status file"),
    ],
)
def test_a_missing_or_damaged_file_is_one_line_and_exit_1(
    config: Path,
    status_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: str | None,
    complaint: str,
) -> None:
    if content is not None:
        status_path.parent.mkdir(parents=True)
        status_path.write_text(content)

    done = run_attuned(["status", "--config", config], capsys)

    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith(f"error: {status_path}" if content else "error: cannot read")
    assert complaint in done.stderr and len(done.stderr.splitlines()) == 1


def test_an_invalid_config_is_the_full_loaders_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "attuned.yaml"
    config.write_text("state_dir: ./var\nstat_file: typo\n")

    # run where ./var holds no status file: a checkout that ran the README's quick start has one
    done = run_attuned(["status", "--config", config], capsys, cwd=tmp_path)

    assert done.returncode == 2
    assert done.stderr == f"error: {config}:2: stat_file: unknown field\n"


def test_the_shape_is_the_models() -> None:
    models: dict[str, Any] = {
        "status": Status,
        "daemon": DaemonStatus,
        "last_reconcile": ReconcileSummary,
        "source": SourceStatus,
        "pack": PackStatus,
        "last_test": LastTest,
        "sink": SinkStatus,
    }
    assert {kind: tuple(model.model_fields) for kind, model in models.items()} == SHAPE


def test_the_real_command_with_environment_overrides(tmp_path: Path) -> None:
    """End to end: ATTUNED_STATUS_FILE moves the file, the command finds it."""
    elsewhere = tmp_path / "run/status.json"
    write_status(elsewhere, a_status())
    (tmp_path / "attuned.yaml").write_text("state_dir: st\n")
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("ATTUNED_")}

    done = subprocess_attuned(
        ["status", "--json"], cwd=tmp_path, env={**env, "ATTUNED_STATUS_FILE": str(elsewhere)}
    )

    assert (done.returncode, done.stderr) == (0, "")
    shown = json.loads(done.stdout)
    assert shown.pop("running") is True
    assert shown == {**read_status(elsewhere).model_dump(mode="json"), "not_running_since": None}


# -- whether the daemon runs ------------------------------------------------------------------


def a_dead_pid() -> int:
    """The pid of a real process that has exited (and been reaped): nothing has it now."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def with_daemon(status: Status, **fields: Any) -> Status:
    return status.model_copy(update={"daemon": status.daemon.model_copy(update=fields)})


def test_a_killed_daemon_is_not_running_and_exits_5(
    config: Path, status_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pid = a_dead_pid()
    write_status(status_path, with_daemon(a_status(), pid=pid))
    written = datetime.fromtimestamp(status_path.stat().st_mtime, UTC)

    done = run_attuned(["status", "--config", config], capsys)

    assert done.returncode == NO_DAEMON == 5
    assert done.stdout.splitlines()[0] == (
        f"attuned 1.2.3  pid {pid}  not running since {written:%Y-%m-%d %H:%M:%S} "
        f"(pid {pid} is gone; it was idle)"
    )
    shown = json.loads(run_attuned(["status", "--json", "--config", config], capsys).stdout)
    assert shown["running"] is False
    assert shown["not_running_since"] == written.isoformat().replace("+00:00", "Z")


def test_a_live_pid_without_the_state_lock_is_not_the_daemon(
    config: Path, status_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The pid was reused by another process: the daemon's lock file is there, unheld."""
    write_status(status_path, a_status())  # this test's own pid
    lock = status_path.parent / "attuned.lock"
    lock.write_text(f"{os.getpid()}\n")

    free = run_attuned(["status", "--config", config], capsys)

    assert free.returncode == 5
    assert "not running since" in free.stdout.splitlines()[0]
    assert f"does not hold {lock}" in free.stdout.splitlines()[0]
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as the daemon holds it
        held = run_attuned(["status", "--config", config], capsys)
    finally:
        os.close(fd)
    assert held.returncode == 0 and " idle  up since " in held.stdout.splitlines()[0]


def test_a_stopped_daemon_says_stopped_and_exits_5(
    config: Path, status_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_status(status_path, with_daemon(a_status(), phase="stopped"))
    written = datetime.fromtimestamp(status_path.stat().st_mtime, UTC)

    done = run_attuned(["status", "--config", config], capsys)

    assert done.returncode == 5
    pid = os.getpid()
    assert done.stdout.splitlines()[0] == (
        f"attuned 1.2.3  pid {pid}  stopped since {written:%Y-%m-%d %H:%M:%S}"
    )


def test_a_refused_config_reload_is_shown(
    config: Path, status_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A hand-written file, as a daemon that refused a SIGHUP's config writes it."""
    data = a_status().model_dump(mode="json")
    data["daemon"]["config_reload_failed"] = {
        "error": "/etc/a.yaml:3: sources: unknown field",
        "at": "2026-12-06T01:02:03Z",
    }
    status_path.parent.mkdir(parents=True)
    status_path.write_text(json.dumps(data))

    lines = run_attuned(["status", "--config", config], capsys).stdout.splitlines()

    assert lines[1] == (
        "config reload failed at 2026-12-06 01:02:03: /etc/a.yaml:3: sources: unknown field "
        "(running with the previous config)"
    )


def test_a_git_sources_commit_and_counts_in_the_singular(
    config: Path, status_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = a_status()
    status.sources[1] = SourceStatus(
        name="repo",
        type="git",
        location="https://git.example.com/p.git",
        candidates=1,
        revision="0123456789abcdef0123456789abcdef01234567",
    )
    write_status(status_path, status)

    lines = run_attuned(["status", "--config", config], capsys).stdout.splitlines()

    assert lines[3] == (
        "source repo (git https://git.example.com/p.git, commit 0123456789ab): 1 pack, ok"
    )


def test_a_config_that_no_longer_loads_still_shows_the_status(
    tmp_path: Path, status_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Edited while the daemon runs: the file's state_dir still says where the status is."""
    write_status(status_path, a_status())
    config = tmp_path / "attuned.yaml"
    config.write_text(f"state_dir: {tmp_path / 'state'}\nstat_file: typo\n")

    done = run_attuned(["status", "--config", config], capsys)

    assert done.returncode == 0
    assert done.stdout.startswith("attuned 1.2.3  pid ")
    assert done.stderr == (
        f"warning: the config does not load ({config}:2: stat_file: unknown field); "
        f"showing {status_path}\n"
    )
