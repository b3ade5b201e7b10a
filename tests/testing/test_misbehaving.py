"""Tests that misbehave on purpose: fork bombs, memory hogs, endless output, and writes where
they do not belong. Each run must end, be reported as a failure, and leave nothing behind."""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from attuned.settings.testing import SandboxMode
from attuned.testing import CaseStatus, ExecutorSettings, ResourceLimits, TestExecutor
from attuned.testing.limits import resolve_user
from attuned.testing.sandbox import probe
from tests.testing.conftest import live_processes_with

BASE = ExecutorSettings(kill_grace=0.3, default_timeout=30, sandbox=SandboxMode.NONE)
SANDBOX_WHY_NOT = probe()
WITH_AND_WITHOUT_SANDBOX = pytest.mark.parametrize(
    "sandbox",
    [
        SandboxMode.NONE,
        pytest.param(
            SandboxMode.BWRAP,
            marks=pytest.mark.skipif(
                SANDBOX_WHY_NOT is not None, reason=f"no sandbox here: {SANDBOX_WHY_NOT}"
            ),
        ),
    ],
)


def shell(entry: str, **spec: object) -> dict[str, object]:
    return {"type": "script", "entry_point": entry, **spec}


def settings(sandbox: SandboxMode, **changes: object) -> ExecutorSettings:
    return BASE.model_copy(update={"sandbox": sandbox, **changes})


def none_left(marker: str, within: float = 3.0) -> bool:
    deadline = time.monotonic() + within
    while live_processes_with(marker):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def processes_of(uid: int) -> int:
    """Processes of `uid`, zombies included: RLIMIT_NPROC counts them until they are reaped."""
    count = 0
    for entry in Path("/proc").glob("[0-9]*/status"):
        try:
            uid_line = next(x for x in entry.read_text().splitlines() if x.startswith("Uid:"))
        except (OSError, StopIteration):
            continue
        count += int(uid_line.split()[1]) == uid
    return count


def back_to(uid: int, baseline: int, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while processes_of(uid) > baseline:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# --- fork bombs -------------------------------------------------------------------------------
# RLIMIT_NPROC does not apply to root, so a daemon running as root contains a fork bomb only
# with `testing.run_as`: the limit then counts the processes of that unprivileged user.


SYSTEM_PYTHON = Path("/usr/bin/python3")  # the test user cannot reach a pyenv under /root


def _nobody() -> str:
    try:
        pwd.getpwnam("nobody")
    except KeyError:
        return "no user 'nobody' on this host"
    if not SYSTEM_PYTHON.is_file():
        return f"no {SYSTEM_PYTHON}"
    return "" if os.getuid() == 0 else "testing.run_as needs root"


def skip_unless_sandbox_as_nobody(sandbox: SandboxMode) -> None:
    """bwrap started by an unprivileged user needs user namespaces, which hosts may forbid."""
    if sandbox == SandboxMode.BWRAP and (why := probe(resolve_user("nobody"))):
        pytest.skip(f"no sandbox for user nobody here: {why}")


NEEDS_RUN_AS = pytest.mark.skipif(bool(_nobody()), reason=_nobody() or "-")
PROCESS_LIMIT = 40

COUNTING_BOMB = f"""#!{SYSTEM_PYTHON}
import os, sys, time
forked = 0
try:
    while forked < {PROCESS_LIMIT * 10}:
        if os.fork() == 0:
            time.sleep(300)
            os._exit(0)
        forked += 1
    print("forked", forked, "and never failed")
except OSError as exc:
    print("forked", forked, "then:", exc)
sys.exit(1)
"""


@NEEDS_RUN_AS
@WITH_AND_WITHOUT_SANDBOX
def test_fork_bomb_stops_at_the_process_limit_of_the_test_user(run_pack, sandbox):
    skip_unless_sandbox_as_nobody(sandbox)
    marker = uuid.uuid4().hex
    nobody = resolve_user("nobody").uid
    baseline = processes_of(nobody)
    limits = ResourceLimits(processes=PROCESS_LIMIT + baseline)
    result = run_pack(
        {"bomb.py": COUNTING_BOMB},
        {"s": shell("bomb.py", args=[marker])},
        settings=settings(sandbox, run_as="nobody", limits=limits),
    )

    stdout = result.test_suites[0].stdout or ""
    assert "Resource temporarily unavailable" in stdout, result.test_suites[0]  # EAGAIN
    forked = int(stdout.split()[1])
    assert 0 < forked < PROCESS_LIMIT
    assert not result.gate.passed
    assert none_left(marker)  # the sleeping children went with the session
    assert back_to(nobody, baseline)  # and were reaped


@NEEDS_RUN_AS
@WITH_AND_WITHOUT_SANDBOX
def test_classic_fork_bomb_ends_at_the_timeout_with_nothing_left(run_pack, sandbox):
    skip_unless_sandbox_as_nobody(sandbox)
    marker = uuid.uuid4().hex
    nobody = resolve_user("nobody").uid
    baseline = processes_of(nobody)
    bomb = "bomb() { bomb | bomb & }; bomb; wait; echo the bomb fizzled out; exit 1\n"
    started = time.monotonic()
    result = run_pack(
        {"bomb.sh": bomb},
        {"s": shell("bomb.sh", args=[marker], timeout=2)},
        settings=settings(sandbox, run_as="nobody", limits=ResourceLimits(processes=PROCESS_LIMIT)),
    )

    assert time.monotonic() - started < 10
    assert not result.gate.passed
    assert none_left(marker, within=5)
    assert back_to(nobody, baseline)


# --- memory hogs ----------------------------------------------------------------------------

HOG = """
import unittest


class Hog(unittest.TestCase):
    def test_eats_memory(self):
        self.hoard = bytearray(2 * 1024**3)
"""


@WITH_AND_WITHOUT_SANDBOX
def test_memory_hog_hits_the_address_space_limit(run_pack, sandbox):
    started = time.monotonic()
    result = run_pack(
        {"test_hog.py": HOG},
        {"u": {"type": "unittest", "entry_point": "test_hog.py"}},
        settings=settings(sandbox, limits=ResourceLimits(address_space_mb=512)),
    )

    suite = result.test_suites[0]
    (case,) = suite.test_cases
    assert case.name.endswith("Hog.test_eats_memory")
    assert case.status is CaseStatus.ERROR
    assert (case.error_message or "").endswith("MemoryError")
    assert not result.gate.passed
    assert time.monotonic() - started < 10


# --- endless output -------------------------------------------------------------------------


@WITH_AND_WITHOUT_SANDBOX
def test_endless_output_is_cut_at_the_timeout_and_stored_truncated(run_pack, sandbox):
    result = run_pack(
        {"t.sh": "yes 'all work and no play'\n"},
        {"s": shell("t.sh", timeout=1)},
        settings=settings(sandbox, output_limit_kib=8, parse_limit_mib=1),
    )

    suite = result.test_suites[0]
    stdout = suite.stdout or ""
    assert suite.test_cases[-1].error_message == "timed out after 1 s"
    assert "bytes elided ...]" in stdout
    assert len(stdout.encode()) < 8 * 1024 + 200
    assert stdout.startswith("all work and no play\n")


# --- writes outside the copy ----------------------------------------------------------------


@pytest.fixture
def root_owned_dir() -> Iterator[Path]:
    """A directory anyone may enter and only root may write: not under pytest's 0700 tmp."""
    directory = Path(tempfile.mkdtemp(prefix="attuned-not-yours-"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory)


@NEEDS_RUN_AS
def test_unprivileged_test_user_cannot_write_outside_without_sandbox(make_pack, root_owned_dir):
    target = root_owned_dir / "written-by-test"
    script = 'if echo x > "$1"; then echo wrote; else echo denied; fi\necho x > mine && echo own\n'
    pack = make_pack({"t.sh": script}, {"s": shell("t.sh", args=[str(target)])})

    result = TestExecutor(settings(SandboxMode.NONE, run_as="nobody")).run(pack.path, pack.manifest)

    assert not target.exists()
    assert (result.test_suites[0].stdout or "") == "denied\nown\n"  # its copy is its own
    assert "Permission denied" in (result.test_suites[0].stderr or "")
