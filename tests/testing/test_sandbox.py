"""The bubblewrap sandbox, for real: what a pack test can neither see, write nor reach, and
that every runner type still works and still dies on time inside it."""

from __future__ import annotations

import socket
import sys
import time
import uuid
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from attuned.settings.testing import SandboxMode
from attuned.testing import CaseStatus, ExecutorSettings, TestExecutor
from attuned.testing.sandbox import UNAVAILABLE_EVENT, Launch, launch_for, probe
from tests.testing.conftest import live_processes_with

WHY_NOT = probe()
pytestmark = pytest.mark.skipif(WHY_NOT is not None, reason=f"no sandbox here: {WHY_NOT}")

SANDBOX = ExecutorSettings(kill_grace=0.3, default_timeout=30, sandbox=SandboxMode.BWRAP)
NO_SANDBOX = SANDBOX.model_copy(update={"sandbox": SandboxMode.NONE})


def shell(entry: str, **spec: object) -> dict[str, object]:
    return {"type": "script", "entry_point": entry, **spec}


# --- what a test cannot see -----------------------------------------------------------------


READ_DB = """
    echo "listing: $(ls {state} 2>&1)"
    echo "content: $(cat {db} 2>&1)"
"""


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    state.mkdir()
    (state / "attuned.db").write_text("SECRET-ROW\n")
    return state


def test_hidden_state_dir_and_database_cannot_be_read(run_pack, tmp_path, state_dir):
    db = state_dir / "attuned.db"
    script = READ_DB.format(state=state_dir, db=db)
    # tmp_path is under /tmp, which the sandbox empties; show it, so only hiding can help.
    visible = SANDBOX.model_copy(update={"readable_paths": (tmp_path,)})
    hidden = visible.model_copy(update={"hidden_paths": (state_dir,)})

    control = run_pack({"t.sh": script}, {"s": shell("t.sh")}, settings=visible)
    result = run_pack({"t.sh": script}, {"s": shell("t.sh")}, settings=hidden)

    assert "content: SECRET-ROW" in (control.test_suites[0].stdout or "")
    stdout = result.test_suites[0].stdout or ""
    assert "SECRET" not in stdout
    assert "listing: \n" in stdout  # an empty directory in its place
    assert "No such file" in stdout


def test_hidden_database_file_passed_by_the_daemon_cannot_be_opened(make_pack, tmp_path, state_dir):
    db = state_dir / "attuned.db"
    pack = make_pack({"t.sh": READ_DB.format(state=state_dir, db=db)}, {"s": shell("t.sh")})
    visible = SANDBOX.model_copy(update={"readable_paths": (tmp_path,)})

    result = TestExecutor(visible, hidden_paths=[db]).run(pack.path, pack.manifest)

    stdout = result.test_suites[0].stdout or ""
    assert "SECRET" not in stdout
    assert f"{db}: Permission denied" in stdout  # /dev/null in its place, on a nodev mount


# --- what a test cannot write ---------------------------------------------------------------


def test_writes_outside_the_copy_do_not_reach_the_host(make_pack, tmp_path):
    host_tmp = Path("/tmp") / f"attuned-escape-{uuid.uuid4().hex}"
    in_work = Path("/work") / f"attuned-escape-{uuid.uuid4().hex}"
    script = """
        for target in "$@"; do
            if echo x > "$target" 2>/dev/null; then echo "wrote $target"; else echo "denied $target"; fi
        done
    """
    in_source = tmp_path / "pack0" / "written-by-test"  # the pack's own source directory
    in_copy = "written-in-copy"
    spec = shell("t.sh", args=[str(host_tmp), str(in_work), str(in_source), in_copy])
    pack = make_pack({"t.sh": script}, {"s": spec})
    assert in_source.parent == pack.path

    try:
        result = TestExecutor(SANDBOX).run(pack.path, pack.manifest)
        stdout = result.test_suites[0].stdout or ""
        assert not host_tmp.exists()
        assert not in_work.exists()
        assert not in_source.exists()
    finally:
        for path in (host_tmp, in_work):
            path.unlink(missing_ok=True)
    assert f"denied {in_work}" in stdout  # read-only system
    assert f"wrote {in_copy}" in stdout  # the private copy stays writable
    assert result.gate.passed


# --- what a test cannot reach ---------------------------------------------------------------


CONNECT = f"""#!{sys.executable}
import socket, sys
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=3).close()
    print("connected")
except OSError as exc:
    print("no connection:", exc)
"""


@pytest.mark.parametrize(("settings", "connects"), [(NO_SANDBOX, True), (SANDBOX, False)])
def test_loopback_listener_is_out_of_reach(run_pack, settings, connects):
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        socket.create_connection(("127.0.0.1", port), timeout=3).close()  # the host can

        result = run_pack(
            {"t.py": CONNECT}, {"s": shell("t.py", args=[str(port)])}, settings=settings
        )

    stdout = result.test_suites[0].stdout or ""
    assert ("connected" in stdout.splitlines()) is connects, stdout
    if not connects:
        assert "no connection" in stdout


# --- what still works -----------------------------------------------------------------------


def test_every_runner_type_passes_inside_the_sandbox(run_pack):
    result = run_pack(
        {
            "tests/run.sh": """
                [ "$(cat /proc/1/comm)" = bwrap ] || { echo "not sandboxed"; exit 1; }
                echo "Total Tests: 1"; echo "Passed: 1"; echo "Failed: 0"
            """,
            "tests/test_unit.py": "import unittest\n\nclass T(unittest.TestCase):\n"
            "    def test_ok(self):\n        self.assertTrue(True)\n",
            "tests/test_py.py": "def test_ok():\n    assert open('/proc/1/comm').read() == 'bwrap\\n'\n",
            "tests/run.tap": "#!/bin/sh\necho 1..2\necho ok 1 - a\necho ok 2 - b\n",
        },
        {
            "script": shell("tests/run.sh"),
            "unittest": {"type": "unittest", "entry_point": "tests/test_unit.py"},
            "pytest": {"type": "pytest", "entry_point": "tests/test_py.py"},
            "tap": {"type": "tap", "entry_point": "tests/run.tap"},
        },
        settings=SANDBOX,
    )

    assert [(s.name, s.passed, s.failed) for s in result.test_suites] == [
        ("script", 1, 0),
        ("unittest", 1, 0),
        ("pytest", 1, 0),
        ("tap", 2, 0),
    ]
    assert result.gate.passed


def test_timeout_kills_everything_inside_the_sandbox(run_pack):
    marker = f"{time.time_ns() % 10**6 + 300}.5"  # a unique `sleep` argument to look for
    script = f"""
        trap 'echo got TERM; exit 1' TERM
        sleep {marker} &
        sh -c 'sleep {marker}' &
        setsid sleep {marker} &  # leaves the session; the pid namespace still ends it
        echo waiting
        wait
    """
    started = time.monotonic()
    result = run_pack({"t.sh": script}, {"s": shell("t.sh", timeout=1)}, settings=SANDBOX)
    elapsed = time.monotonic() - started

    suite = result.test_suites[0]
    assert suite.test_cases[-1].error_message == "timed out after 1 s"
    assert "got TERM" in (suite.stdout or "")  # the grace period still applies inside
    assert elapsed < 5
    deadline = time.monotonic() + 3
    while live_processes_with(f"sleep\0{marker}") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert live_processes_with(f"sleep\0{marker}") == []


def test_missing_interpreter_inside_the_sandbox_is_not_started(run_pack):
    result = run_pack({"t.py": "#!/nonexistent/python9\n"}, {"s": shell("t.py")}, settings=SANDBOX)

    (case,) = result.test_suites[0].test_cases
    assert case.status is CaseStatus.ERROR
    assert (case.error_message or "").startswith("could not start")


# --- when bwrap cannot run --------------------------------------------------------------------


@pytest.fixture
def broken_bwrap(tmp_path: Path) -> Path:
    """A real program that fails the way bwrap does in a container without user namespaces."""
    fake = tmp_path / "bwrap"
    fake.write_text(
        "#!/bin/sh\necho 'bwrap: No permissions to creating new namespace' >&2\nexit 1\n"
    )
    fake.chmod(0o755)
    return fake


def test_required_sandbox_that_cannot_run_is_an_error(broken_bwrap):
    launch = launch_for(SANDBOX, broken_bwrap)

    assert isinstance(launch, str)
    assert launch.startswith("testing.sandbox is bwrap, but")
    assert "No permissions" in launch


def test_auto_without_a_working_sandbox_warns_once_and_runs_without(broken_bwrap):
    auto = SANDBOX.model_copy(update={"sandbox": SandboxMode.AUTO})

    with capture_logs() as logs:
        first, second = launch_for(auto, broken_bwrap), launch_for(auto, broken_bwrap)

    assert first == second == Launch(sandboxed=False, run_as=None)
    assert [entry["event"] for entry in logs] == [UNAVAILABLE_EVENT]
    assert "No permissions" in logs[0]["reason"]


def test_missing_bwrap_names_the_package(tmp_path):
    assert "bubblewrap" in (probe(None, tmp_path / "bwrap") or "")
