"""Run a pack's tests: stage a private copy, run each runner in the order written, read the
results, and decide the gate. Test problems never raise; they become failed suites."""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from attuned.results import CaseStatus, GateDecision, PackTestResult, TestSuiteResult
from attuned.settings.testing import ExecutorSettings
from attuned.testing.gate import decide_gate

if TYPE_CHECKING:  # what runs a test is imported by the first run: a registry that never
    # tests (skip_tests, an idle daemon) does not hold the runners, formats and sandbox
    from attuned.pack.manifest import PackManifest, RunnerSpec, TestingSection
    from attuned.testing.environment import PackEnvironment
    from attuned.testing.process import Ending, ProcessOutcome
    from attuned.testing.results_files import ResultFiles
    from attuned.testing.runners import RunnerCommand
    from attuned.testing.sandbox import Launch
    from attuned.testing.staging import Stage

_KIB = 1024
_MIB = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class _Interpreter:
    """The interpreter of the Python runners, and the environment it belongs to, if any."""

    path: str
    environment: PackEnvironment | None = None


class TestExecutor:
    """Runs pack tests under the operator's settings; one instance serves many runs."""

    __test__ = False  # not a pytest class

    def __init__(
        self, settings: ExecutorSettings | None = None, *, hidden_paths: Iterable[Path] = ()
    ) -> None:
        """`hidden_paths` add to `settings.hidden_paths`: the daemon passes its state
        directory, database and config, which a sandboxed test must not see."""
        self.settings = settings or ExecutorSettings()
        self.hidden_paths = (*self.settings.hidden_paths, *hidden_paths)

    def run(
        self,
        pack_dir: Path,
        manifest: PackManifest,
        *,
        python: str | None = None,
        cancel: threading.Event | None = None,
        environment: PackEnvironment | None = None,
    ) -> PackTestResult:
        """Run the pack's tests. `environment`: a prepared Python environment whose
        interpreter runs the Python runners and whose `bin/` leads every runner's `PATH`
        (it wins over `python`)."""
        started_at = datetime.now(UTC)
        started = time.monotonic()
        testing = manifest.testing
        suites: list[TestSuiteResult] = []
        cancelled = False
        no_tests_reason = _why_nothing_runs(testing)
        if testing is not None and no_tests_reason is None:
            if environment is not None:
                python = environment.python
            cancelled = self._run_runners(
                pack_dir,
                manifest,
                testing,
                _Interpreter(python or self.settings.python, environment),
                cancel,
                suites,
            )
        gate = _gate(testing, suites, no_tests_reason, cancelled=cancelled)
        return PackTestResult.from_suites(
            pack_ref=manifest.ref,
            pack_version=manifest.version,
            execution_time=started_at,
            duration_ms=round((time.monotonic() - started) * 1000),
            suites=suites,
            gate=gate,
            cancelled=cancelled,
        )

    def _run_runners(
        self,
        pack_dir: Path,
        manifest: PackManifest,
        testing: TestingSection,
        python: _Interpreter,
        cancel: threading.Event | None,
        suites: list[TestSuiteResult],
    ) -> bool:
        """Append one suite per runner to `suites`; True when cancelled before the end."""
        from attuned.testing.limits import hand_over
        from attuned.testing.process import Ending
        from attuned.testing.sandbox import launch_for
        from attuned.testing.staging import staged_pack
        from attuned.testing.suites import error_suite

        launch = launch_for(self.settings)
        if isinstance(launch, str):  # the host cannot run tests as configured
            name, spec = next(iter(testing.runners.items()))
            suites.append(error_suite(name, spec, launch))
            return False
        with contextlib.ExitStack() as cleanup:
            try:
                stage = cleanup.enter_context(
                    staged_pack(
                        pack_dir,
                        prefix=f"attuned-test-{manifest.ref}-",
                        parent=self.settings.staging_dir,
                    )
                )
            except OSError as exc:  # the disk or the pack directory, not the tests
                name, spec = next(iter(testing.runners.items()))
                suites.append(error_suite(name, spec, f"could not stage the pack: {exc}"))
                return False
            if launch.run_as is not None:
                hand_over(stage.root, launch.run_as)
            for name, spec in testing.runners.items():
                if cancel is not None and cancel.is_set():
                    return True
                suite, ending = self._run_one(name, spec, stage, manifest, python, launch, cancel)
                suites.append(suite)
                if ending is Ending.CANCELLED:
                    return True
        return False

    def _run_one(
        self,
        name: str,
        spec: RunnerSpec,
        stage: Stage,
        manifest: PackManifest,
        python: _Interpreter,
        launch: Launch,
        cancel: threading.Event | None,
    ) -> tuple[TestSuiteResult, Ending | None]:
        from attuned.testing.results_files import ResultFiles
        from attuned.testing.runners import RUNNERS, RunnerJob
        from attuned.testing.suites import error_suite

        job = RunnerJob(
            name=name,
            spec=spec,
            workdir=stage.pack,
            report_dir=stage.reports,
            python=python.path,
        )
        if not job.entry_point.exists():
            return error_suite(
                name, spec, f"entry point {spec.entry_point} is not in the pack"
            ), None
        try:
            result_files = ResultFiles.watch(stage.pack, manifest.testing)
        except ValueError as exc:
            return error_suite(name, spec, str(exc)), None
        command = RUNNERS[spec.type].command(job)
        timeout = self._timeout(spec)
        outcome = self._launch(command.argv, stage, manifest, python, launch, cancel, timeout)
        suite = self._suite_of(name, spec, command, outcome, timeout, result_files)
        return suite, outcome.ending

    def _launch(
        self,
        argv: list[str],
        stage: Stage,
        manifest: PackManifest,
        python: _Interpreter,
        launch: Launch,
        cancel: threading.Event | None,
        timeout: float,
    ) -> ProcessOutcome:
        """Run one runner's command in the staged pack, scrubbed and limited (and sandboxed
        when `launch` says so), and report it as if there were no sandbox."""
        from attuned.testing.environment import scrubbed_environment
        from attuned.testing.limits import child_setup
        from attuned.testing.process import run_process

        if launch.sandboxed:
            argv = self._sandboxed(argv, stage, python, launch)
        outcome = run_process(
            argv,
            cwd=stage.pack,
            env=scrubbed_environment(
                self.settings,
                pack_ref=manifest.ref,
                pack_version=manifest.version,
                pack_dir=stage.pack,
                home=stage.home,
                tmpdir=stage.tmp,
                environment=python.environment,
            ),
            timeout=timeout,
            kill_grace=self.settings.kill_grace,
            capture_limit=self.settings.parse_limit_mib * _MIB,
            preexec_fn=child_setup(self.settings.limits, launch.run_as),
            cancel=cancel,
            spare_leader_from_term=launch.sandboxed,
        )
        if launch.sandboxed:
            outcome = unwrap_sandbox(outcome)
        return outcome

    def _sandboxed(
        self, argv: list[str], stage: Stage, python: _Interpreter, launch: Launch
    ) -> list[str]:
        from attuned.testing.sandbox import bwrap_argv, readable_roots

        return bwrap_argv(
            argv,
            cwd=stage.pack,
            writable=(stage.root,),
            hidden=self.hidden_paths,
            readable=readable_roots(self.settings, python.path, self.settings.python),
            revealed=(python.environment.root,) if python.environment else (),
            run_as=launch.run_as,
        )

    def _suite_of(
        self,
        name: str,
        spec: RunnerSpec,
        command: RunnerCommand,
        outcome: ProcessOutcome,
        timeout: float,
        result_files: ResultFiles,
    ) -> TestSuiteResult:
        """The suite one runner's run amounts to, read from its output and result files."""
        from attuned.testing.formats import RunnerOutput
        from attuned.testing.suites import suite_from_run

        output = RunnerOutput(
            runner_name=name,
            stdout=outcome.stdout.text(),
            stderr=outcome.stderr.text(),
            exit_code=outcome.exit_code,
            report=command.report,
            result_files=result_files.written(),
            read_limit=self.settings.parse_limit_mib * _MIB,
        )
        return suite_from_run(
            name,
            spec,
            command,
            outcome,
            timeout=timeout,
            output=output,
            output_limit=self.settings.output_limit_kib * _KIB,
        )

    def _timeout(self, spec: RunnerSpec) -> float:
        """The runner's own timeout, or the operator's default when it set none; never above
        the operator's cap."""
        wanted = (
            spec.timeout if "timeout" in spec.model_fields_set else self.settings.default_timeout
        )
        return min(wanted, self.settings.timeout_cap)


_SIGNAL_BASE = 128  # bwrap exits 128 + n when its command was killed by signal n


def unwrap_sandbox(outcome: ProcessOutcome) -> ProcessOutcome:
    """Report what bwrap reports in its own way as if there were no bwrap: its failure to
    start the command (exit 1, one `bwrap: ` line) as not started, and a signal death, which
    it passes on as exit code 128 + n like a shell, as the signal, so that limits are named
    (a test exiting 152 on purpose reads as SIGXCPU, the same ambiguity as in a shell)."""
    from attuned.testing.process import Ending

    code = outcome.returncode
    stderr = outcome.stderr.text()
    if code == 1 and stderr.startswith("bwrap: ") and stderr.count("\n") <= 1:
        return dataclasses.replace(
            outcome, ending=Ending.NOT_STARTED, start_error=stderr.strip().removeprefix("bwrap: ")
        )
    if (
        outcome.ending is Ending.EXITED
        and code is not None
        and _SIGNAL_BASE < code <= _SIGNAL_BASE + 64
    ):
        return dataclasses.replace(outcome, returncode=-(code - _SIGNAL_BASE))
    return outcome


def _gate(
    testing: TestingSection | None,
    suites: list[TestSuiteResult],
    no_tests_reason: str | None,
    *,
    cancelled: bool,
) -> GateDecision:
    """The gate's verdict on the suites; a cancelled run never passes it."""
    gate = decide_gate(
        testing,
        total=sum(s.total for s in suites),
        passed=sum(s.passed for s in suites),
        failed=sum(s.failed for s in suites),
        skipped=sum(s.skipped for s in suites),
        no_tests_reason=no_tests_reason or "no tests were executed",
        runner_errors=tuple(
            f"{suite.name}: {case.error_message or case.name}"
            for suite in suites
            for case in suite.test_cases
            if case.status is CaseStatus.ERROR
        ),
    )
    if cancelled:
        gate = gate.model_copy(
            update={"passed": False, "reason": f"test run was cancelled; {gate.reason}"}
        )
    return gate


def _why_nothing_runs(testing: TestingSection | None) -> str | None:
    if testing is None:
        return "no tests were executed: pack.yaml has no testing section"
    if not testing.enabled:
        return "no tests were executed: testing.enabled is false"
    if not testing.runners:
        return "no tests were executed: testing.runners is empty"
    return None
