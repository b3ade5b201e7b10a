"""Scenario 9: the per-case test history: what storing every case adds to a registration, and
what `attuned history` and `attuned compare` cost on a pack with 10,000 stored runs.

Cost per registration: `run_records.add_test_run` of one 1,000-case result (20 of them
failing, with messages), each in its own write transaction, into a database where the pack is
registered (so Attune's `pack_test_execution` gets its row too), with more runs stored than
`keep_runs`. Pairs, the order alternating: the real call, and the same call with
`cases.add_cases` made a no-op (the baseline: the run, its JSON and Attune's row, without the
case rows). Also timed alone, inside the real call: `add_cases`. Retention is upkeep, not part
of a registration: after each real call, the daemon's `cases.prune` of that pack (deleting
one run's 1,000 case rows) is timed in its own transaction and reported apart.

Queries: 10,000 runs of one pack (100 versions, 20 cases each, some flaky, one minute apart)
written by `run_records.add_test_run` from constructed results; then, each in a fresh read
session, the median of R repetitions of the `history` queries (attuned.store.runs) and of
`compare_runs`, against two baselines in the same run: a bare `SELECT count(*)` of the pack's
runs and the unfiltered `run_records.executions()` (the old `history`: every run with its JSON).
Measured twice: with every run's cases kept (`keep_runs` 10,000: 200,000 case rows) and
after pruning to the default 50. SQLite always; PostgreSQL when ATTUNED_TEST_POSTGRES_URL is
set (a throwaway database with Attune's schema, as scenario 7 makes it, dropped afterwards).

    python bench/history.py [--quick]
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from common import Result, main, quiet_logging, scratch, summary, target, write_pack
from sqlalchemy import func, select
from sqlmodel import Session

from attuned.registry import Registry
from attuned.results import (
    CaseStatus,
    GateDecision,
    PackTestResult,
    TestCaseResult,
    TestSuiteResult,
)
from attuned.store import cases, comparisons, run_records, runs
from attuned.store.database import Database
from attuned.store.models import TestCaseRecord, TestRun
from attuned.store.packstore import PackStore
from attuned.testing.regressions import Thresholds

REF = "bench"
KEEP_RUNS = 50  # testing.history.keep_runs' default
MESSAGE = "AssertionError: expected the greeting to be 'Hello, world!', got 'Hello, None!'"


# -- synthetic results ------------------------------------------------------------------------


def result_of(version: str, verdicts: list[tuple[str, str, int]], when: datetime) -> PackTestResult:
    """A result of one suite whose cases are (name, status, duration_ms)."""
    test_cases = [
        TestCaseResult(
            name=name,
            status=CaseStatus(status),
            duration_ms=ms,
            error_message=MESSAGE if status == "failed" else None,
        )
        for name, status, ms in verdicts
    ]
    failed = sum(c.status is CaseStatus.FAILED for c in test_cases)
    skipped = sum(c.status is CaseStatus.SKIPPED for c in test_cases)
    suite = TestSuiteResult(
        name="shell",
        runner_type="script",
        total=len(test_cases),
        passed=len(test_cases) - failed - skipped,
        failed=failed,
        skipped=skipped,
        duration_ms=sum(ms for _, _, ms in verdicts),
        test_cases=test_cases,
    )
    return PackTestResult.from_suites(
        pack_ref=REF,
        pack_version=version,
        execution_time=when,
        duration_ms=suite.duration_ms,
        suites=[suite],
        gate=GateDecision(passed=failed == 0, reason=f"{failed} failed"),
    )


def registered(database: Database, root: Path) -> str:
    """Register the bench pack (no tests), so runs also go to Attune's table; its digest."""
    registry = Registry(database, PackStore(root / "packs"))
    done = registry.register(write_pack(root / "src" / REF, REF), skip_tests=True)
    return done.pack.digest


def count_cases(database: Database) -> int:
    with database.read() as session:
        query = select(func.count()).select_from(TestCaseRecord.__table__)  # type: ignore[attr-defined]
        return int(session.connection().execute(query).scalar() or 0)


# -- (a) what the case rows add to a registration -------------------------------------------


@contextmanager
def without_cases() -> Iterator[None]:
    """add_test_run writing its run, its JSON and Attune's row, but no case rows."""
    saved = cases.add_cases
    cases.add_cases = lambda *_a, **_k: None  # type: ignore[assignment]
    try:
        yield
    finally:
        cases.add_cases = saved


@contextmanager
def timing_cases(spent: list[float]) -> Iterator[None]:
    """The real add_cases, its time inside one add_test_run."""
    saved = cases.add_cases
    clock: list[float] = []

    def wrap(function: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                clock.append(time.perf_counter() - began)

        return timed

    cases.add_cases = wrap(saved)  # type: ignore[assignment]
    try:
        yield
    finally:
        cases.add_cases = saved
        spent.append(sum(clock))


def add_one(database: Database, result: PackTestResult, digest: str) -> float:
    began = time.perf_counter()
    with database.write() as session:
        run_records.add_test_run(
            session,
            result,
            trigger_type="upgrade",
            outcome="rolled_back",
            pack_digest=digest,
        )
    return time.perf_counter() - began


def registration_cost(database: Database, root: Path, n_cases: int, rounds: int) -> dict[str, Any]:
    registered(database, root)
    rng = random.Random(9)
    failing = set(rng.sample(range(n_cases), 20))
    verdicts = [
        (
            f"tests.test_mod{k // 50:02d}.Case.test_{k:04d}",
            "failed" if k in failing else "passed",
            3,
        )
        for k in range(n_cases)
    ]
    result = result_of("2.0.0", verdicts, datetime.now(UTC))
    candidate = "c" * 64  # not the served digest: its case rows are pruned like any
    for _ in range(KEEP_RUNS + 2):  # steady state: every further run makes one run prunable
        add_one(database, result, candidate)
    upkeep(database)
    real: list[float] = []
    bare: list[float] = []
    inside: list[float] = []
    pruning: list[float] = []
    for k in range(rounds):
        for variant in ("real", "bare") if k % 2 == 0 else ("bare", "real"):
            if variant == "real":
                with timing_cases(inside):
                    real.append(add_one(database, result, candidate))
                pruning.append(upkeep(database))
            else:
                with without_cases():
                    bare.append(add_one(database, result, candidate))
    paired = [r - b for r, b in zip(real, bare, strict=True)]
    return {
        "cases": n_cases,
        "rounds": rounds,
        "real_ms": summary([t * 1000 for t in real]),
        "bare_ms": summary([t * 1000 for t in bare]),
        "paired_ms": summary([t * 1000 for t in paired]),
        "inside_ms": summary([t * 1000 for t in inside]),
        "prune_ms": summary([t * 1000 for t in pruning]),
        "case_rows": count_cases(database),
    }


def upkeep(database: Database) -> float:
    """The daemon's retention of this pack's case rows, in its own transaction: seconds."""
    began = time.perf_counter()
    with database.write() as session:
        cases.prune(session, [REF], KEEP_RUNS)
    return time.perf_counter() - began


# -- (b) history and compare on 10,000 runs -------------------------------------------------


def generate(database: Database, serving: str, n: int, per_version: int, n_cases: int) -> None:
    """`n` runs, `per_version` per version (each version its own digest; the one before the
    last is the served content, the last the candidate), one minute apart, ending now."""
    rng = random.Random(20261205)
    names = [f"case{k:02d}" for k in range(n_cases)]
    flaky = set(rng.sample(names, 2))
    base_ms = {name: rng.randint(5, 400) for name in names}
    versions = n // per_version
    start = datetime.now(UTC) - timedelta(minutes=n)
    batch = 250
    for first in range(0, n, batch):
        with database.write() as session:
            for i in range(first, min(n, first + batch)):
                v = i // per_version
                digest = serving if v == versions - 2 else f"{v:064x}"
                verdicts = []
                for name in names:
                    odds = 0.2 if name in flaky else 0.01
                    status = "failed" if rng.random() < odds else "passed"
                    verdicts.append((name, status, int(base_ms[name] * rng.uniform(0.8, 1.25))))
                run_records.add_test_run(
                    session,
                    result_of(f"1.{v}.0", verdicts, start + timedelta(minutes=i)),
                    trigger_type="upgrade" if i % per_version == 0 else "manual",
                    outcome="registered" if i % per_version == 0 else "tested",
                    pack_digest=digest,
                )


def measure(database: Database, work: Callable[[Session], Any], reps: int) -> dict[str, Any]:
    """`work` in a fresh read session, `reps` times after one warm-up: ms, and rows returned."""
    samples = []
    size = 0
    for k in range(reps + 1):
        began = time.perf_counter()
        with database.read() as session:
            value = work(session)
        if k:
            samples.append(time.perf_counter() - began)
        size = len(value) if isinstance(value, list) else int(value)
    return {"ms": summary([s * 1000 for s in samples]), "rows": size}


def queries(n: int) -> dict[str, tuple[str, Callable[[Session], Any]]]:
    """What is measured: baselines first (name -> (what the operator types, work))."""
    version = f"1.{(n // 100) // 2}.0"
    since = datetime.now(UTC) - timedelta(days=1)
    window = 5
    limits = Thresholds()

    def count(session: Session) -> int:
        query = select(func.count()).where(TestRun.pack_ref == REF)
        return int(session.connection().execute(query).scalar() or 0)

    def compared(selectors: tuple[str | None, str | None]) -> Callable[[Session], int]:
        def work(session: Session) -> int:
            found = comparisons.compare_runs(
                session, REF, *selectors, window=window, thresholds=limits
            )
            return sum(found.comparison.counts().values())

        return work

    f = runs.RunFilter
    return {
        "count": ("SELECT count(*) (baseline)", count),
        "executions": (
            "run_records.executions, every run (baseline: the old history)",
            lambda s: list(run_records.executions(s, REF)),
        ),
        "all": ("history REF", lambda s: runs.runs(s, f(REF))),
        "limit": ("history REF --limit 20", lambda s: runs.runs(s, f(REF, limit=20))),
        "version_status": (
            f"history REF --version {version} --status failed",
            lambda s: runs.runs(s, f(REF, versions=(version,), statuses=("failed",))),
        ),
        "since_trigger": (
            "history REF --since 1d --trigger manual",
            lambda s: runs.runs(s, f(REF, since=since, triggers=("manual",))),
        ),
        "case_exact": (
            "history REF --case shell::case07",
            lambda s: runs.case_runs(s, f(REF), "shell::case07"),
        ),
        "case_exact_limit": (
            "history REF --case shell::case07 --limit 50",
            lambda s: runs.case_runs(s, f(REF, limit=50), "shell::case07"),
        ),
        "case_glob": (
            "history REF --case '*se07'",
            lambda s: runs.case_runs(s, f(REF), "*se07"),
        ),
        "case_glob_limit": (
            "history REF --case '*e1?' --limit 100",
            lambda s: runs.case_runs(s, f(REF, limit=100), "*e1?"),
        ),
        "flaky": ("history REF --flaky", lambda s: runs.flaky(s, f(REF), window)),
        "cases": (
            "history REF --cases",
            lambda s: cases.run_cases(
                s, runs.run_by_id(s, REF, runs.runs(s, f(REF, limit=1))[0].id)
            ),
        ),
        "compare": ("compare REF", compared((None, None))),
        "compare_versions": (
            "compare REF 1.0.0 latest",
            compared(("1.0.0", "latest")),
        ),
    }


BASELINES = ("count", "executions")


def analyze(database: Database) -> None:
    """PostgreSQL's statistics, as autovacuum keeps them for a history that grew over months:
    right after a bulk load it has none, and plans joins for tables of one row."""
    if database.is_sqlite:
        return
    with database.engine.begin() as connection:
        for table in ("test_run", "test_case"):
            connection.exec_driver_sql(f"ANALYZE {database.own_schema}.{table}")


def query_costs(database: Database, root: Path, n: int, reps: int) -> dict[str, Any]:
    serving = registered(database, root)
    began = time.perf_counter()
    generate(database, serving, n, per_version=100, n_cases=20)
    generated_s = time.perf_counter() - began
    analyze(database)
    work = queries(n)
    found: dict[str, Any] = {"generate_s": generated_s, "phases": {}}
    for phase in ("all kept", f"pruned to {KEEP_RUNS}"):
        if phase != "all kept":
            with database.write() as session:
                cases.prune(session, [REF], KEEP_RUNS)
            analyze(database)
        results = {}
        for name, (_, job) in work.items():
            results[name] = measure(database, job, 3 if name == "executions" else reps)
        found["phases"][phase] = {"case_rows": count_cases(database), "results": results}
    return found


# -- the scenario ---------------------------------------------------------------------------


@contextmanager
def sqlite_database(folder: Path) -> Iterator[Database]:
    folder.mkdir(parents=True)
    database = Database(f"sqlite:///{folder / 'attuned.db'}")
    database.migrate()
    try:
        yield database
    finally:
        database.dispose()


@contextmanager
def postgres_database(server: str, schema: Path | None, name: str) -> Iterator[Database]:
    from attune_tables import postgres_database as created

    with created(server, f"attuned_bench_history_{name}_{os.getpid()}", schema) as url:
        database = Database(url, create_attune_tables=schema is None)
        database.migrate()
        try:
            yield database
        finally:
            database.dispose()


def backends(root: Path) -> tuple[list[tuple[str, Callable[[str], Any]]], str | None]:
    from attune_tables import postgres

    found: list[tuple[str, Callable[[str], Any]]] = [
        ("SQLite", lambda name: sqlite_database(root / "sqlite" / name))
    ]
    server, schema, skipped = postgres()
    if server is not None:
        found.append(("PostgreSQL", lambda name: postgres_database(server, schema, name)))
    return found, skipped


def run(quick: bool) -> Result:
    n_cases, rounds = (200, 3) if quick else (1000, 40)
    n, reps = (300, 3) if quick else (10_000, 15)
    measured: dict[str, dict[str, Any]] = {}
    with scratch("history") as root:
        quiet_logging(root / "attuned.log")
        found, skipped = backends(root)
        for backend, make in found:
            with make("register") as database:
                cost = registration_cost(database, root / backend / "register", n_cases, rounds)
            with make("queries") as database:
                costs = query_costs(database, root / backend / "queries", n, reps)
            measured[backend] = {"cost": cost, "queries": costs}
    return report(
        measured, quick=quick, n=n, n_cases=n_cases, rounds=rounds, reps=reps, skipped=skipped
    )


def report(
    measured: dict[str, dict[str, Any]],
    *,
    quick: bool,
    n: int,
    n_cases: int,
    rounds: int,
    reps: int,
    skipped: str | None,
) -> Result:
    cost_rows, query_rows, metrics, targets = [], [], {}, []
    labels = {name: what for name, (what, _) in queries(n).items()}
    for backend, found in measured.items():
        key = backend.lower()
        cost = found["cost"]
        for label, field in (
            ("add_test_run without case rows (baseline)", "bare_ms"),
            ("add_test_run with case rows", "real_ms"),
            ("**added** (paired, with - without)", "paired_ms"),
            ("add_cases, timed inside the call", "inside_ms"),
            ("upkeep (not in the registration): prune one run's case rows", "prune_ms"),
        ):
            s = cost[field]
            cost_rows.append(
                [backend, label, n_cases, rounds, f"{s['median']:.2f}", f"{s['p95']:.2f}"]
            )
            metrics[f"{key}_register_{field}_p50"] = s["median"]
        if backend == "SQLite":
            targets.append(
                target(
                    f"case rows add <= 10 ms to a {n_cases}-case registration (SQLite, ms)",
                    cost["paired_ms"]["median"],
                    10,
                )
            )
        queries_found = found["queries"]
        metrics[f"{key}_generate_s"] = queries_found["generate_s"]
        for phase, data in queries_found["phases"].items():
            results = data["results"]
            floor = results["count"]["ms"]["median"]
            old = results["executions"]["ms"]["median"]
            for name, value in results.items():
                p50 = value["ms"]["median"]
                query_rows.append(
                    [
                        backend,
                        phase,
                        data["case_rows"],
                        labels[name],
                        value["rows"],
                        f"{p50:.2f}",
                        f"{value['ms']['p95']:.2f}",
                        f"{p50 / floor:.1f}x" if floor else "-",
                        f"{p50 / old:.3f}x" if old else "-",
                    ]
                )
                tag = phase.split()[0]
                metrics[f"{key}_{tag}_{name}_ms_p50"] = p50
                if name not in BASELINES:
                    targets.append(
                        target(f"{labels[name]} <= 100 ms ({backend}, {phase}, ms)", p50, 100)
                    )
    notes = [
        "added: the same add_test_run with and without cases.add_cases, paired and "
        "alternating, each in its own write transaction (commit included); retention runs in "
        f"the daemon's upkeep (keep_runs {KEEP_RUNS}), timed apart after each real call",
        "PostgreSQL: ANALYZE after the bulk load and after pruning (autovacuum's job in a "
        "history that grows run by run; without statistics, a pattern --case took 2.5 s)",
        f"queries: median of {reps} repetitions after one warm-up, each in a fresh read "
        "session; x count: the median over a bare SELECT count(*) of the pack's runs; "
        "x executions: over the unfiltered run_records.executions() (every TestRun with its JSON)",
    ]
    if skipped:
        notes.append(skipped)
    return {
        "name": "history",
        "title": "9. Per-case test history: registration cost, history and compare",
        "params": {
            "quick": quick,
            "cases_per_registration": n_cases,
            "pairs": rounds,
            "runs": n,
            "cases_per_run": 20,
            "repetitions": reps,
        },
        "tables": [
            {
                "caption": "What the case rows add to storing one test run",
                "columns": ["backend", "add_test_run", "cases", "pairs", "ms p50", "ms p95"],
                "rows": cost_rows,
            },
            {
                "caption": f"history and compare on {n} stored runs of one pack",
                "columns": [
                    "backend",
                    "case rows kept",
                    "case rows",
                    "query",
                    "rows",
                    "ms p50",
                    "ms p95",
                    "x count",
                    "x executions",
                ],
                "rows": query_rows,
            },
        ],
        "metrics": metrics,
        "targets": targets,
        "notes": notes,
    }


if __name__ == "__main__":
    main(run, __doc__)
