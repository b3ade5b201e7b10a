"""Scenario 5: what an idle daemon serving N packs costs: CPU, wake-ups and memory.

The real daemon (`attuned run`, default settings) first syncs N packs (tests skipped: they
do not change what idleness costs), then is left alone for a window in which nothing changes.
Read from /proc: utime+stime of all its threads (CPU% of one core), voluntary context switches
of all threads (how often it wakes: busy polling would show here), VmRSS sampled every second,
and VmHWM. Then one full resync is asked for (SIGUSR1) and its CPU measured, to show what the
periodic resync adds when amortized over `reconcile.resync_interval`.

    python bench/idle_cost.py [--quick]
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Any

from common import (
    DaemonProcess,
    Result,
    context_switches,
    cpu_seconds,
    main,
    proc_status,
    running,
    scratch,
    target,
    write_pack,
)

from attuned.config import ReconcileConfig

RESYNC_INTERVAL = ReconcileConfig().resync_interval


def kib(value: str) -> float:
    return float(value.split()[0])


def measure(root: Path, n: int, window: float, *, quick: bool) -> dict[str, Any]:
    folder = root / "packs.d"
    for i in range(n):
        write_pack(folder / f"pack{i:05d}", f"pack{i:05d}")
    folder.mkdir(parents=True, exist_ok=True)
    daemon = DaemonProcess(
        root / "daemon", [{"name": "local", "path": str(folder), "skip_tests": True}]
    )
    with running(daemon, timeout=3600):
        status = daemon.status()
        active = sum(p["state"] == "active" for p in status["packs"].values())
        if active != n:
            raise RuntimeError(f"{active} of {n} packs active")
        proc = Path(f"/proc/{daemon.pid}")
        time.sleep(1.0 if quick else 5.0)  # the first pass's stragglers (status, gc) finish
        passes_before = len(daemon.events("reconcile.finished"))
        cpu0, ctx0, t0 = cpu_seconds(daemon.pid), context_switches(daemon.pid), time.monotonic()
        rss = []
        while time.monotonic() - t0 < window:
            rss.append(kib(proc_status(proc)["VmRSS"]))
            time.sleep(min(1.0, max(0.0, window - (time.monotonic() - t0))))
        cpu1, ctx1, t1 = cpu_seconds(daemon.pid), context_switches(daemon.pid), time.monotonic()
        info = proc_status(proc)
        passes_in_window = len(daemon.events("reconcile.finished")) - passes_before
        # one full resync, as the scheduler asks for every resync_interval
        cpu2 = cpu_seconds(daemon.pid)
        status = daemon.full_pass()
        time.sleep(0.2)
        resync_cpu = cpu_seconds(daemon.pid) - cpu2
        resync_wall = status["last_reconcile"]["duration_ms"] / 1000
        threads = int(info["Threads"])
    elapsed = t1 - t0
    idle_pct = (cpu1 - cpu0) / elapsed * 100
    return {
        "n": n,
        "window_s": elapsed,
        "cpu_s": cpu1 - cpu0,
        "cpu_pct": idle_pct,
        "wakeups_per_s": (ctx1 - ctx0) / elapsed,
        "rss_mib": rss[-1] / 1024,
        "rss_median_mib": statistics.median(rss) / 1024,
        "hwm_mib": kib(info["VmHWM"]) / 1024,
        "threads": threads,
        "passes_in_window": passes_in_window,
        "resync_cpu_s": resync_cpu,
        "resync_wall_s": resync_wall,
        "cpu_pct_with_resync": idle_pct + resync_cpu / RESYNC_INTERVAL * 100,
    }


def empty_rss(root: Path) -> float:
    """VmRSS (MiB) of a daemon serving no pack: what the interpreter and imports cost."""
    folder = root / "empty.d"
    folder.mkdir(parents=True)
    daemon = DaemonProcess(root / "empty", [{"name": "local", "path": str(folder)}])
    with running(daemon):
        time.sleep(2.0)
        return kib(proc_status(Path(f"/proc/{daemon.pid}"))["VmRSS"]) / 1024


def run(quick: bool) -> Result:
    n, window = (20, 5.0) if quick else (1000, 60.0)
    with scratch("idle") as root:
        r = measure(root, n, window, quick=quick)
        if not quick:
            r["rss_empty_mib"] = empty_rss(root)
            r["rss_per_pack_kib"] = (r["rss_mib"] - r["rss_empty_mib"]) * 1024 / n
    rows = [
        [
            r["n"],
            f"{r['rss_empty_mib']:.1f}" if "rss_empty_mib" in r else "-",
            f"{r['window_s']:.0f}",
            f"{r['cpu_pct']:.3f}",
            f"{r['wakeups_per_s']:.1f}",
            f"{r['rss_mib']:.1f}",
            f"{r['hwm_mib']:.1f}",
            r["threads"],
            r["passes_in_window"],
            f"{r['resync_cpu_s']:.2f}",
            f"{r['cpu_pct_with_resync']:.3f}",
        ]
    ]
    metrics = {k: float(v) for k, v in r.items()}
    return {
        "name": "idle_cost",
        "title": f"5. Idle cost with {n} packs active",
        "params": {
            "packs": n,
            "window_s": window,
            "resync_interval_s": RESYNC_INTERVAL,
            "database": "SQLite",
        },
        "tables": [
            {
                "columns": [
                    "packs",
                    "RSS with 0 packs MiB",
                    "window s",
                    "CPU % of one core",
                    "wake-ups/s",
                    "RSS MiB",
                    "peak RSS MiB",
                    "threads",
                    "passes in window",
                    "one resync CPU s",
                    "CPU % incl. resync",
                ],
                "rows": rows,
            }
        ],
        "metrics": metrics,
        "targets": [
            target(f"idle CPU, {n} packs (% of one core)", r["cpu_pct"], 0.5),
            target(
                f"idle CPU incl. the periodic resync, {n} packs (%)", r["cpu_pct_with_resync"], 0.5
            ),
            target(f"idle RSS, {n} packs (MiB)", r["rss_mib"], 80),
        ],
        "notes": [
            "CPU: utime+stime of all the daemon's threads over the window, from /proc/<pid>/stat "
            f"(resolution {1 / os.sysconf('SC_CLK_TCK'):.2f} s)",
            "wake-ups/s: voluntary context switches of all threads; RSS: VmRSS at the end "
            "(sampled every second), peak: VmHWM (includes the initial sync)",
            f"CPU % incl. resync: the window's CPU plus one full resync's CPU spread over "
            f"resync_interval ({RESYNC_INTERVAL:.0f} s)",
            "the daemon synced the packs itself just before the window (its peak memory is in "
            "VmHWM)",
        ],
        "raw": r,
    }


if __name__ == "__main__":
    main(run, __doc__)
