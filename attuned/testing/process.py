"""Run one test process: own session, stdin closed, both pipes read while it runs, a deadline,
cancellation, and a kill of the whole session (SIGTERM, grace, SIGKILL) so no grandchild
survives the test.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import selectors
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import IO

from attuned.testing.capture import BoundedCapture

_READ_SIZE = 1024 * 1024
_PIPE_SIZE = 1024 * 1024  # fewer wake-ups for chatty tests; the kernel may refuse, that's fine
_CANCEL_POLL = 0.1  # seconds between looks at the cancel event
_EXIT_POLL = 0.05  # when pidfd is unavailable
_KILL_WAIT = 5.0  # after SIGKILL, for processes stuck in uninterruptible sleep
_DRAIN = 1.0  # after the session is dead, for a process that escaped it and holds a pipe
_PROC = Path("/proc")


class Ending(StrEnum):
    """How the process stopped; only EXITED has a meaningful return code of its own."""

    EXITED = "exited"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    NOT_STARTED = "not_started"


@dataclass(frozen=True)
class ProcessOutcome:
    ending: Ending
    returncode: int | None  # as Popen reports it: negative = killed by that signal
    stdout: BoundedCapture
    stderr: BoundedCapture
    duration: float  # seconds, from start until the main process ended or was killed
    start_error: str | None = None

    @property
    def exit_code(self) -> int | None:
        """The code the process exited with by itself; None when a signal ended it."""
        if self.ending is Ending.EXITED and self.returncode is not None and self.returncode >= 0:
            return self.returncode
        return None

    @property
    def signal(self) -> int | None:
        return -self.returncode if self.returncode is not None and self.returncode < 0 else None


@contextlib.contextmanager
def _standard_input(data: bytes | None) -> Iterator[IO[bytes] | int]:
    """`data` in a file the process reads (or stdin closed)."""
    if data is None:
        yield subprocess.DEVNULL
        return
    with tempfile.TemporaryFile() as given:
        given.write(data)
        given.seek(0)
        yield given


def run_process(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    timeout: float,
    kill_grace: float,
    capture_limit: int,
    preexec_fn: Callable[[], None] | None = None,
    cancel: threading.Event | None = None,
    spare_leader_from_term: bool = False,
    stdin: bytes | None = None,
) -> ProcessOutcome:
    """Run `argv` to completion, timeout or cancellation; never leaves its session running.

    `spare_leader_from_term`: the main process is a sandbox (bwrap) whose death kills every
    process inside at once; SIGTERM goes to the others only, so they get the grace period.
    `stdin`: bytes the process reads on its standard input (from a file, so a process that
    never reads it cannot block us); without it, stdin is closed."""
    stdout, stderr = BoundedCapture(capture_limit), BoundedCapture(capture_limit)
    started = time.monotonic()
    try:
        with _standard_input(stdin) as given:  # the child keeps its own copy of the file
            proc = subprocess.Popen(
                list(argv),
                cwd=cwd,
                env=dict(env),
                stdin=given,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,  # own session and process group: one kill reaches all
                preexec_fn=preexec_fn,  # only setrlimit, all computed before the fork
                close_fds=True,
            )
    except (OSError, subprocess.SubprocessError) as exc:
        return ProcessOutcome(
            Ending.NOT_STARTED, None, stdout, stderr, time.monotonic() - started, str(exc)
        )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        with _Pump(proc, {proc.stdout.fileno(): stdout, proc.stderr.fileno(): stderr}) as pump:
            ending = pump.wait_for_exit(started + timeout, cancel)
            duration = time.monotonic() - started
            if ending is not Ending.EXITED or _session_members(proc.pid):
                _terminate_session(proc.pid, kill_grace, pump, spare_leader_from_term)
            pump.drain(time.monotonic() + _DRAIN)
    except BaseException:  # e.g. KeyboardInterrupt: never leave the tests running
        _signal_session(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    returncode = proc.wait()
    return ProcessOutcome(ending, returncode, stdout, stderr, duration)


class _Pump:
    """Moves bytes from the pipes into the captures while the caller waits for something."""

    def __init__(self, proc: subprocess.Popen[bytes], captures: dict[int, BoundedCapture]):
        self._proc = proc
        self._captures = captures
        self._selector = selectors.DefaultSelector()
        self._exited = False
        for fd in captures:
            with contextlib.suppress(OSError):
                fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
            self._selector.register(fd, selectors.EVENT_READ)
        self._pidfd: int | None = None
        with contextlib.suppress(OSError, AttributeError):
            self._pidfd = os.pidfd_open(proc.pid)  # readable when the process exits
            self._selector.register(self._pidfd, selectors.EVENT_READ)

    def __enter__(self) -> _Pump:
        return self

    def __exit__(self, *_exc: object) -> None:
        self._selector.close()
        if self._pidfd is not None:
            os.close(self._pidfd)
        for stream in (self._proc.stdout, self._proc.stderr):
            if stream is not None:
                stream.close()

    def wait_for_exit(self, deadline: float, cancel: threading.Event | None) -> Ending:
        while True:
            if self._main_exited():
                return Ending.EXITED
            if cancel is not None and cancel.is_set():
                return Ending.CANCELLED
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return Ending.TIMED_OUT
            if cancel is not None:
                remaining = min(remaining, _CANCEL_POLL)
            if self._pidfd is None:
                remaining = min(remaining, _EXIT_POLL)
            self.pump(remaining)

    def pump(self, timeout: float) -> None:
        for key, _events in self._selector.select(timeout):
            fd = int(key.fd)
            if fd == self._pidfd:
                self._selector.unregister(fd)  # stays readable; stop waking up for it
                self._exited = True
                continue
            try:
                chunk = os.read(fd, _READ_SIZE)
            except BlockingIOError:
                continue
            if chunk:
                self._captures[fd].append(chunk)
            else:
                self._selector.unregister(fd)

    def drain(self, deadline: float) -> None:
        """Read what is left until every pipe is closed by the other side, or `deadline`."""
        while self._open_pipes() and (remaining := deadline - time.monotonic()) > 0:
            self.pump(remaining)

    def _open_pipes(self) -> bool:
        return any(key.fd in self._captures for key in self._selector.get_map().values())

    def _main_exited(self) -> bool:
        """True once the main process has exited; it stays unreaped (a zombie) on purpose,
        so its pid, which is also the session and group id, cannot be reused before the
        session is cleaned up."""
        if not self._exited:
            flags = os.WEXITED | os.WNOHANG | os.WNOWAIT
            self._exited = os.waitid(os.P_PID, self._proc.pid, flags) is not None
        return self._exited


def _session_members(session: int) -> list[tuple[int, int]]:
    """(pid, process group) of the live (non-zombie) processes of a session. Without /proc,
    the group leader stands for the group while the group exists."""
    if not _PROC.is_dir():
        try:
            os.killpg(session, 0)
        except (ProcessLookupError, PermissionError):
            return []
        return [(session, session)]
    members: list[tuple[int, int]] = []
    for name in os.listdir(_PROC):  # plain os calls: this runs after every test process
        if not name.isdigit():
            continue
        try:
            fd = os.open(f"/proc/{name}/stat", os.O_RDONLY)
        except OSError:
            continue  # exited while we looked
        try:
            stat = os.read(fd, 512)
        except OSError:
            continue
        finally:
            os.close(fd)
        # "pid (comm) state ppid pgrp session ..."; comm may contain spaces and parens.
        fields = stat[stat.rfind(b")") + 2 :].split(maxsplit=5)
        if len(fields) > 4 and int(fields[3]) == session and fields[0] not in (b"Z", b"X"):
            members.append((int(name), int(fields[2])))
    return members


def _signal_session(session: int, signum: int, *, spare_leader: bool = False) -> None:
    """Signal the process group, then each process of the session outside it (a test may
    have made groups of its own, e.g. with `set -m`). Nobody gets the signal twice. Sparing
    the leader means signalling each other member one by one."""
    if not spare_leader:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(session, signum)
    for pid, group in _session_members(session):
        if (group != session or spare_leader) and pid != session:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signum)


def _terminate_session(session: int, grace: float, pump: _Pump, spare_leader: bool) -> None:
    """SIGTERM, wait up to `grace` seconds (still reading output), then SIGKILL."""
    _signal_session(session, signal.SIGTERM, spare_leader=spare_leader)
    _wait_until_empty(session, time.monotonic() + grace, pump)
    if _session_members(session):
        _signal_session(session, signal.SIGKILL)
        _wait_until_empty(session, time.monotonic() + _KILL_WAIT, pump)


def _wait_until_empty(session: int, deadline: float, pump: _Pump) -> None:
    while _session_members(session) and (remaining := deadline - time.monotonic()) > 0:
        pump.pump(min(remaining, 0.02))
