"""Whether an attuned daemon runs on a state directory, told without importing the daemon.

While it runs, the daemon (and `reconcile --once`, `events deliver`) holds an exclusive
flock on `<state_dir>/attuned.lock` and has written its pid there
(attuned.reconcile.daemon.statelock.StateLock; a test holds the two to the same file). A shared,
non-blocking flock taken for an instant says whether someone holds it; the kernel drops the
lock with its holder, so a daemon killed with SIGKILL never looks alive.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from attuned.errors import AttunedError

LOCK_NAME = "attuned.lock"
NO_DAEMON = 5  # the exit code when a verb needs a running daemon and none runs


class NoDaemon(AttunedError):
    """No daemon runs on the state directory: what was asked of it waits for its start."""

    exit_code = NO_DAEMON


def holder(state_dir: Path) -> str | None:
    """The pid (as the lock file says it; "unknown" when it says nothing) of the attuned that
    holds `state_dir`, None when none does. OSError (permission) when that cannot be told."""
    try:
        fd = os.open(state_dir / LOCK_NAME, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None  # no attuned ever ran here
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return os.read(fd, 64).decode(errors="replace").strip() or "unknown"
        return None  # closing the descriptor releases the lock at once
    finally:
        os.close(fd)
