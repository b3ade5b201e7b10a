"""Scenario 3: the cost of a full resync that finds nothing to do, against the naive way.

A full pass (`Daemon.reconcile_pass`, as the periodic resync runs it: scan, plan, drift check,
garbage collection, status) over N registered packs of 20 files, in-process, with the stat
caches warm as in a running daemon. Counted, not inferred: files opened for reading below the
watched folder, the snapshots and the pack store (an audit hook sees every `open`), content
bytes hashed by the snapshot store, and SQL statements that write. The naive way, in the same
run on the same packs: re-hash and re-register every pack (`Registry.register(replace=True,
skip_tests=True)`), as a cron script would.

    python bench/noop_resync.py [--quick]
"""

from __future__ import annotations

import gc
import itertools
import os
import statistics
import time
from pathlib import Path
from typing import Any

from common import (
    ReadCounter,
    Result,
    WriteCounter,
    main,
    quiet_logging,
    read_counter,
    scratch,
    target,
    write_pack,
)

from attuned.config import AttunedConfig
from attuned.reconcile.daemon import Daemon

try:
    from attuned.reconcile.statcache import FILE_NAME as STATCACHE_FILE
except ModuleNotFoundError:  # the old code bench/attune_tables.py measures has no stat cache
    STATCACHE_FILE = "statcache.json"
try:
    from attuned.store.provenance import Provenance
except ModuleNotFoundError:  # the old code keeps it in attuned/registry.py
    from attuned.registry import Provenance  # type: ignore[attr-defined,no-redef]

NAIVE_UP_TO = 1000  # re-registering 10,000 packs takes 3 minutes and says nothing new
RACY_WINDOW_S = 2.1  # the snapshot store caches a file's stat only once it is this old


def settle(since: float) -> None:
    """Wait until files written before `since` are old enough for the stat caches."""
    time.sleep(max(0.0, RACY_WINDOW_S - (time.monotonic() - since)))


def drift_hashed(daemon: Daemon) -> int:
    """Content bytes the drift check hashed so far (0 where it has no counter)."""
    drift = getattr(daemon, "drift", None)
    return int(getattr(drift, "bytes_hashed", 0))


def counted_pass(
    daemon: Daemon, reads: ReadCounter, writes: WriteCounter, trigger: str
) -> dict[str, Any]:
    """One full pass, with what it read and wrote."""
    hashed = daemon.snapshots.bytes_hashed + drift_hashed(daemon)
    before = writes.snapshot()
    reads.reset()
    reads.active = True
    started = time.perf_counter()
    daemon.reconcile_pass(trigger, full=True)
    elapsed = time.perf_counter() - started
    reads.active = False
    after = writes.snapshot()
    if daemon.phase != "idle":
        raise RuntimeError(f"pass {trigger} ended {daemon.phase}: {daemon.error}")
    assert daemon.last_reconcile is not None
    return {
        "seconds": elapsed,
        "bytes_hashed": daemon.snapshots.bytes_hashed + drift_hashed(daemon) - hashed,
        "reads": dict(reads.counts),
        "read_examples": dict(reads.examples),
        "writes": after[0] - before[0],
        "write_transactions": after[1] - before[1],
        "statements": after[2] - before[2],
        "counts": dict(daemon.last_reconcile.counts),
    }


def measure(n: int, repeats: int, root: Path, *, quick: bool = False) -> dict[str, Any]:
    folder = root / "packs.d"
    started = time.monotonic()
    for i in range(n):
        write_pack(folder / f"pack{i:05d}", f"pack{i:05d}")
    written = time.monotonic()
    config = AttunedConfig.model_validate(
        {
            "state_dir": str(root / "state"),
            "status_file": str(root / "status.json"),
            "reconcile": {"concurrency": 2},
            "sources": [{"name": "local", "path": str(folder), "skip_tests": True}],
        }
    )
    reads = read_counter()
    reads.watch(source=folder, snapshots=config.snapshots_path, store=config.packs_path, state=root)
    reads.ignored = frozenset({str(config.state_dir / STATCACHE_FILE)})  # one read, not a pack's
    writes = WriteCounter()
    daemon = Daemon(config)
    if quick:  # no waiting for the racy window: these files will not change anyway
        daemon.snapshots.racy_window_ns = 0
        if hasattr(daemon, "drift"):
            daemon.drift.racy_window_ns = 0
    wait = (lambda _since: None) if quick else settle
    daemon.lock.acquire()
    try:
        daemon.sources.configure(config)
        wait(written)
        build_started = time.perf_counter()
        daemon.reconcile_pass("build")
        build = time.perf_counter() - build_started
        active = sum(p.state == "active" for p in daemon.packs.values())
        if active != n:
            raise RuntimeError(f"only {active} of {n} packs active after the initial pass")
        wait(time.monotonic())  # the store's version directories, for a stat-based check
        warmup = counted_pass(daemon, reads, writes, "warm-up")
        passes = [counted_pass(daemon, reads, writes, f"no-op {k}") for k in range(repeats)]
        daemon._stat_cache.save_if_due(now=True)  # as a clean stop does
    finally:
        daemon._close_registry()
        daemon.lock.release()
    cold = [cold_pass(config, reads, writes, quick=quick) for _ in range(repeats)]
    floor = stat_floor(folder)
    gc.collect()
    daemon.lock.acquire()
    try:
        naive = naive_pass(daemon, folder, reads, writes) if n <= NAIVE_UP_TO else None
    finally:
        reads.active = False
        writes.close()
        daemon._close_registry()
        daemon.lock.release()
    times = [p["seconds"] for p in passes]
    worst = max(passes + cold, key=lambda p: sum(p["reads"].values()) + p["writes"])
    return {
        "n": n,
        "generate_s": written - started,
        "build_s": build,
        "noop_s": statistics.median(times),
        "noop_min_s": min(times),
        "noop_max_s": max(times),
        "passes": passes,
        "warmup": warmup,
        "files_reread": sum(worst["reads"].values()),
        "reads_by_area": worst["reads"],
        "bytes_hashed": worst["bytes_hashed"],
        "db_writes": worst["writes"],
        "write_transactions": worst["write_transactions"],
        "statements": worst["statements"],
        "cold_s": statistics.median(c["seconds"] for c in cold),
        "cold_passes": cold,
        "stat_floor_s": floor,
        "naive": naive,
        "ratio": naive["seconds"] / statistics.median(times) if naive else None,
    }


def cold_pass(
    config: AttunedConfig, reads: ReadCounter, writes: WriteCounter, *, quick: bool
) -> dict[str, Any]:
    """The first pass of a fresh Daemon over the same state: a restart, in-process (the
    stat caches come from <state_dir>/statcache.json, as the last one saved them)."""
    gc.collect()
    daemon = Daemon(config)
    if quick:
        daemon.snapshots.racy_window_ns = 0
        daemon.drift.racy_window_ns = 0
    daemon.lock.acquire()
    try:
        daemon.sources.configure(config)
        return counted_pass(daemon, reads, writes, "cold")
    finally:
        daemon._close_registry()
        daemon.lock.release()


def stat_floor(folder: Path) -> float:
    """The floor of any pass that decides from stat: one lstat of every pack file (the paths
    listed beforehand), best of 3."""
    files = [os.path.join(d, f) for d, _, names in os.walk(folder) for f in names]
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for path in files:
            os.lstat(path)
        best = min(best, time.perf_counter() - started)
    return best


def naive_pass(
    daemon: Daemon, folder: Path, reads: ReadCounter, writes: WriteCounter
) -> dict[str, Any]:
    """What a cron script would do: every pack re-hashed and re-registered, every time."""
    registry = daemon._registry()
    before = writes.snapshot()
    reads.reset()
    reads.active = True
    started = time.perf_counter()
    for path in sorted(folder.iterdir()):
        registry.register(
            path,
            replace=True,
            skip_tests=True,
            provenance=Provenance(origin=f"local:{path.name}", source="local"),
        )
    elapsed = time.perf_counter() - started
    reads.active = False
    after = writes.snapshot()
    return {
        "seconds": elapsed,
        "files_read": sum(reads.counts.values()),
        "writes": after[0] - before[0],
        "statements": after[2] - before[2],
    }


def run(quick: bool) -> Result:
    sizes = [10, 30] if quick else [100, 1000, 10000]
    repeats = 3
    rows_out: list[dict[str, Any]] = []
    for n in sizes:
        with scratch(f"noop{n}") as root:
            quiet_logging(root / "attuned.log")
            rows_out.append(measure(n, repeats, root, quick=quick))
            gc.collect()
    rows = []
    for row in rows_out:
        naive = row["naive"]
        floor = row["stat_floor_s"]
        rows.append(
            [
                row["n"],
                f"{row['noop_s'] * 1000:.1f}",
                f"{row['noop_s'] / row['n'] * 1e6:.0f}",
                f"{row['cold_s'] * 1000:.1f}",
                f"{row['cold_s'] / row['n'] * 1e6:.0f}",
                f"{floor / row['n'] * 1e6:.1f}",
                f"{row['noop_s'] / floor:.1f}",
                f"{row['cold_s'] / floor:.1f}",
                row["files_reread"],
                row["bytes_hashed"],
                row["db_writes"],
                row["statements"],
                f"{naive['seconds']:.2f}" if naive else "-",
                f"{row['ratio']:.0f}x" if naive else "-",
            ]
        )
    growth = []
    for small, large in itertools.pairwise(rows_out):
        warm = (large["noop_s"] - small["noop_s"]) / (large["n"] - small["n"])
        cold = (large["cold_s"] - small["cold_s"]) / (large["n"] - small["n"])
        growth.append(
            f"{small['n']}->{large['n']}: warm {warm * 1e6:.0f}, cold {cold * 1e6:.0f} µs per "
            "added pack"
        )
    metrics: dict[str, float] = {}
    for row in rows_out:
        n = row["n"]
        metrics |= {
            f"noop_s_{n}": row["noop_s"],
            f"noop_us_per_pack_{n}": row["noop_s"] / n * 1e6,
            f"cold_s_{n}": row["cold_s"],
            f"cold_us_per_pack_{n}": row["cold_s"] / n * 1e6,
            f"stat_floor_s_{n}": row["stat_floor_s"],
            f"files_reread_{n}": row["files_reread"],
            f"bytes_hashed_{n}": row["bytes_hashed"],
            f"db_writes_{n}": row["db_writes"],
            f"write_transactions_{n}": row["write_transactions"],
            f"build_s_{n}": row["build_s"],
        }
        if row["naive"]:
            metrics |= {f"naive_s_{n}": row["naive"]["seconds"], f"ratio_{n}": row["ratio"]}
    targets = []
    for row in rows_out:
        targets.append(
            target(f"files re-read, warm and cold, N={row['n']}", row["files_reread"], 0)
        )
        targets.append(target(f"database writes, warm and cold, N={row['n']}", row["db_writes"], 0))
    by_n = {row["n"]: row for row in rows_out}
    if 1000 in by_n:
        targets.append(target("naive / no-op, 1,000 packs", by_n[1000]["ratio"], 20, at_least=True))
    if 10000 in by_n:
        big = by_n[10000]
        targets.append(target("cold no-op pass, 10,000 packs (s)", big["cold_s"], 2.0))
        targets.append(target("cold, µs a pack at 10,000", big["cold_s"] * 100, 200))
        targets.append(target("warm no-op pass, 10,000 packs (s)", big["noop_s"], 0.5))
        targets.append(target("warm, µs a pack at 10,000", big["noop_s"] * 100, 50))
    notes = [
        f"warm: median of {repeats} full passes (scan, plan, drift check, garbage collection, "
        "status file) after a warm-up pass; caches warm as in a running daemon",
        f"cold: median of {repeats} first passes of a fresh Daemon over the same state (a "
        "restart in-process: the stat caches come from <state_dir>/statcache.json)",
        "stat floor: one lstat of every pack file (paths listed beforehand), best of 3; "
        "warm/floor and cold/floor are the ratios. A pass stats each pack twice (the source "
        "and the served copy, for the drift check), a cold one three times (the snapshot too)",
        "files re-read: files opened for reading below the watched folder, snapshots and pack "
        "store (audit hook on open) in the worst warm or cold pass; bytes hashed: content "
        "hashed by the snapshot store and the drift check",
        "db writes: INSERT/UPDATE/DELETE statements; statements: every SQL statement the pass sent",
        f"naive (up to {NAIVE_UP_TO} packs): Registry.register(replace=True, skip_tests=True) "
        "of every pack, in-process, as a cron script would",
        "growth: " + "; ".join(growth),
    ]
    for row in rows_out:
        reads = {k: v for k, v in row["reads_by_area"].items() if v}
        if reads:
            notes.append(f"N={row['n']}: files re-read by area {reads}")
    return {
        "name": "noop_resync",
        "title": "3. No-op pass, warm and cold (a restart), vs the stat floor and the naive way",
        "params": {"sizes": sizes, "files_per_pack": 20, "repeats": repeats, "database": "SQLite"},
        "tables": [
            {
                "columns": [
                    "packs",
                    "warm ms",
                    "warm µs/pack",
                    "cold ms",
                    "cold µs/pack",
                    "stat floor µs/pack",
                    "warm/floor",
                    "cold/floor",
                    "files re-read",
                    "bytes hashed",
                    "db writes",
                    "SQL stmts",
                    "naive s",
                    "naive/warm",
                ],
                "rows": rows,
            }
        ],
        "metrics": metrics,
        "targets": targets,
        "notes": notes,
        "raw": rows_out,
    }


if __name__ == "__main__":
    main(run, __doc__)
