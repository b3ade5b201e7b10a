"""Scenario 7: registering into Attune's tables vs attuned's own, before and after (issue 15).

The old code (commit 3346107: tables `pack`, `component` with raw YAML, `pack_test_execution`)
and the new (the working tree: Attune's pack, trigger, action, ... upserted by ref, components
resolved to foreign keys, attuned's bookkeeping in schema `attuned`), in one run, on the same
packs and machine. The old code is a git worktree of that commit; each measurement is a fresh
process (this module re-run with --child) with PYTHONPATH on one tree, which checks that it
imported attuned from there.

In each process: one `reconcile --once`-style pass from an empty database registers N packs
of 20 files (skip_tests, concurrency 1; every `Registry.register` call timed), then full
passes that find nothing to do, in-process and warm, counted as scenario 3 counts them (files
opened for reading, SQL statements that write) plus the rows changed (every table read before
and after, compared by primary key). SQLite always; PostgreSQL when ATTUNED_TEST_POSTGRES_URL
is set: a database per measurement, built with Attune's migrations (attune-schema/apply.sh)
for the new code and empty for the old, dropped afterwards.

    python bench/attune_tables.py [--quick]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from common import REPO, Result, main, ms, run_child, scratch, summary, target, write_pack

OLD_COMMIT = "3346107"  # the last commit before attuned wrote Attune's tables
CODES = ("old", "new")
SCHEMA_CANDIDATES = (REPO.parent / "shared" / "attune-schema", Path("/work/shared/attune-schema"))


# -- the measured process ---------------------------------------------------------------------


def table_rows(engine: Any) -> dict[str, dict[Any, str]]:
    """Every row of every table, keyed by primary key (or by itself): what `changed_rows`
    compares, outside the timed passes."""
    from sqlalchemy import inspect, text

    inspector = inspect(engine)
    if engine.dialect.name == "sqlite":
        schemas: list[str | None] = [None]
    else:
        system = {"information_schema", "pg_catalog", "pg_toast"}
        schemas = [s for s in inspector.get_schema_names() if s not in system]
    found: dict[str, dict[Any, str]] = {}
    with engine.connect() as connection:
        for schema in schemas:
            for table in inspector.get_table_names(schema=schema):
                name = f'"{schema}"."{table}"' if schema else f'"{table}"'
                pk = inspector.get_pk_constraint(table, schema=schema)["constrained_columns"]
                result = connection.execute(text(f"SELECT * FROM {name}"))  # noqa: S608
                columns = list(result.keys())
                keys = [columns.index(c) for c in pk]
                found[name] = {
                    (tuple(row[k] for k in keys) if keys else repr(tuple(row))): repr(tuple(row))
                    for row in result
                }
    return found


def changed_rows(
    before: dict[str, dict[Any, str]], after: dict[str, dict[Any, str]]
) -> dict[str, int]:
    """Rows inserted, updated or deleted between two `table_rows`, by table (changed only)."""
    changed = {}
    for name in sorted(before.keys() | after.keys()):
        old, new = before.get(name, {}), after.get(name, {})
        count = sum(old.get(key) != row for key, row in new.items())
        count += sum(key not in new for key in old)
        if count:
            changed[name] = count
    return changed


class WriteLog:
    """The text of the write statements sent while `active` (what a no-op pass still sends)."""

    def __init__(self) -> None:
        from sqlalchemy import Engine, event

        self.active = False
        self.seen: list[str] = []
        self._event = event
        self._engine = Engine
        event.listen(Engine, "before_cursor_execute", self._seen)

    def _seen(self, _conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        verb = statement.lstrip().split(None, 1)
        if self.active and verb and verb[0].upper() in ("INSERT", "UPDATE", "DELETE", "REPLACE"):
            self.seen.append(" ".join(statement.split())[:160])

    def close(self) -> None:
        self._event.remove(self._engine, "before_cursor_execute", self._seen)


def child(spec_path: Path) -> None:
    """One measurement with the code under spec["code"]; its numbers as JSON on stdout."""
    spec = json.loads(spec_path.read_text())
    code = Path(spec["code"]).resolve()
    # common.py put the working tree at sys.path[1], ahead of PYTHONPATH: the tree measured
    # goes first, and attuned must come from it
    sys.path.insert(0, str(code))
    import attuned

    imported = Path(attuned.__file__).resolve()
    if not imported.is_relative_to(code):
        raise SystemExit(f"attuned imported from {imported}, not from {code}")

    from common import WriteCounter, quiet_logging, read_counter
    from noop_resync import counted_pass, settle

    from attuned.config import AttunedConfig
    from attuned.reconcile.daemon import Daemon

    root = Path(spec["root"])
    folder = Path(spec["packs"])
    n, quick = spec["n"], spec["quick"]
    quiet_logging(root / "attuned.log")
    settings: dict[str, Any] = {
        "state_dir": str(root / "state"),
        "status_file": str(root / "status.json"),
        "reconcile": {"concurrency": 1},
        "sources": [{"name": "local", "path": str(folder), "skip_tests": True}],
    }
    if spec["database"]:
        settings["database"] = spec["database"]
    config = AttunedConfig.model_validate(settings)
    reads = read_counter()
    reads.watch(source=folder, snapshots=config.snapshots_path, store=config.packs_path, state=root)
    writes, write_log = WriteCounter(), WriteLog()
    daemon = Daemon(config)
    if quick:  # no waiting for the racy window: these files will not change anyway
        daemon.snapshots.racy_window_ns = 0
        daemon.drift.racy_window_ns = 0
    daemon.lock.acquire()
    try:
        daemon.sources.configure(config)
        started = time.perf_counter()
        registry = daemon._registry()  # a fresh database gets its tables here
        if daemon.clustered:  # PostgreSQL: lead, as `reconcile --once` does
            leads, _ = daemon._cluster().lead()
            if not leads:
                raise RuntimeError("another host leads the bench database")
            daemon.role = "leader"
        setup = time.perf_counter() - started
        durations: list[float] = []
        register = registry.register

        def timed(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return register(*args, **kwargs)
            finally:
                durations.append(time.perf_counter() - began)

        registry.register = timed
        engine = registry.db.engine
        tables_before, writes_before = table_rows(engine), writes.snapshot()
        started = time.perf_counter()
        daemon.reconcile_pass("build")
        build = time.perf_counter() - started
        registry.register = register
        active = sum(p.state == "active" for p in daemon.packs.values())
        if active != n or len(durations) != n:
            raise RuntimeError(f"{active} of {n} packs active, {len(durations)} registered")
        build_writes = writes.snapshot()
        build_tables = changed_rows(tables_before, table_rows(engine))
        if not quick:
            settle(time.monotonic())  # the store's version directories, for a stat-based check
        warmup = counted_pass(daemon, reads, writes, "warm-up")
        passes = []
        for k in range(spec["repeats"]):
            before = table_rows(engine)
            write_log.active = True
            counted = counted_pass(daemon, reads, writes, f"no-op {k}")
            write_log.active = False
            changed = changed_rows(before, table_rows(engine))
            passes.append(counted | {"rows": sum(changed.values()), "rows_by_table": changed})
    finally:
        reads.active = False
        writes.close()
        write_log.close()
        daemon._close_registry()
        daemon.lock.release()
    times = [p["seconds"] for p in passes]
    worst = max(passes, key=lambda p: sum(p["reads"].values()) + p["writes"] + p["rows"])
    print(
        json.dumps(
            {
                "attuned_file": str(imported),
                "setup_s": setup,
                "build_s": build,
                "register_s": summary(durations),
                "register_mean_s": statistics.mean(durations),
                "build_rows": sum(build_tables.values()),
                "build_rows_by_table": build_tables,
                "build_writes": build_writes[0] - writes_before[0],
                "build_statements": build_writes[2] - writes_before[2],
                "noop_s": statistics.median(times),
                "noop_min_s": min(times),
                "noop_max_s": max(times),
                "files_read": sum(worst["reads"].values()),
                "reads_by_area": worst["reads"],
                "read_examples": worst["read_examples"],
                "bytes_hashed": worst["bytes_hashed"],
                "rows_written": worst["rows"],
                "db_writes": worst["writes"],
                "write_statements": sorted(set(write_log.seen)),
                "statements": worst["statements"],
                "warmup": warmup,
                "passes": passes,
            },
            default=str,
        )
    )


# -- the two trees, the databases -------------------------------------------------------------


@contextmanager
def old_tree(root: Path) -> Iterator[tuple[Path | None, str | None]]:
    """A git worktree of OLD_COMMIT, removed afterwards: (its path, None) or (None, why not)."""
    tree = root / "old-code"
    git = ["git", "-C", str(REPO), "worktree"]
    done = subprocess.run(
        [*git, "add", "--detach", str(tree), OLD_COMMIT],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        yield None, f"no worktree of {OLD_COMMIT}: {(done.stderr or done.stdout).strip()[-300:]}"
        return
    try:
        yield tree, None
    finally:
        subprocess.run([*git, "remove", "--force", str(tree)], capture_output=True, check=False)


def head_commit() -> str:
    done = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or "unknown"


def postgres() -> tuple[str | None, Path | None, str | None]:
    """(server URL, folder of Attune's schema or None, why PostgreSQL is skipped or None)."""
    url = os.environ.get("ATTUNED_TEST_POSTGRES_URL")
    if not url:
        return None, None, "PostgreSQL skipped: ATTUNED_TEST_POSTGRES_URL is not set"
    named = os.environ.get("ATTUNED_TEST_ATTUNE_SCHEMA")
    for folder in (*([Path(named)] if named else []), *SCHEMA_CANDIDATES):
        if (folder / "apply.sh").is_file():
            return url, folder, None
    if any(folder.parent.is_dir() for folder in SCHEMA_CANDIDATES):
        return url, None, None  # no apply.sh: the new code creates Attune-shaped tables
    shared = ", ".join(str(f.parent) for f in SCHEMA_CANDIDATES)
    return None, None, f"PostgreSQL skipped: {shared} missing (Attune's schema)"


@contextmanager
def postgres_database(server: str, name: str, schema: Path | None) -> Iterator[str]:
    """A database `name` on `server`: Attune's schema from `schema`/apply.sh, or empty;
    dropped afterwards. Yields its URL."""
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(server)
    admin = url.set(drivername="postgresql").render_as_string(hide_password=False)

    def execute(sql: str) -> None:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(sql)

    try:
        if schema is None:
            execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            execute(f'CREATE DATABASE "{name}"')
        else:
            args = ["bash", str(schema / "apply.sh"), name, "-h", url.host or "127.0.0.1"]
            args += ["-p", str(url.port or 5432), "-U", url.username or "postgres"]
            env = os.environ | ({"PGPASSWORD": url.password} if url.password else {})
            done = subprocess.run(
                args, capture_output=True, text=True, env=env, timeout=300, check=False
            )
            if done.returncode != 0:
                raise RuntimeError(f"apply.sh {name} failed: {done.stdout}{done.stderr}"[-2000:])
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- one measurement, the whole scenario ------------------------------------------------------


def measure(
    root: Path,
    packs: Path,
    n: int,
    *,
    code: Path,
    database: dict[str, Any] | None,
    repeats: int,
    quick: bool,
) -> dict[str, Any]:
    root.mkdir(parents=True)
    spec = root / "spec.json"
    spec.write_text(
        json.dumps(
            {
                "code": str(code),
                "root": str(root),
                "packs": str(packs),
                "n": n,
                "quick": quick,
                "repeats": repeats,
                "database": database,
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATTUNED_")}
    env["PYTHONPATH"] = str(code)
    out, process_wall = run_child(__file__, spec, what="measurement", env=env)
    if not Path(out["attuned_file"]).is_relative_to(code.resolve()):
        raise RuntimeError(f"the child imported {out['attuned_file']}, not {code}'s attuned")
    return out | {"n": n, "process_wall_s": process_wall}


def ratio(new: float, old: float) -> float | None:
    return new / old if old else None


def run(quick: bool) -> Result:
    sizes = [10] if quick else [100, 1000]
    repeats = 3
    server, schema, pg_skipped = postgres()
    backends = ["SQLite"] + (["PostgreSQL"] if server else [])
    new_commit = head_commit()
    results: list[dict[str, Any]] = []
    notes: list[str] = []
    with scratch("attune-tables") as root, old_tree(root) as (old_code, old_missing):
        trees = {"old": old_code, "new": REPO}
        codes = [c for c in CODES if trees[c] is not None]
        for n in sizes:
            packs = root / f"packs{n}.d"
            written = time.monotonic()
            for i in range(n):
                write_pack(packs / f"pack{i:05d}", f"pack{i:05d}")
            if not quick:
                from noop_resync import settle

                settle(written)  # files old enough for the stat caches of the first pass
            for backend in backends:
                for code in codes:
                    tree = trees[code]
                    assert tree is not None
                    where = root / f"{backend.lower()}-{code}-{n}"
                    kwargs: dict[str, Any] = {"code": tree, "repeats": repeats, "quick": quick}
                    if backend == "SQLite":
                        row = measure(where, packs, n, database=None, **kwargs)
                    else:
                        assert server is not None
                        name = f"attuned_bench_{os.getpid()}_{code}_{n}"
                        attune = schema if code == "new" else None  # the old code: empty
                        with postgres_database(server, name, attune) as url:
                            database: dict[str, Any] = {"url": url}
                            if code == "new" and schema is None:
                                database["create_attune_tables"] = True
                            row = measure(where, packs, n, database=database, **kwargs)
                    results.append(row | {"backend": backend, "code": code})
    by_key = {(r["backend"], r["code"], r["n"]): r for r in results}
    rows: list[list[Any]] = []
    metrics: dict[str, float] = {}
    targets = []
    for backend in backends:
        for n in sizes:
            for code in CODES:
                r = by_key.get((backend, code, n))
                if r is None:
                    continue
                reg = r["register_s"]
                rows.append(
                    [
                        backend,
                        f"old {OLD_COMMIT}" if code == "old" else f"new {new_commit}+",
                        n,
                        ms(reg["median"]),
                        ms(reg["p95"]),
                        ms(r["build_s"] / n),
                        f"{r['build_rows'] / n:.1f}",
                        ms(r["noop_s"]),
                        r["files_read"],
                        r["rows_written"],
                        r["db_writes"],
                        r["statements"],
                    ]
                )
                prefix = f"{backend.lower()}_{code}_{n}"
                metrics |= {
                    f"{prefix}_register_ms_p50": reg["median"] * 1000,
                    f"{prefix}_register_ms_p95": reg["p95"] * 1000,
                    f"{prefix}_register_ms_mean": r["register_mean_s"] * 1000,
                    f"{prefix}_pass_ms_per_pack": r["build_s"] / n * 1000,
                    f"{prefix}_rows_per_pack": r["build_rows"] / n,
                    f"{prefix}_setup_s": r["setup_s"],
                    f"{prefix}_noop_ms": r["noop_s"] * 1000,
                    f"{prefix}_noop_files_read": r["files_read"],
                    f"{prefix}_noop_bytes_hashed": r["bytes_hashed"],
                    f"{prefix}_noop_rows_written": r["rows_written"],
                    f"{prefix}_noop_db_writes": r["db_writes"],
                    f"{prefix}_noop_statements": r["statements"],
                }
                if code == "new":
                    label = f"{backend}, N={n}, new code"
                    targets.append(target(f"no-op files read, {label}", r["files_read"], 0))
                    targets.append(target(f"no-op rows written, {label}", r["rows_written"], 0))
            old, new = by_key.get((backend, "old", n)), by_key.get((backend, "new", n))
            if old is None or new is None:  # the old commit could not be checked out
                continue
            pairs = {
                "register_p50": (new["register_s"]["median"], old["register_s"]["median"]),
                "register_p95": (new["register_s"]["p95"], old["register_s"]["p95"]),
                "pass_per_pack": (new["build_s"], old["build_s"]),
                "rows_per_pack": (new["build_rows"], old["build_rows"]),
                "noop": (new["noop_s"], old["noop_s"]),
                "noop_statements": (new["statements"], old["statements"]),
            }
            ratios = {k: ratio(*v) for k, v in pairs.items()}
            metrics |= {
                f"{backend.lower()}_{n}_ratio_{k}": v for k, v in ratios.items() if v is not None
            }

            def cell(key: str, ratios: dict[str, float | None] = ratios) -> str:
                value = ratios[key]
                return "-" if value is None else f"{value:.2f}x"

            rows.append(
                [
                    backend,
                    "**new/old**",
                    n,
                    cell("register_p50"),
                    cell("register_p95"),
                    cell("pass_per_pack"),
                    cell("rows_per_pack"),
                    cell("noop"),
                    "-",
                    "-",
                    "-",
                    cell("noop_statements"),
                ]
            )
    imported = sorted({f"{r['code']}: {Path(r['attuned_file']).parent}" for r in results})
    notes += [
        "register ms/pack: each `Registry.register` call of the first pass (skip_tests, from "
        "an empty database, concurrency 1), p50 and p95 over the N packs; pass ms/pack: that "
        "whole pass (scan, snapshot, plan, register, status) / N; rows/pack: rows that pass "
        "inserted, updated or deleted (tables compared before and after) / N",
        f"no-op: median of {repeats} full passes after a warm-up pass, in the same process "
        "(caches warm); files read: opened for reading below the watched folder, snapshots, "
        "pack store (audit hook); rows written: rows inserted, updated or deleted in any table "
        "(every table read before and after the pass, compared by primary key); write stmts: "
        "INSERT/UPDATE/DELETE statements sent (one may match no row); SQL stmts: every "
        "statement the pass sent",
        f"old: commit {OLD_COMMIT} (attuned's own `pack`/`component` tables), from a git "
        f"worktree; new: {new_commit} plus the working tree (Attune's tables, schema "
        "`attuned`); each measurement a fresh process; attuned imported from "
        + "; ".join(imported),
    ]
    if "PostgreSQL" in backends:
        how = f"{schema}/apply.sh" if schema else "database.create_attune_tables"
        host = (server or "").rsplit("@", 1)[-1]
        notes.append(
            f"PostgreSQL: a database per measurement on {host} (new code: Attune's schema by "
            f"{how}; old code: empty), dropped afterwards"
        )
    if pg_skipped:
        notes.append(pg_skipped)
    if old_missing:
        notes.append(f"old code not measured: {old_missing}")
    for r in results:
        area = {k: v for k, v in r["reads_by_area"].items() if v}
        if area:
            notes.append(f"{r['backend']} {r['code']} N={r['n']}: files read by area {area}")
    sent: dict[str, set[str]] = {}
    for r in results:
        for statement in r["write_statements"]:
            sent.setdefault(statement, set()).add(f"{r['backend']} {r['code']}")
    for statement, senders in sent.items():
        notes.append(
            f"write statement a no-op pass sends ({', '.join(sorted(senders))}), changing no row: "
            f"`{statement}`"
        )
    return {
        "name": "attune_tables",
        "title": "7. Registering into Attune's tables: before and after",
        "params": {
            "sizes": sizes,
            "files_per_pack": 20,
            "repeats": repeats,
            "databases": "+".join(backends),
            "old": OLD_COMMIT,
            "new": f"{new_commit}+working tree",
        },
        "tables": [
            {
                "columns": [
                    "backend",
                    "code",
                    "packs",
                    "register ms/pack p50",
                    "p95",
                    "pass ms/pack",
                    "rows/pack",
                    "no-op pass ms",
                    "files read",
                    "rows written",
                    "write stmts",
                    "SQL stmts",
                ],
                "rows": rows,
            }
        ],
        "metrics": metrics,
        "targets": targets,
        "notes": notes,
        "raw": results,
    }


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(Path(sys.argv[2]))
    else:
        main(run, __doc__)
