"""Scenario 5: what an idle daemon serving N packs costs: memory per pack, CPU and wake-ups.

For each size (0, 1,000 and 10,000 packs; --quick: 0 and 20) the real daemon (`attuned run`,
default settings, SQLite) first syncs the packs (tests skipped: they do not change what
idleness costs), then is left alone for a window in which nothing changes. Read from /proc:
VmRSS sampled every second and VmHWM; utime+stime of all its threads (CPU% of one core);
voluntary context switches of all threads (how often it wakes: busy polling would show here).
Then one full resync is asked for (SIGUSR1) and its CPU measured, to show what the periodic
resync adds when amortized over `reconcile.resync_interval`. Last, the daemon is restarted on
the same state and its RSS read once its first pass is done: the steady state of a daemon
that did not itself register what it serves.

Memory per pack is the RSS at N minus the RSS at 0 packs, over N, and the growth from one
size to the next over the packs added (linear or better: the second no larger than the first).

    python bench/idle_cost.py [--quick] [--sizes 0,1000]
"""

from __future__ import annotations

import itertools
import os
import shutil
import statistics
import sys
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
MIB = 1024 * 1024
# issue 18: idle RSS at 1,000 and 10,000 packs (--quick holds its 20 packs to the first)
GOALS_MIB = {1_000: 60.0, 10_000: 120.0}
QUICK_GOALS_MIB = {20: 60.0}
SIZES: tuple[int, ...] | None = None  # --sizes: other sizes than the full run's (0 first)


def mib_of(value: str) -> float:
    """A /proc/<pid>/status size ("123456 kB") in MiB."""
    return float(value.split()[0]) / 1024


def rss_mib(pid: int) -> float:
    return mib_of(proc_status(Path(f"/proc/{pid}"))["VmRSS"])


def measure(root: Path, n: int, window: float, *, quick: bool) -> dict[str, Any]:
    """One size: sync n packs, sample an idle window, one resync, then a restart."""
    folder = root / "packs.d"
    for i in range(n):
        write_pack(folder / f"pack{i:05d}", f"pack{i:05d}")
    folder.mkdir(parents=True, exist_ok=True)
    daemon = DaemonProcess(
        root / "daemon", [{"name": "local", "path": str(folder), "skip_tests": True}]
    )
    settle = 1.0 if quick else 5.0  # the first pass's stragglers (status, gc) finish
    with running(daemon, timeout=7200):
        status = daemon.status()
        active = sum(p["state"] == "active" for p in status["packs"].values())
        if active != n:
            raise RuntimeError(f"{active} of {n} packs active")
        time.sleep(settle)
        passes_before = len(daemon.events("reconcile.finished"))
        cpu0, ctx0, t0 = cpu_seconds(daemon.pid), context_switches(daemon.pid), time.monotonic()
        rss = []
        while time.monotonic() - t0 < window:
            rss.append(rss_mib(daemon.pid))
            time.sleep(min(1.0, max(0.0, window - (time.monotonic() - t0))))
        cpu1, ctx1, t1 = cpu_seconds(daemon.pid), context_switches(daemon.pid), time.monotonic()
        info = proc_status(Path(f"/proc/{daemon.pid}"))
        passes_in_window = len(daemon.events("reconcile.finished")) - passes_before
        # one full resync, as the scheduler asks for every resync_interval
        cpu2 = cpu_seconds(daemon.pid)
        status = daemon.full_pass(timeout=3600)
        time.sleep(settle)  # after the status: the memory a full pass freed is handed back
        resync_cpu = cpu_seconds(daemon.pid) - cpu2
        resync_wall = status["last_reconcile"]["duration_ms"] / 1000
        rss_after_resync = rss_mib(daemon.pid)
    with running(daemon, timeout=3600):  # the same state: nothing to register, no migration
        time.sleep(settle)
        rss_restarted = rss_mib(daemon.pid)
    elapsed = t1 - t0
    idle_pct = (cpu1 - cpu0) / elapsed * 100
    return {
        "n": n,
        "window_s": elapsed,
        "cpu_s": cpu1 - cpu0,
        "cpu_pct": idle_pct,
        "wakeups_per_s": (ctx1 - ctx0) / elapsed,
        "rss_mib": rss[-1],
        "rss_median_mib": statistics.median(rss),
        "hwm_mib": mib_of(info["VmHWM"]),
        "rss_after_resync_mib": rss_after_resync,
        "rss_restarted_mib": rss_restarted,
        "threads": int(info["Threads"]),
        "passes_in_window": passes_in_window,
        "resync_cpu_s": resync_cpu,
        "resync_wall_s": resync_wall,
        "cpu_pct_with_resync": idle_pct + resync_cpu / RESYNC_INTERVAL * 100,
    }


def per_pack(runs: list[dict[str, Any]], key: str) -> None:
    """Bytes per pack of `key` (an RSS in MiB) against the run with 0 packs, and the growth
    per pack added since the previous size, set on each run as `<key>_per_pack_b` and
    `<key>_growth_b`."""
    empty = runs[0]
    for previous, run in itertools.pairwise(runs):
        run[f"{key}_per_pack_b"] = (run[key] - empty[key]) * MIB / run["n"]
        run[f"{key}_growth_b"] = (run[key] - previous[key]) * MIB / (run["n"] - previous["n"])


def bytes_cell(run: dict[str, Any], key: str) -> str:
    return f"{run[key]:,.0f}" if key in run else "-"


def run(quick: bool) -> Result:
    sizes: tuple[int, ...] = SIZES or ((0, 20) if quick else (0, 1_000, 10_000))
    window = 5.0 if quick else 60.0
    runs = []
    with scratch("idle") as root:
        for n in sizes:
            runs.append(measure(root / f"n{n}", n, window, quick=quick))
            shutil.rmtree(root / f"n{n}", ignore_errors=True)  # 10,000 packs: 3 copies, 2 GB
    return report(runs, window, quick=quick)


def report(runs: list[dict[str, Any]], window: float, *, quick: bool) -> Result:
    """The measured sizes as tables, targets and metrics (apart from `run`, so a result can
    be rendered again from its JSON's `raw`)."""
    sizes = tuple(r["n"] for r in runs)
    goals = {n: goal for n, goal in (QUICK_GOALS_MIB if quick else GOALS_MIB).items() if n in sizes}
    per_pack(runs, "rss_mib")
    per_pack(runs, "rss_restarted_mib")
    memory = [
        [
            f"{r['n']:,}",
            f"{r['rss_mib']:.1f}",
            bytes_cell(r, "rss_mib_per_pack_b"),
            bytes_cell(r, "rss_mib_growth_b"),
            f"{r['hwm_mib']:.1f}",
            f"{r['rss_after_resync_mib']:.1f}",
            f"{r['rss_restarted_mib']:.1f}",
            bytes_cell(r, "rss_restarted_mib_per_pack_b"),
        ]
        for r in runs
    ]
    cpu = [
        [
            f"{r['n']:,}",
            f"{r['window_s']:.0f}",
            f"{r['cpu_pct']:.3f}",
            f"{r['wakeups_per_s']:.1f}",
            r["threads"],
            r["passes_in_window"],
            f"{r['resync_cpu_s']:.2f}",
            f"{r['resync_wall_s']:.2f}",
            f"{r['cpu_pct_with_resync']:.3f}",
        ]
        for r in runs
    ]
    by_n = {r["n"]: r for r in runs}
    targets = [
        target(f"idle RSS, {n:,} packs (MiB)", by_n[n]["rss_mib"], goal)
        for n, goal in goals.items()
    ]
    # issue 8's CPU goals are at 1,000 packs (--quick: its largest size)
    cpu_at = by_n.get(1_000, runs[-1])
    targets += [
        target(f"idle CPU, {cpu_at['n']:,} packs (% of one core)", cpu_at["cpu_pct"], 0.5),
        target(
            f"idle CPU incl. the periodic resync, {cpu_at['n']:,} packs (%)",
            cpu_at["cpu_pct_with_resync"],
            0.5,
        ),
    ]
    if len(runs) > 2:  # linear or better: a pack added later costs no more than one before
        first, last = runs[1], runs[-1]
        targets.append(
            target(
                f"RSS growth per pack {first['n']:,} -> {last['n']:,} <= per pack at "
                f"{first['n']:,} (bytes)",
                last["rss_mib_growth_b"],
                first["rss_mib_per_pack_b"],
            )
        )
    metrics = {
        f"{key}_{r['n']}": float(value) for r in runs for key, value in r.items() if key != "n"
    }
    return {
        "name": "idle_cost",
        "title": f"5. Idle cost with {' / '.join(f'{n:,}' for n in sizes)} packs active",
        "params": {
            "packs": list(sizes),
            "window_s": window,
            "resync_interval_s": RESYNC_INTERVAL,
            "database": "SQLite",
        },
        "tables": [
            {
                "caption": "Memory",
                "columns": [
                    "packs",
                    "RSS MiB",
                    "bytes per pack (vs 0 packs)",
                    "growth per pack added (bytes)",
                    "peak RSS MiB",
                    "RSS after a resync MiB",
                    "RSS after a restart MiB",
                    "bytes per pack after a restart",
                ],
                "rows": memory,
            },
            {
                "caption": "CPU and wake-ups",
                "columns": [
                    "packs",
                    "window s",
                    "CPU % of one core",
                    "wake-ups/s",
                    "threads",
                    "passes in window",
                    "one resync CPU s",
                    "one resync wall s",
                    "CPU % incl. resync",
                ],
                "rows": cpu,
            },
        ],
        "metrics": metrics,
        "targets": targets,
        "notes": [
            "RSS: VmRSS at the end of the idle window (sampled every second); peak: VmHWM "
            "(includes the initial sync); after a resync: a few seconds after the SIGUSR1 pass "
            "(its CPU is measured over the same span)",
            "bytes per pack: (RSS at N - RSS at 0 packs) / N; growth: (RSS at N - RSS at the "
            "previous size) / the packs added",
            "after a restart: the same state directory, a fresh process, read once its first "
            "pass is done (no migration, nothing registered)",
            "CPU: utime+stime of all the daemon's threads over the window, from /proc/<pid>/stat "
            f"(resolution {1 / os.sysconf('SC_CLK_TCK'):.2f} s); wake-ups/s: voluntary context "
            "switches of all threads",
            f"CPU % incl. resync: the window's CPU plus one full resync's CPU spread over "
            f"resync_interval ({RESYNC_INTERVAL:.0f} s)",
        ],
        "raw": runs,
    }


if __name__ == "__main__":
    if "--sizes" in sys.argv:  # taken here: common.main knows --quick and --json only
        at = sys.argv.index("--sizes")
        SIZES = tuple(int(n) for n in sys.argv[at + 1].split(","))
        del sys.argv[at : at + 2]
    main(run, __doc__)
