"""The per-environment file lock that lets tests share an environment while keeping its
build and its removal to one holder, across the daemon's threads and the CLI's process."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from pathlib import Path

from attuned.errors import EnvironmentFailed

_LOCK_POLL = 0.1


class KeyLock:
    """An flock on `.locks/<key16>.lock`: shared while tests use the environment, exclusive
    while it is built or removed. Works across threads (each acquire opens the file anew)
    and processes (the CLI next to the daemon). The file may be removed by the garbage
    collector while another waits on it: the waiter then locks the new file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(
        self, *, exclusive: bool, wait: bool = True, cancel: threading.Event | None = None
    ) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        mode = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                if not self._flock(fd, mode, wait=wait, cancel=cancel):
                    os.close(fd)
                    return False
                try:
                    current = os.stat(self.path).st_ino == os.fstat(fd).st_ino
                except FileNotFoundError:
                    current = False
            except BaseException:
                os.close(fd)
                raise
            if current:
                self._fd = fd
                return True
            os.close(fd)  # removed while we waited: lock the one that is there now

    @staticmethod
    def _flock(fd: int, mode: int, *, wait: bool, cancel: threading.Event | None) -> bool:
        """Polls for the lock (so a cancel is noticed); False if taken and not `wait`."""
        while True:
            try:
                fcntl.flock(fd, mode)
                return True
            except BlockingIOError:
                if not wait:
                    return False
                if cancel is not None and cancel.is_set():
                    raise EnvironmentFailed(
                        "cancelled while waiting for the environment", cancelled=True
                    ) from None
                time.sleep(_LOCK_POLL)

    def downgrade(self) -> None:
        assert self._fd is not None
        fcntl.flock(self._fd, fcntl.LOCK_SH)

    def release(self, *, remove: bool = False) -> None:
        if self._fd is None:
            return
        if remove:
            self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None
