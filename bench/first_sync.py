"""Scenario: the first sync with `skip_tests` (issue 18: <= 8 ms a pack).

One `attuned reconcile --once` pass (`Daemon.run_once`, in-process) from an empty database
over N fresh 20-file packs (`common.write_pack`) in a watched folder with `skip_tests: true`:
every pack validated, snapshotted, copied into the store, registered in its own transaction
and activated. Each run is a fresh process (this module re-run with --child) on a fresh state
directory and database, at the default concurrency (2). N = 1,000 (3 runs: the median) and
10,000 (one run); --quick: 20.

Where the time goes, per pack, from the same runs: each phase's time inside its functions
(exclusive of the other phases they call), summed over the applier's threads: validation
(`load_pack`, in the scan and again in the registry), snapshot (the copy into
`<state>/snapshots` and its check), store copy (into `packs_dir/.versions`), transaction (the
registration's write transaction), activation (the symlink swap); "rest" is the wall time
minus them all (the scan's walk, the plan, the registry's reads, the status file, start-up).

Floors, in the same run: `shutil.copytree` of the same folder once (every file read and
written once, nothing checked or recorded: what no sync can beat), and the code before this
work (OLD_COMMIT, from a git worktree) at 1,000 packs (at 20 with --quick).
PostgreSQL too when ATTUNED_TEST_POSTGRES_URL is set (a throwaway database built by Attune's
migrations, ATTUNED_TEST_ATTUNE_SCHEMA/apply.sh), at 1,000 packs.

    python bench/first_sync.py [--quick]
"""

from __future__ import annotations

import functools
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from common import REPO, Result, main, run_child, scratch, target, write_pack

OLD_COMMIT = "e249791"  # the last commit before the first sync was profiled (issue 18)
GOAL_MS = 8.0
# NOTHING IS DELETED until the scenario ends: ext4 makes each new inode skip the ones freed
# in the last ~30 s (find_inode_bit -> recently_deleted, a buffer lookup per candidate), so a
# run started after a large rmtree pays several times the system time for every file it
# creates (perf: 60 % of a run's CPU there). Other processes deleting on the same file system
# still cost this; the tmpfs row shows attuned's own cost without a disk.
TMPFS = Path("/dev/shm")
PHASES = ("validation", "snapshot", "store copy", "transaction", "activation")
# (module, attribute, phase): what each phase's time is taken inside; a name missing from a
# tree is skipped (the old code has no PackStore.stage)
WRAPPED = (
    ("attuned.reconcile.snapshots", "load_pack", "validation"),
    ("attuned.registry", "load_pack", "validation"),
    ("attuned.registry", "Registry._load", "validation"),  # load_pack's caller since issue 21
    ("attuned.reconcile.snapshots", "SnapshotStore._take", "snapshot"),
    ("attuned.store.packstore", "PackStore.prepare", "store copy"),
    ("attuned.store.packstore", "PackStore.stage", "store copy"),
    ("attuned.registry", "Registry._commit", "transaction"),
    ("attuned.store.packstore", "PackStore.activate", "activation"),
)


# -- the measured process -------------------------------------------------------------------


class PhaseClock:
    """Exclusive time per phase, per thread: entering a phase pauses the one it was called
    from, so a load_pack inside the snapshot's code counts as validation, once. Wall time
    (waits for the disk, the GIL and the registry's write lock included) and the thread's
    CPU time."""

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(PHASES, 0.0)
        self.cpu_seconds = dict.fromkeys(PHASES, 0.0)
        self._local = threading.local()
        self._lock = threading.Lock()

    def _add(self, phase: str, wall: float, cpu: float) -> None:
        with self._lock:
            self.seconds[phase] += wall
            self.cpu_seconds[phase] += cpu

    def wrap(self, function: Callable[..., Any], phase: str) -> Callable[..., Any]:
        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            stack: list[list[Any]] = self._local.__dict__.setdefault("stack", [])
            now, cpu = time.perf_counter(), time.thread_time()
            if stack:  # pause the caller's phase
                self._add(stack[-1][0], now - stack[-1][1], cpu - stack[-1][2])
            stack.append([phase, now, cpu])
            try:
                return function(*args, **kwargs)
            finally:
                now, cpu = time.perf_counter(), time.thread_time()
                done = stack.pop()
                self._add(done[0], now - done[1], cpu - done[2])
                if stack:
                    stack[-1][1:] = [now, cpu]

        return timed

    def install(self) -> list[str]:
        """Wrap every function of WRAPPED that this tree has; returns those wrapped."""
        import importlib

        wrapped = []
        for module_name, attribute, phase in WRAPPED:
            owner: Any = importlib.import_module(module_name)
            *path, name = attribute.split(".")
            for part in path:
                owner = getattr(owner, part)
            if hasattr(owner, name):
                setattr(owner, name, self.wrap(getattr(owner, name), phase))
                wrapped.append(f"{module_name}:{attribute}")
        return wrapped


def child(spec_path: Path) -> None:
    """One first sync with the code under spec["code"]; its numbers as JSON on stdout."""
    spec = json.loads(spec_path.read_text())
    code = Path(spec["code"]).resolve()
    sys.path.insert(0, str(code))  # ahead of the working tree that common.py put first
    from common import quiet_logging

    import attuned
    from attuned.config import AttunedConfig
    from attuned.reconcile.daemon import Daemon

    root = Path(spec["root"])
    settings: dict[str, Any] = {
        "state_dir": str(root / "state"),
        "status_file": str(root / "status.json"),
        "sources": [{"name": "local", "path": spec["packs"], "skip_tests": True}],
    }
    if spec["database"]:
        settings["database"] = spec["database"]
    if spec.get("concurrency"):
        settings["reconcile"] = {"concurrency": spec["concurrency"]}
    config = AttunedConfig.model_validate(settings)
    quiet_logging(root / "attuned.log")
    clock = PhaseClock()
    wrapped = clock.install()
    daemon = Daemon(config)
    before = resource.getrusage(resource.RUSAGE_SELF)
    started, cpu = time.perf_counter(), time.process_time()
    code_ = daemon.run_once()
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    after = resource.getrusage(resource.RUSAGE_SELF)
    active = sum(p.state == "active" for p in daemon.packs.values())
    print(
        json.dumps(
            {
                "code": code_,
                "wall_s": wall,
                "active": active,
                "cpu_s": cpu,
                "system_s": after.ru_stime - before.ru_stime,  # the kernel's: files created
                "phases_s": clock.seconds,
                "phases_cpu_s": clock.cpu_seconds,
                "wrapped": wrapped,
                "attuned_file": str(Path(attuned.__file__).resolve()),
            }
        )
    )


# -- the runs -------------------------------------------------------------------------------


def first_sync(
    root: Path,
    packs: Path,
    n: int,
    code: Path,
    database: dict[str, Any] | None,
    concurrency: int | None = None,
) -> dict[str, Any]:
    root.mkdir(parents=True)
    spec = root / "spec.json"
    spec.write_text(
        json.dumps(
            {
                "code": str(code),
                "root": str(root),
                "packs": str(packs),
                "database": database,
                "concurrency": concurrency,
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATTUNED_")}
    env["PYTHONPATH"] = str(code)
    out, process_wall = run_child(__file__, spec, what="first sync", env=env)
    if not Path(out["attuned_file"]).is_relative_to(code.resolve()):
        raise RuntimeError(f"the child imported {out['attuned_file']}, not {code}'s attuned")
    if out["code"] != 0 or out["active"] != n:
        raise RuntimeError(f"first sync: {out['active']} of {n} active, exit {out['code']}")
    return out | {"n": n, "process_wall_s": process_wall, "ms_per_pack": out["wall_s"] * 1e3 / n}


@contextmanager
def scratch_in(parent: Path, name: str) -> Iterator[Path]:
    """A temporary directory under `parent`, removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix=f"attuned-bench-{name}-", dir=parent))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def copytree_floor(packs: Path, into: Path, n: int) -> float:
    """ms per pack to copy the whole folder once with shutil.copytree (the copy is kept, like
    every run's state, until the scenario ends: see NOTHING IS DELETED)."""
    started = time.perf_counter()
    shutil.copytree(packs, into)
    return (time.perf_counter() - started) * 1e3 / n


def phase_ms(runs: list[dict[str, Any]], n: int, of: str = "phases_s") -> dict[str, float]:
    """Each phase's median ms per pack over `runs` (`of`: wall, or "phases_cpu_s"), and the
    rest: the wall (or the process's CPU) time outside them."""
    total = "wall_s" if of == "phases_s" else "cpu_s"
    found = {p: statistics.median(r[of][p] for r in runs) * 1e3 / n for p in PHASES}
    found["rest"] = statistics.median(
        (r[total] - sum(r[of][p] for p in PHASES)) * 1e3 / n for r in runs
    )
    return found


def run(quick: bool) -> Result:
    from attune_tables import head_commit, old_tree, postgres, postgres_database

    sizes = [20] if quick else [1000, 10000]
    rounds = {20: 2, 1000: 3, 10000: 1}
    old_at = sizes[0]
    server, schema, pg_skipped = postgres()
    rows: list[list[Any]] = []
    phase_rows: list[list[Any]] = []
    metrics: dict[str, float] = {}
    targets = []
    notes: list[str] = []
    per_pack: dict[tuple[str, str, int], float] = {}
    with scratch("first-sync") as root, old_tree(root) as (old_code, why_not):
        if why_not:
            notes.append(why_not)
        for n in sizes:
            packs = root / f"packs-{n}"
            for i in range(n):
                write_pack(packs / f"pack{i:05d}", f"pack{i:05d}")
            floor = copytree_floor(packs, root / f"copytree-{n}", n)
            metrics[f"copytree_ms_per_pack_{n}"] = floor
            backends = ["SQLite"]
            if server is not None and n == old_at:
                backends.append("PostgreSQL")
            if TMPFS.is_dir() and n == old_at:
                backends.append("SQLite, tmpfs")
            for backend in backends:
                codes: list[tuple[str, Path]] = [("new", REPO)]
                if old_code is not None and n == old_at and backend != "SQLite, tmpfs":
                    codes.append(("old", old_code))
                for label, tree in codes:
                    runs = []
                    for k in range(rounds[n] if label == "new" else 1):
                        where = root / f"{backend}-{label}-{n}-{k}"
                        if backend == "SQLite":
                            runs.append(first_sync(where, packs, n, tree, None))
                            continue
                        if backend == "SQLite, tmpfs":
                            with scratch_in(TMPFS, "first-sync") as memory:
                                copy = shutil.copytree(packs, memory / "packs")
                                runs.append(first_sync(memory / "run", copy, n, tree, None))
                            continue
                        assert server is not None
                        name = f"attuned_bench_first_{os.getpid()}_{label}_{n}_{k}"
                        with postgres_database(server, name, schema) as url:
                            database: dict[str, Any] = {"url": url}
                            if schema is None:
                                database["create_attune_tables"] = True
                            runs.append(first_sync(where, packs, n, tree, database))
                    values = [r["ms_per_pack"] for r in runs]
                    median = statistics.median(values)
                    per_pack[(backend, label, n)] = median
                    phases = phase_ms(runs, n)
                    cpu = phase_ms(runs, n, "phases_cpu_s")
                    key = f"{backend.lower().replace(', ', '_')}_{label}_{n}"
                    metrics[f"ms_per_pack_{key}"] = median
                    metrics[f"floors_{key}"] = median / floor
                    metrics[f"cpu_ms_per_pack_{key}"] = statistics.median(
                        r["cpu_s"] * 1e3 / n for r in runs
                    )
                    metrics[f"system_ms_per_pack_{key}"] = statistics.median(
                        r["system_s"] * 1e3 / n for r in runs
                    )
                    for name, split in (("ms", phases), ("cpu_ms", cpu)):
                        metrics |= {
                            f"{p.replace(' ', '_')}_{name}_per_pack_{key}": v
                            for p, v in split.items()
                        }
                    rows.append(
                        [
                            backend,
                            "new" if label == "new" else f"old {OLD_COMMIT}",
                            n,
                            len(runs),
                            f"{median:.2f}",
                            f"{max(values):.2f}",
                            f"{metrics[f'cpu_ms_per_pack_{key}']:.2f}",
                            f"{metrics[f'system_ms_per_pack_{key}']:.2f}",
                            f"{statistics.median(r['wall_s'] for r in runs):.1f}",
                            f"{median / floor:.1f}x",
                        ]
                    )
                    phase_rows.append(
                        [
                            backend,
                            label,
                            n,
                            *(f"{phases[p]:.2f} / {cpu[p]:.2f}" for p in (*PHASES, "rest")),
                        ]
                    )
    new_small = per_pack[("SQLite", "new", sizes[0])]
    targets.append(target(f"first sync ms/pack at {sizes[0]:,} (SQLite)", new_small, GOAL_MS))
    if len(sizes) > 1:
        new_big = per_pack[("SQLite", "new", sizes[1])]
        growth = new_big / new_small
        metrics["growth_per_pack_1000_to_10000"] = growth
        targets.append(target(f"first sync ms/pack at {sizes[1]:,} (SQLite)", new_big, GOAL_MS))
        targets.append(target("ms/pack growth 1,000 -> 10,000 (about linear)", growth, 1.2))
        notes.append(
            f"growth per pack from {sizes[0]:,} to {sizes[1]:,}: {growth:.2f}x "
            "(1.0 is linear; the limit allows noise)"
        )
    if ("SQLite, tmpfs", "new", old_at) in per_pack:
        targets.append(
            target(
                f"first sync ms/pack at {old_at:,} (SQLite, tmpfs: attuned's own cost)",
                per_pack[("SQLite, tmpfs", "new", old_at)],
                GOAL_MS,
            )
        )
    old = per_pack.get(("SQLite", "old", old_at))
    if old is not None:
        metrics["speedup_vs_old"] = old / per_pack[("SQLite", "new", old_at)]
        notes.append(
            f"against the old code at {old_at:,} packs: {old:.1f} -> "
            f"{per_pack[('SQLite', 'new', old_at)]:.1f} ms/pack "
            f"({metrics['speedup_vs_old']:.1f}x faster)"
        )
    if ("PostgreSQL", "new", old_at) in per_pack:
        targets.append(
            target(
                f"first sync ms/pack at {old_at:,} (PostgreSQL, optional)",
                per_pack[("PostgreSQL", "new", old_at)],
                GOAL_MS,
            )
        )
    elif pg_skipped:
        notes.append(pg_skipped)
    notes += [
        "ms/pack: wall time of the pass / packs, median of the runs (max beside it); each run "
        "a fresh process, state directory and database",
        "floor: shutil.copytree of the same folder once, ms per pack (x: how many floors a "
        "first sync costs)",
        "phases: time inside each phase's functions, exclusive of the phases they call, summed "
        "over the applier's 2 threads, wall (waits for the disk, the GIL and the registry's "
        "write lock included, so they may add up to more than the pass) and the threads' CPU; "
        "rest: the pass's wall (the process's CPU) outside them",
        "SQLite, tmpfs: the same pass with the packs, the state directory (snapshots, "
        "database) and the store in /dev/shm: attuned's own cost, without the disk",
        "CPU ms/pack: the process's CPU time (user + system) / packs; a file created costs "
        "system time, which varies several-fold on this VM from run to run: the copytree "
        "floor, measured in the same run, moves with it",
    ]
    return {
        "name": "first_sync",
        "title": "First sync with skip_tests (issue 18)",
        "params": {
            "packs": "/".join(str(n) for n in sizes),
            "files_per_pack": 20,
            "concurrency": 2,
            "code": f"{head_commit()}+ (working tree); old: {OLD_COMMIT}",
        },
        "tables": [
            {
                "columns": [
                    "backend",
                    "code",
                    "packs",
                    "runs",
                    "ms/pack",
                    "max",
                    "CPU ms/pack",
                    "of which system",
                    "wall s",
                    "vs copytree",
                ],
                "rows": rows,
            },
            {
                "caption": "Per phase, ms per pack, wall / CPU (median of the runs)",
                "columns": ["backend", "code", "packs", *PHASES, "rest"],
                "rows": phase_rows,
            },
        ],
        "metrics": metrics,
        "targets": targets,
        "notes": notes,
    }


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(Path(sys.argv[2]))
    else:
        main(run, __doc__)
