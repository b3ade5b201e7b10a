"""Named fault-injection points: places where a test may kill attuned with SIGKILL.

Off unless `ATTUNED_FAULT` is set (tests only): `ATTUNED_FAULT=before_commit` kills at the
first hit of that point, `ATTUNED_FAULT=mid_copy@3` at the third. A real SIGKILL, not an
exception: nothing after it runs, exactly like a power cut or the OOM killer.
"""

from __future__ import annotations

import os
import signal
import threading

ENV = "ATTUNED_FAULT"
POINTS = (
    "after_snapshot",  # candidates snapshotted, nothing planned yet
    "mid_copy",  # copying a pack into the store's staging directory
    "after_tests",  # tests ran, verdict not recorded
    "before_commit",  # registration transaction written, not committed
    "after_commit",  # committed, store symlink not swapped yet
    "mid_swap",  # the new symlink made under a scratch name, not yet renamed over the old
    "mid_gc",  # removing old versions or snapshots
    "after_send",  # an event delivered to a sink, its delivery not recorded yet
)

_lock = threading.Lock()
_name = ""
_target = 1
_hits = 0


def arm(spec: str) -> None:
    """Aim at `name[@n]` (empty: disarm). Read from the environment at import; a test that
    forks a child process arms the child directly."""
    global _name, _target, _hits
    name, _, nth = spec.partition("@")
    _name, _target, _hits = name, int(nth) if nth.isdigit() else 1, 0


arm(os.environ.get(ENV, ""))


def point(name: str) -> None:
    """Die here if a test asked for this point (and this is the hit it asked for)."""
    global _hits
    if name != _name:
        return
    with _lock:
        _hits += 1
        if _hits >= _target:
            os.kill(os.getpid(), signal.SIGKILL)
