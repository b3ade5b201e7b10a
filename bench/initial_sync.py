"""Scenario 4: initial sync of N packs with trivial tests, at concurrency 1 and 2.

Each sync is a fresh process (this module re-run with --child) doing what `attuned reconcile
--once` does: one pass in-process from an empty database, every pack snapshotted, tested and
registered. The child reports its wall time and getrusage of itself (attuned's own CPU) and of
its reaped children (the tests' CPU); the stored test executions give the test durations.

Shares are of the available test slots (wall x concurrency): the test processes themselves,
the executor around them (staging copy, environment, limits, capture, parsing), and the rest,
attuned's own work (scan and snapshot, register, commit, status).

    python bench/initial_sync.py [--quick]
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

from common import Result, main, run_child, scratch, write_pack

CONCURRENCY = (1, 2)


def child(config_path: Path) -> None:
    """The measured process: one reconcile pass, then its own numbers on stdout."""
    from common import quiet_logging

    from attuned.config import load_config
    from attuned.reconcile.daemon import Daemon

    config = load_config(config_path)
    quiet_logging(config.state_dir.parent / "attuned.log")
    daemon = Daemon(config)
    own, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    started = time.perf_counter()
    code = daemon.run_once()
    wall = time.perf_counter() - started
    own2, kids2 = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    print(
        json.dumps(
            {
                "code": code,
                "wall": wall,
                "own_cpu": own2.ru_utime + own2.ru_stime - own.ru_utime - own.ru_stime,
                "tests_cpu": kids2.ru_utime + kids2.ru_stime - kids.ru_utime - kids.ru_stime,
                "active": sum(p.state == "active" for p in daemon.packs.values()),
            }
        )
    )


def executions(db_path: Path) -> tuple[int, float, float]:
    """(count, sum of executor durations, sum of test-process durations) in seconds."""
    import sqlite3

    with sqlite3.connect(db_path) as db:
        # attuned's own history: its full results (Attune's table holds its camelCase shape)
        rows = db.execute("SELECT duration_ms, result FROM test_run").fetchall()
    executor = sum(r[0] for r in rows) / 1000
    process = sum(s["duration_ms"] for r in rows for s in json.loads(r[1])["test_suites"]) / 1000
    return len(rows), executor, process


def measure(root: Path, packs: Path, n: int, concurrency: int) -> dict[str, Any]:
    import yaml

    state = root / "state"
    root.mkdir(parents=True)
    config = root / "attuned.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "state_dir": str(state),
                "reconcile": {"concurrency": concurrency},
                "sources": [{"name": "local", "path": str(packs)}],
            }
        )
    )
    out, process_wall = run_child(__file__, config, what="initial sync")
    if out["code"] != 0 or out["active"] != n:
        raise RuntimeError(f"initial sync: {out['active']} of {n} active, exit {out['code']}")
    count, executor_s, process_s = executions(state / "attuned.db")
    slots = out["wall"] * concurrency
    return {
        "n": n,
        "concurrency": concurrency,
        "wall_s": out["wall"],
        "process_wall_s": process_wall,
        "packs_per_s": n / out["wall"],
        "executions": count,
        "tests_s": process_s,
        "executor_s": executor_s,
        "tests_share": process_s / slots,
        "executor_share": (executor_s - process_s) / slots,
        "own_share": max(0.0, 1 - executor_s / slots),
        "own_cpu_s": out["own_cpu"],
        "tests_cpu_s": out["tests_cpu"],
    }


def run(quick: bool) -> Result:
    n = 10 if quick else 1000
    results = []
    with scratch("sync") as root:
        packs = root / "packs.d"
        for i in range(n):
            write_pack(packs / f"pack{i:05d}", f"pack{i:05d}")
        for concurrency in CONCURRENCY:
            results.append(measure(root / f"c{concurrency}", packs, n, concurrency))
    rows = [
        [
            r["concurrency"],
            r["n"],
            f"{r['wall_s']:.1f}",
            f"{r['packs_per_s']:.1f}",
            f"{r['tests_s'] / r['n'] * 1000:.1f}",
            f"{r['executor_s'] / r['n'] * 1000:.1f}",
            f"{r['wall_s'] * r['concurrency'] / r['n'] * 1000:.1f}",
            f"{r['tests_share'] * 100:.0f}%",
            f"{r['executor_share'] * 100:.0f}%",
            f"{r['own_share'] * 100:.0f}%",
            f"{r['own_cpu_s']:.1f}",
            f"{r['tests_cpu_s']:.1f}",
        ]
        for r in results
    ]
    metrics: dict[str, float] = {}
    for r in results:
        c = r["concurrency"]
        metrics |= {
            f"wall_s_c{c}": r["wall_s"],
            f"packs_per_s_c{c}": r["packs_per_s"],
            f"tests_share_c{c}": r["tests_share"],
            f"executor_share_c{c}": r["executor_share"],
            f"own_share_c{c}": r["own_share"],
            f"own_cpu_s_c{c}": r["own_cpu_s"],
            f"tests_cpu_s_c{c}": r["tests_cpu_s"],
        }
    speedup = results[1]["packs_per_s"] / results[0]["packs_per_s"]
    metrics["speedup_c2_over_c1"] = speedup
    return {
        "name": "initial_sync",
        "title": f"4. Initial sync of {n} packs with trivial tests",
        "params": {"packs": n, "files_per_pack": 20, "database": "SQLite"},
        "tables": [
            {
                "columns": [
                    "concurrency",
                    "packs",
                    "wall s",
                    "packs/s",
                    "test ms/pack",
                    "executor ms/pack",
                    "slot ms/pack",
                    "tests",
                    "executor",
                    "attuned",
                    "attuned CPU s",
                    "tests CPU s",
                ],
                "rows": rows,
            }
        ],
        "metrics": metrics,
        "targets": [],
        "notes": [
            "one `reconcile --once`-style pass from an empty SQLite database, in a fresh process",
            "test ms: the test process (suite duration); executor ms: the whole executor run "
            "(stored duration_ms); slot ms: wall x concurrency / packs",
            "tests / executor / attuned: shares of wall x concurrency spent in test processes, "
            "in the executor around them, and in everything else",
            "CPU: getrusage of the attuned process itself and of its reaped children (tests)",
            f"concurrency 2 is {speedup:.2f}x concurrency 1 on this machine "
            "(the issue sets no goal; listed for the trend)",
        ],
        "raw": results,
    }


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(Path(sys.argv[2]))
    else:
        main(run, __doc__)
