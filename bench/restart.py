"""Scenario 10: a daemon restart with N packs served: READY time, and nothing served moves.

The real daemon (`attuned run`) first syncs N 20-file packs (tests skipped) and is stopped
(SIGTERM: a clean stop saves the stat caches). Then it is started again, R times, each with
`NOTIFY_SOCKET` pointing at a datagram socket of this process: READY time is from `exec` to
the `READY=1` datagram (sent once the first pass is done). All along each restart, a thread
reads every pack's link in `packs_dir` in a loop (`readlink`, and `stat` of the directory it
points at) and counts a served pack that was missing or pointed elsewhere at any read.

Floors measured in the same run: `python -c pass` (a process start) and the stat calls
themselves (`lstat` of every file of every pack, the work a no-op pass cannot avoid).

    python bench/restart.py [--quick]
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from common import DaemonProcess, Result, attuned_bin, main, scratch, target, write_pack


class LinkWatch(threading.Thread):
    """Reads every served link in a loop; counts any read that differs from `expected`."""

    def __init__(self, packs_dir: Path, expected: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self.packs_dir = packs_dir
        self.expected = expected
        self.reads = 0
        self.sweeps = 0
        self.missing: set[str] = set()
        self.changed: set[str] = set()
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            for ref, want in self.expected.items():
                link = self.packs_dir / ref
                try:
                    target_ = os.readlink(link)
                    os.stat(link)  # the directory it points at is there
                except OSError:
                    self.missing.add(ref)
                    continue
                finally:
                    self.reads += 1
                if target_ != want:
                    self.changed.add(ref)
            self.sweeps += 1

    def stop(self) -> None:
        self._done.set()
        self.join()


def links_of(packs_dir: Path) -> dict[str, str]:
    return {
        entry.name: os.readlink(entry)
        for entry in os.scandir(packs_dir)
        if entry.is_symlink() and not entry.name.startswith(".")
    }


def stat_floor(folder: Path) -> float:
    """Seconds to lstat every file of every pack once (paths listed beforehand)."""
    files = [os.path.join(d, f) for d, _, names in os.walk(folder) for f in names]
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for path in files:
            os.lstat(path)
        best = min(best, time.perf_counter() - started)
    return best


def process_floor(repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def restart_once(
    daemon: DaemonProcess, expected: dict[str, str], packs_dir: Path
) -> dict[str, Any]:
    sock_path = daemon.root / "notify.sock"
    sock_path.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(sock_path))
    listener.settimeout(600)
    watch = LinkWatch(packs_dir, expected)
    watch.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATTUNED_")}
    env["NOTIFY_SOCKET"] = str(sock_path)
    started = time.perf_counter()
    with daemon.log_path.open("ab") as log:
        daemon.proc = subprocess.Popen(
            [attuned_bin(), "run", "--config", str(daemon.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=daemon.root,
            env=env,
        )
    ready = None
    try:
        while ready is None:
            message = listener.recv(4096).decode()
            if "READY=1" in message.splitlines():
                ready = time.perf_counter() - started
    finally:
        listener.close()
    time.sleep(0.5)  # the links as they stand just after READY count too
    watch.stop()
    daemon.stop()
    return {
        "ready_s": ready,
        "link_reads": watch.reads,
        "sweeps": watch.sweeps,
        "missing": sorted(watch.missing),
        "changed": sorted(watch.changed),
    }


def measure(root: Path, n: int, restarts: int) -> dict[str, Any]:
    folder = root / "packs.d"
    for i in range(n):
        write_pack(folder / f"pack{i:05d}", f"pack{i:05d}")
    daemon = DaemonProcess(
        root / "daemon", [{"name": "local", "path": str(folder), "skip_tests": True}]
    )
    started = time.perf_counter()
    daemon.start(timeout=7200)
    first_sync = time.perf_counter() - started
    daemon.stop()
    packs_dir = daemon.root / "state" / "packs"
    expected = links_of(packs_dir)
    if len(expected) != n:
        raise RuntimeError(f"{len(expected)} of {n} packs served after the first sync")
    runs = [restart_once(daemon, expected, packs_dir) for _ in range(restarts)]
    cache = daemon.root / "state" / "statcache.json"
    return {
        "n": n,
        "first_sync_s": first_sync,
        "runs": runs,
        "ready": [r["ready_s"] for r in runs],
        "stat_floor_s": stat_floor(folder),
        "process_floor_s": process_floor(),
        "statcache_bytes": cache.stat().st_size if cache.exists() else 0,
        "missing": sorted({ref for r in runs for ref in r["missing"]}),
        "changed": sorted({ref for r in runs for ref in r["changed"]}),
        "link_reads": sum(r["link_reads"] for r in runs),
    }


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def run(quick: bool) -> Result:
    sizes = [20] if quick else [1000, 10000]
    restarts = 1 if quick else 3
    measured = []
    for n in sizes:
        with scratch(f"restart{n}") as root:
            measured.append(measure(root, n, restarts))
    rows = []
    targets = []
    metrics: dict[str, float] = {}
    for m in measured:
        ready = statistics.median(m["ready"])
        floor = m["process_floor_s"] + m["stat_floor_s"]
        rows.append(
            [
                m["n"],
                f"{m['first_sync_s']:.1f}",
                len(m["ready"]),
                f"{ready:.2f}",
                f"{p95(m['ready']):.2f}",
                f"{ready / m['n'] * 1e6:.0f}",
                f"{m['process_floor_s'] * 1000:.0f}",
                f"{m['stat_floor_s'] * 1000:.0f}",
                f"{ready / floor:.1f}",
                m["link_reads"],
                len(m["missing"]),
                len(m["changed"]),
                f"{m['statcache_bytes'] / 1024:.0f}",
            ]
        )
        metrics |= {
            f"ready_s_{m['n']}": ready,
            f"ready_p95_s_{m['n']}": p95(m["ready"]),
            f"ready_us_per_pack_{m['n']}": ready / m["n"] * 1e6,
            f"first_sync_s_{m['n']}": m["first_sync_s"],
            f"stat_floor_s_{m['n']}": m["stat_floor_s"],
            f"statcache_bytes_{m['n']}": m["statcache_bytes"],
        }
        targets.append(
            target(
                f"served packs missing or changed, N={m['n']}",
                len(m["missing"]) + len(m["changed"]),
                0,
            )
        )
        if m["n"] == 10000:
            targets.append(target("READY after a restart, 10,000 packs (s)", ready, 3.0))
    notes = [
        "READY: from exec of `attuned run` to the READY=1 datagram on NOTIFY_SOCKET (after the "
        "first pass, which finds nothing to do); median of the restarts",
        "floor: a bare `python -c pass` plus one lstat of every pack file; ratio = READY/floor",
        "link reads: readlink+stat of every served pack's link, in a loop from before exec to "
        "0.5 s after READY; missing/changed: packs any read found absent or pointing elsewhere",
        "statcache: the size of <state_dir>/statcache.json the restarts start from",
    ]
    if len(measured) > 1:
        small, large = measured[0], measured[-1]
        slope = (statistics.median(large["ready"]) - statistics.median(small["ready"])) / (
            large["n"] - small["n"]
        )
        notes.append(f"growth: {slope * 1e6:.0f} µs of READY per added pack")
    return {
        "name": "restart",
        "title": "10. Daemon restart with N packs served",
        "params": {"sizes": sizes, "restarts": restarts, "files_per_pack": 20},
        "tables": [
            {
                "columns": [
                    "packs",
                    "first sync s",
                    "restarts",
                    "READY s",
                    "READY p95 s",
                    "µs/pack",
                    "process floor ms",
                    "stat floor ms",
                    "READY/floor",
                    "link reads",
                    "missing",
                    "changed",
                    "statcache KiB",
                ],
                "rows": rows,
            }
        ],
        "metrics": metrics,
        "targets": targets,
        "notes": notes,
        "raw": measured,
    }


if __name__ == "__main__":
    main(run, __doc__)
