"""The inotify fast path on a real kernel queue: an overflow is noticed and survived."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from attuned.reconcile.daemon.watch import FolderWatcher

FILES_PER_DIR = 5


def _entry(root: Path):  # type: ignore[no-untyped-def]
    def entry_of(path: Path) -> str | None:
        try:
            return path.relative_to(root).parts[0]
        except (ValueError, IndexError):
            return None

    return entry_of


def _hold_the_gil(seconds: float) -> None:
    """One C call that never lets watchdog's reader thread run (a bytecode loop would hand
    the GIL over every switch interval, and the reader would drain the queue)."""
    started = time.perf_counter()
    sum(range(1_000_000))
    per_million = time.perf_counter() - started
    sum(range(int(1_000_000 * seconds / per_million)))


def _kernel_watches() -> int:
    """Watches this process holds, as the kernel lists them (/proc/self/fdinfo)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:inotify":
                info = Path(f"/proc/self/fdinfo/{fd}").read_text()
                count += sum(line.startswith("inotify wd:") for line in info.splitlines())
    return count


def _wait_for_watches(expected: int, timeout: float = 60) -> None:
    """watchdog adds a recursive watch's directories in its own thread: a change made
    before that is not seen by anyone."""
    deadline = time.monotonic() + timeout
    while _kernel_watches() < expected:
        assert time.monotonic() < deadline, f"{_kernel_watches()} of {expected} watches"
        time.sleep(0.05)


def _flood(root: Path, dirs: int, attempt: int) -> None:
    """Far more events than fs.inotify.max_queued_events (16,384 by default), made by
    `touch` (C, thousands of files per exec) while this process starves watchdog's reader
    with one GIL-holding call (anything that blocks, even waitpid, would let it run)."""
    listing = root.parent / "flood.list"
    listing.write_bytes(
        b"".join(
            bytes(root / f"p{i}" / "actions" / f"f{attempt}-{j}") + b"\0"
            for i in range(dirs)
            for j in range(FILES_PER_DIR)
        )
    )
    interval = sys.getswitchinterval()
    sys.setswitchinterval(60.0)  # a waiting thread asks for the GIL only after this long
    try:
        child = subprocess.Popen(["xargs", "-0", "-a", str(listing), "touch"])
        _hold_the_gil(4.0)
    finally:
        sys.setswitchinterval(interval)
    assert child.wait(timeout=60) == 0


def _overflow(root: Path, dirs: int, overflowed: threading.Event) -> None:
    """A slow host may finish the flood after the hold: then flood again, up to 3 times."""
    for attempt in range(3):
        _flood(root, dirs, attempt)
        if overflowed.wait(15):
            return
    raise AssertionError("three floods did not overflow the kernel's inotify queue")


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
        _wait_for_watches(1 + 2 * dirs)
        _overflow(root, dirs, overflowed)
        assert watcher.restart() == ["drops"]
        _wait_for_watches(1 + 2 * dirs)
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


def test_reading_a_watched_tree_is_silent_and_watching_a_large_one_does_not_overflow(
    tmp_path: Path,
) -> None:
    """Only changes are asked of the kernel: attuned's own scans read every file of the
    folder on each full pass, and watchdog lists every directory when it adds watches;
    neither may queue events (3,000 directories used to overflow the queue at start)."""
    root = tmp_path / "packs.d"
    for i in range(3000):
        actions = root / f"p{i}" / "actions"
        actions.mkdir(parents=True)
        (actions / "run.sh").write_text("echo hi\n")
    changed: list[str] = []
    overflowed = threading.Event()
    watcher = FolderWatcher(lambda _s, entry: changed.append(entry), overflowed.set)
    try:
        assert watcher.watch("drops", root, _entry(root))
        _wait_for_watches(1 + 2 * 3000)
        for path in sorted(root.rglob("*")):
            if path.is_file():
                path.read_bytes()
        time.sleep(1.0)
        assert changed == []
        (root / "p7" / "actions" / "run.sh").write_text("echo changed\n")
        deadline = time.monotonic() + 10
        while "p7" not in changed and time.monotonic() < deadline:
            time.sleep(0.05)
        assert changed and set(changed) == {"p7"}
        assert not overflowed.is_set()
    finally:
        watcher.stop()


def test_stopping_right_after_folders_vanished_never_fails(tmp_path: Path) -> None:
    """SIGTERM right after packs were pruned once ended in a KeyError from watchdog's
    inotify bookkeeping; a shutdown must not fail on it. A loop, not one try."""
    for attempt in range(25):
        root = tmp_path / f"packs{attempt}"
        for i in range(4):
            (root / f"pack{i}" / "actions").mkdir(parents=True)
        watcher = FolderWatcher(lambda _s, _e: None)
        assert watcher.watch("local", root, _entry(root))
        for i in range(3):
            subprocess.run(["rm", "-rf", str(root / f"pack{i}")], check=True)
        if attempt % 2:
            subprocess.run(["rm", "-rf", str(root)], check=True)  # the folder itself too
        watcher.stop()
        assert not watcher._observer.is_alive()


def test_a_deleted_watched_folder_is_reported_lost_and_watched_again(tmp_path: Path) -> None:
    root = tmp_path / "packs.d"
    root.mkdir()
    changed: list[tuple[str, str]] = []
    watcher = FolderWatcher(lambda source, entry: changed.append((source, entry)))
    try:
        assert watcher.watch("local", root, _entry(root))
        os.rmdir(root)
        deadline = time.monotonic() + 10
        while not watcher.lost() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert watcher.lost() == {"local"}
        assert ("local", ".") in changed
        root.mkdir()  # the same path, maybe the same inode number: watched again all the same
        assert watcher.watch("local", root, _entry(root))
        assert watcher.lost() == set()
        changed.clear()
        (root / "hello").mkdir()
        deadline = time.monotonic() + 10
        while ("local", "hello") not in changed and time.monotonic() < deadline:
            time.sleep(0.02)
        assert ("local", "hello") in changed
    finally:
        watcher.stop()
