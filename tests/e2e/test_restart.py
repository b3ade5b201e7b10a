"""A restart of the real daemon: nothing is read again, and no served pack moves at any
instant (every link is read in a loop from before the stop until after the next first pass).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from tests.e2e.conftest import DaemonProcess

PACKS = 25
RACY_WINDOW_S = 2.1


class LinkWatch(threading.Thread):
    """Reads every served pack's link (and stats what it points at) until stopped."""

    def __init__(self, packs_dir: Path, expected: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self.packs_dir = packs_dir
        self.expected = expected
        self.sweeps = 0
        self.missing: set[str] = set()
        self.changed: set[str] = set()
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            for ref, want in self.expected.items():
                try:
                    got = os.readlink(self.packs_dir / ref)
                    os.stat(self.packs_dir / ref)
                except OSError:
                    self.missing.add(ref)
                    continue
                if got != want:
                    self.changed.add(ref)
            self.sweeps += 1


def links(packs_dir: Path) -> dict[str, str]:
    return {
        e.name: os.readlink(e)
        for e in os.scandir(packs_dir)
        if e.is_symlink() and not e.name.startswith(".")
    }


def write_packs(folder: Path) -> None:
    for i in range(PACKS):
        pack = folder / f"pack{i:02d}"
        (pack / "docs").mkdir(parents=True)
        manifest = {"ref": f"pack{i:02d}", "label": f"Pack {i}", "version": "1.0.0"}
        (pack / "pack.yaml").write_text(yaml.safe_dump(manifest))
        (pack / "docs" / "README.md").write_text(f"pack {i}\n")


def test_a_restart_reads_no_pack_and_moves_no_served_pack(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    daemon = daemon_factory()
    daemon.config["sources"][0]["skip_tests"] = True
    write_packs(daemon.folder)
    time.sleep(RACY_WINDOW_S)  # the stat caches trust a file's times once this old
    daemon.start()
    status = daemon.status()
    assert sum(p["state"] == "active" for p in status["packs"].values()) == PACKS
    time.sleep(RACY_WINDOW_S)  # the served copies, made by the first pass, settle too
    passes = len(daemon.events("reconcile.finished"))
    daemon.signal(signal.SIGUSR1)  # a full pass, as the periodic resync would run
    deadline = time.monotonic() + 30
    while len(daemon.events("reconcile.finished")) == passes and time.monotonic() < deadline:
        time.sleep(0.05)
    assert daemon.stop() == 0
    state = Path(daemon.config["state_dir"])
    assert (state / "statcache.json").is_file(), "a clean stop saves the stat caches"

    packs_dir = state / "packs"
    expected = links(packs_dir)
    assert len(expected) == PACKS
    watch = LinkWatch(packs_dir, expected)
    watch.start()
    before = len(daemon.events())
    try:
        daemon.start()
        sweeps_at_ready = watch.sweeps
        while watch.sweeps < sweeps_at_ready + 3:  # and a little after
            pass
    finally:
        watch.done.set()
        watch.join()
    assert (watch.missing, watch.changed) == (set(), set())
    assert watch.sweeps > 3

    events = daemon.events()[before:]
    [loaded] = [e for e in events if e["event"] == "statcache.loaded"]
    assert (loaded["snapshots"], loaded["served"]) == (PACKS, PACKS)
    [scanned] = [e for e in events if e["event"] == "source.scanned"]
    assert scanned["cache_hits"] == PACKS, scanned
    assert scanned.get("snapshots_made", 0) == scanned.get("snapshots_reused", 0) == 0
    changed = [e["event"] for e in events if e["event"].startswith(("pack.", "store."))]
    assert changed == [], "nothing was registered, repaired or removed"
    assert daemon.stop() == 0
