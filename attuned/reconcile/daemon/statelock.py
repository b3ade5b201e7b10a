"""One daemon (or `reconcile --once`) per state directory.

Two processes reconciling the same store and database would undo each other's work, so each
holds an exclusive flock on the state directory's attuned.lock for as long as it runs.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from typing import IO

from attuned.errors import AttunedError

LOCK_ATTEMPTS = 5  # 10 ms apart


class AlreadyRunning(AttunedError):
    """Another attuned holds this state directory."""


class StateLock:
    """One daemon (or `reconcile --once`) per state directory: an flock on attuned.lock."""

    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.path = state_dir / "attuned.lock"
        self._handle: IO[str] | None = None

    def acquire(self) -> None:
        handle = self.path.open("a+")
        try:
            for attempt in range(LOCK_ATTEMPTS):
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    # `attuned trigger` holds a shared lock for microseconds to tell whether
                    # a daemon runs: a start in that instant must not fail
                    if attempt == LOCK_ATTEMPTS - 1:
                        raise
                    time.sleep(0.01)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise AlreadyRunning(
                f"another attuned (pid {holder}) is running on {self.path.parent.absolute()}"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
