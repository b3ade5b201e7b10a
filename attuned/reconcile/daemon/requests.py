"""What the daemon's loop has been asked to do, by anyone.

Signals, inotify, the scheduler and timers run on other threads; they only record a request
and wake the loop, which alone runs passes. Requests made while a pass runs are kept for the
next one.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

POLL = "*"  # the `entry` of a request that means: ask this git source's server now


@dataclass
class Requests:
    """What the loop has been asked to do; set from any thread, read by the main loop."""

    full: bool = True
    changed: set[tuple[str, str]] = field(default_factory=set)
    reload: bool = False
    stop: bool = False
    wake: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ask(
        self,
        *,
        full: bool = False,
        reload: bool = False,
        stop: bool = False,
        changes: Iterable[tuple[str, str]] = (),
    ) -> None:
        with self.lock:
            self.full |= full
            self.reload |= reload
            self.stop |= stop
            self.changed.update(changes)
        self.wake.set()

    def take_reload(self) -> bool:
        with self.lock:
            reload, self.reload = self.reload, False
        return reload

    def take(self) -> tuple[bool, set[tuple[str, str]], bool]:
        with self.lock:
            taken = (self.full, self.changed, self.reload)
            self.full, self.changed, self.reload = False, set(), False
            self.wake.clear()
        return taken
