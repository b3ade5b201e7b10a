"""Run a pack's tests in the environment it declares: its runtimes checked first, then its
Python environment prepared (or reused), then the executor.

When the environment cannot be had, the tests do not run: the result has status `error`,
zero tests, one suite named `environment` whose output is the build's log, and a failed
gate that blocks whatever `on_failure` says (the pack is not at fault for a test it could
not run, but it must not be served untested either).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from attuned.envs.python import PythonEnvironments
from attuned.envs.runtimes import missing_runtimes
from attuned.errors import EnvironmentFailed
from attuned.pack.manifest import PackManifest, TestingSection
from attuned.pack.requirements import declared_requirements
from attuned.report.log import Event, get_logger
from attuned.results import GateDecision, PackTestResult, TestStatus, TestSuiteResult
from attuned.testing.executor import TestExecutor

log = get_logger()

ENVIRONMENT_SUITE = "environment"  # the suite (and runner type) of an environment failure


@dataclass(frozen=True)
class EnvironmentProblem:
    """Why the tests could not run. `transient`: may pass on a retry (pip index down,
    timeout); otherwise the same content fails the same way on this host (a missing
    runtime)."""

    message: str
    transient: bool


@dataclass(frozen=True)
class TestRun:
    __test__ = False  # not a pytest class

    result: PackTestResult
    problem: EnvironmentProblem | None = None


class PackTester:
    """The executor plus what a pack needs before its tests can start."""

    def __init__(
        self, executor: TestExecutor, environments: PythonEnvironments | None = None
    ) -> None:
        """Without `environments`, Python dependencies are not installed (tests run with
        `testing.python` as is); runtimes are checked either way."""
        self.executor = executor
        self.environments = environments

    def run(
        self, pack_dir: Path, manifest: PackManifest, *, cancel: threading.Event | None = None
    ) -> TestRun:
        if not _runs_tests(manifest.testing):  # the executor says why nothing runs
            return TestRun(self.executor.run(pack_dir, manifest, cancel=cancel))
        started_at, started = datetime.now(UTC), time.monotonic()
        settings = self.executor.settings
        commands = self.environments.settings.runtimes if self.environments else {}
        missing = missing_runtimes(
            manifest.runtime_deps,
            search_path=settings.path,
            python=settings.python,
            commands=commands,
        )
        if missing:
            message = "; ".join(missing)
            log.warning(
                Event.ENV_RUNTIME_MISSING,
                pack=manifest.ref,
                version=manifest.version,
                error=message,
            )
            result = error_result(manifest, message, started_at=started_at, started=started)
            return TestRun(result, EnvironmentProblem(message, transient=False))
        requirements = declared_requirements(pack_dir, manifest.meta)
        if not requirements or self.environments is None:
            return TestRun(self.executor.run(pack_dir, manifest, cancel=cancel))
        try:
            with self.environments.use(requirements, pack=manifest.ref, cancel=cancel) as env:
                return TestRun(
                    self.executor.run(pack_dir, manifest, environment=env, cancel=cancel)
                )
        except EnvironmentFailed as exc:
            message = f"python environment for {manifest.ref} could not be created: {exc.message}"
            result = error_result(
                manifest,
                message,
                started_at=started_at,
                started=started,
                failure=exc,
            )
            return TestRun(result, EnvironmentProblem(message, transient=True))


def _runs_tests(testing: TestingSection | None) -> bool:
    return testing is not None and testing.enabled and bool(testing.runners)


def error_result(
    manifest: PackManifest,
    message: str,
    *,
    started_at: datetime,
    started: float,
    failure: EnvironmentFailed | None = None,
) -> PackTestResult:
    """The result of tests that could not run: status `error`, zero tests, a blocking gate,
    and the environment's build log as the `environment` suite's output."""
    testing = manifest.testing or TestingSection()
    duration_ms = round((time.monotonic() - started) * 1000)
    suite = TestSuiteResult(
        name=ENVIRONMENT_SUITE,
        runner_type=ENVIRONMENT_SUITE,
        total=0,
        passed=0,
        failed=0,
        skipped=0,
        duration_ms=duration_ms,
        exit_code=failure.build_exit_code if failure else None,
        stdout=(failure.stdout or None) if failure else None,
        stderr=(failure.stderr or None) if failure else None,
    )
    cancelled = failure is not None and failure.cancelled
    gate = GateDecision(
        passed=False,
        reason=f"the tests could not run: {message}",
        min_pass_rate=testing.min_pass_rate,
        on_failure="block",  # whatever the pack says: it was not tested at all
        allow_empty=testing.allow_empty,
    )
    return PackTestResult(
        pack_ref=manifest.ref,
        pack_version=manifest.version,
        execution_time=started_at,
        status=TestStatus.ERROR,
        total_tests=0,
        passed=0,
        failed=0,
        skipped=0,
        pass_rate=0.0,
        duration_ms=duration_ms,
        test_suites=[suite],
        gate=gate,
        cancelled=cancelled,
    )
