"""Staging a candidate and running its tests, before anything is committed.

The tests run on a complete, unserved copy of exactly the validated files, so what passed
is what gets served; the copy is removed if the registration fails. How the tests went is
said in the log as they end (the outbox hears of it with the verdict, in its transaction).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from structlog.typing import FilteringBoundLogger

from attuned.envs.tester import PackTester, TestRun
from attuned.errors import AttunedError
from attuned.pack.loader import Pack
from attuned.registry.verdict import Trigger
from attuned.report.log import Event
from attuned.results import PackTestResult
from attuned.store.packstore import PackStore

# the regression gate of a result, against the version the candidate would replace
RegressionGate = Callable[[PackTestResult], PackTestResult]


@contextmanager
def staged(store: PackStore, pack: Pack) -> Iterator[Path]:
    """A complete, unserved copy of exactly the validated files; removed on failure."""
    version_dir, content = store.stage(pack.ref, pack.version, pack.path, pack.files)
    try:
        if content != pack.digest:
            raise AttunedError(f"{pack.path} changed while it was being registered; try again")
        yield version_dir
    except BaseException:
        store.discard(version_dir)
        raise


def run_tests(
    tester: PackTester,
    pack: Pack,
    version_dir: Path,
    trigger: Trigger,
    cancel: threading.Event | None,
    plog: FilteringBoundLogger,
    regression_gate: RegressionGate | None,
) -> TestRun:
    """Run the tests of the staged copy; `regression_gate` (when a served version is the
    baseline) applies to a run that completed."""
    plog.info(Event.PACK_TEST_STARTED, trigger=trigger.value)
    run = tester.run(version_dir, pack.manifest, cancel=cancel)
    if regression_gate is not None and run.problem is None and not run.result.cancelled:
        run = replace(run, result=regression_gate(run.result))
    _log_result(plog, run.result)
    return run


def _log_result(plog: FilteringBoundLogger, result: PackTestResult) -> None:
    gate = result.gate
    if gate.regressions:
        plog.warning(
            Event.PACK_TEST_REGRESSED,
            cases=gate.regressions,
            baseline_version=gate.baseline_version,
            policy=gate.regression_policy,
        )
    if gate.slower:
        plog.warning(
            Event.PACK_TEST_SLOWER, cases=gate.slower, baseline_version=gate.baseline_version
        )
    if gate.flaky:
        plog.info(Event.PACK_TEST_FLAKY, cases=gate.flaky)
    fields: dict[str, Any] = dict(
        status=result.status.value,
        passed=result.passed,
        total=result.total_tests,
        pass_rate=result.pass_rate,
        gate_passed=result.gate.passed,
        gate_reason=result.gate.reason,
        duration_ms=result.duration_ms,
    )
    plog.info(Event.PACK_TEST_FINISHED, **fields)
    if not result.gate.passed:
        plog.warning(Event.PACK_TEST_FAILED, **fields)
