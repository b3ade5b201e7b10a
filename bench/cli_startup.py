"""Scenario 11: how fast the `attuned` command answers, against a bare interpreter's start.

Each command is a fresh process of the console script (`.venv/bin/attuned`, as an operator, a
monitoring check or the post-receive hook runs it), timed wall-clock from spawn to exit.
The commands take turns with `python -c pass` run after run, so a busy moment of the machine
falls on all of them alike:

- `attuned --help`;
- `attuned status`, on a status file of 20 packs written by the daemon's own models;
- `attuned trigger local` while another process holds the daemon's lock on the state
  directory (a daemon runs: exit 0).

Goals of issue 18: median --help <= 60 ms, status <= 100 ms, trigger <= 100 ms.

    python bench/cli_startup.py [--quick]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import Result, attuned_bin, main, percentile, scratch, target

from attuned.report.status import (
    DaemonStatus,
    LastTest,
    PackStatus,
    ReconcileSummary,
    SourceStatus,
    Status,
    now,
    write_status,
)

PACKS = 20
# name, argv after `attuned` ({config}: the scenario's config), goal in ms (None: the floor)
COMMANDS: list[tuple[str, list[str], float | None]] = [
    ("python -c pass", [], None),
    ("attuned --help", ["--help"], 60.0),
    ("attuned status", ["status", "--config", "{config}"], 100.0),
    ("attuned trigger local", ["trigger", "local", "--config", "{config}"], 100.0),
]
HOLD_LOCK = """
import sys, time
from pathlib import Path
from attuned.reconcile.daemon.statelock import StateLock
lock = StateLock(Path(sys.argv[1]))
lock.acquire()
print("held", flush=True)
time.sleep(3600)
"""


def a_status() -> Status:
    """What a daemon serving PACKS packs from one folder writes."""
    at = now()
    test = LastTest(status="passed", passed=1, total=1, at=at, version="1.0.0")
    return Status(
        daemon=DaemonStatus(version="0.1.0", pid=1, started_at=at, phase="idle"),
        updated_at=at,
        last_reconcile=ReconcileSummary(
            started_at=at, finished_at=at, duration_ms=40, trigger="full", counts={}
        ),
        sources=[
            SourceStatus(name="local", type="directory", location="/srv/packs.d", candidates=PACKS)
        ],
        packs={
            f"pack{i:05d}": PackStatus(
                state="active", version="1.0.0", source="local", active_since=at, last_test=test
            )
            for i in range(PACKS)
        },
    )


def timed(argv: list[str]) -> tuple[float, int]:
    """Wall seconds of one process from spawn to exit, and its exit code."""
    started = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - started, done.returncode


def measure(root: Path, runs: int) -> dict[str, list[float]]:
    state = root / "state"
    config = root / "attuned.yaml"
    config.write_text(f"state_dir: {state}\nsources:\n  - {{name: local, path: {root / 'p'}}}\n")
    write_status(state / "status.json", a_status())
    argvs = {
        name: [sys.executable, "-c", "pass"]
        if not args
        else [attuned_bin(), *(a.format(config=config) for a in args)]
        for name, args, _ in COMMANDS
    }
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(state)], stdout=subprocess.PIPE, text=True
    )
    try:
        if holder.stdout is None or holder.stdout.readline() != "held\n":
            raise RuntimeError("the stand-in daemon did not take the lock")
        seconds: dict[str, list[float]] = {name: [] for name in argvs}
        for argv in argvs.values():  # once unmeasured: the page cache, .pyc files
            if timed(argv)[1] != 0:
                raise RuntimeError(f"{' '.join(argv)} failed")
        for _ in range(runs):
            for name, argv in argvs.items():
                seconds[name].append(timed(argv)[0])
        return seconds
    finally:
        holder.kill()
        holder.wait()


def run(quick: bool) -> Result:
    runs = 3 if quick else 20
    with scratch("cli") as root:
        seconds = measure(root, runs)
    floor = statistics.median(seconds["python -c pass"]) * 1000
    rows: list[list[Any]] = []
    metrics: dict[str, float] = {"python_pass_median_ms": floor}
    targets = []
    for name, _, goal in COMMANDS:
        median = statistics.median(seconds[name]) * 1000
        p95 = percentile(seconds[name], 0.95) * 1000
        met = "-" if goal is None else "met" if median <= goal else "MISSED"
        rows.append(
            [
                name,
                f"{median:.1f}",
                f"{p95:.1f}",
                f"{floor:.1f}",
                f"{median / floor:.2f}",
                "-" if goal is None else f"{goal:.0f}",
                met,
            ]
        )
        key = name.split()[1].strip("-")  # help, status, trigger
        if goal is not None:
            metrics[f"{key}_median_ms"] = median
            metrics[f"{key}_p95_ms"] = p95
            metrics[f"{key}_over_python"] = median / floor
            targets.append(target(f"{name}: median wall ms", median, goal))
    return {
        "name": "cli_startup",
        "title": "11. CLI start-up: wall time of one command, against python -c pass",
        "params": {"runs": runs, "packs_in_status": PACKS, "database": "none touched"},
        "tables": [
            {
                "columns": [
                    "command",
                    "median ms",
                    "p95 ms",
                    "python -c pass median ms",
                    "ratio",
                    "goal ms",
                    "",
                ],
                "rows": rows,
            }
        ],
        "metrics": metrics,
        "targets": targets,
        "notes": [
            "wall time of the whole process (spawn to exit) of the console script "
            f"{attuned_bin()}; each command run once unmeasured first, then the commands "
            "take turns run after run",
            "ratio: the command's median over python -c pass's median in the same run",
            "trigger: another process holds <state_dir>/attuned.lock as a daemon does, so "
            "trigger finds a daemon and exits 0",
        ],
        "raw": {name: values for name, values in seconds.items()},
    }


if __name__ == "__main__":
    main(run, __doc__)
