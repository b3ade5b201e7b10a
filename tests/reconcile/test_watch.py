"""The inotify fast path on a real kernel queue: an overflow is noticed and survived."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from pathlib import Path

from attuned.reconcile.watch import FolderWatcher

FILES_PER_DIR = 5


def _entry(root: Path):  # type: ignore[no-untyped-def]
    def entry_of(path: Path) -> str | None:
        try:
            return path.relative_to(root).parts[0]
        except (ValueError, IndexError):
            return None

    return entry_of


def _flood(root: Path, dirs: int) -> None:
    """Far more events than fs.inotify.max_queued_events (16,384 by default), made by another
    process while this one holds the GIL, so watchdog's reader cannot drain the queue."""
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import pathlib\nfor i in range({dirs}):\n"
            f"    for j in range({FILES_PER_DIR}):\n"
            f"        pathlib.Path(r'{root}', f'p{{i}}', 'actions', f'f{{j}}').touch()\n",
        ]
    )
    interval = sys.getswitchinterval()
    sys.setswitchinterval(2.0)
    try:
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            pass
    finally:
        sys.setswitchinterval(interval)
    child.wait(timeout=60)


def test_an_overflow_is_reported_and_a_restart_hears_new_packs_again(tmp_path: Path) -> None:
    root = tmp_path / "packs.d"
    dirs = 3000
    for i in range(dirs):
        (root / f"p{i}" / "actions").mkdir(parents=True)
    changed: list[str] = []
    overflowed = threading.Event()
    watcher = FolderWatcher(lambda _s, entry: changed.append(entry), overflowed.set)
    try:
        assert watcher.watch("drops", root, _entry(root))
        time.sleep(0.5)
        _flood(root, dirs)
        assert overflowed.wait(30), "the flood did not overflow the kernel queue"
        assert watcher.restart() == ["drops"]
        time.sleep(0.5)
        changed.clear()
        (root / "new-pack").mkdir()
        deadline = time.monotonic() + 10
        while "new-pack" not in changed and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "new-pack" in changed
    finally:
        watcher.stop()


def test_stop_removes_the_overflow_hook(tmp_path: Path) -> None:
    """The daemon makes a new watcher on each start; hooks must not pile up."""
    inotify_log = logging.getLogger("watchdog.observers.inotify_c")
    before = len(inotify_log.handlers)
    watcher = FolderWatcher(lambda _s, _e: None, lambda: None)
    assert len(inotify_log.handlers) == before + 1
    watcher.stop()
    assert len(inotify_log.handlers) == before
