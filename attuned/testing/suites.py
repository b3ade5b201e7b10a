"""Turn one finished runner process into a TestSuiteResult: read its results in the
configured format, then add an `error` case for whatever went wrong with the process itself."""

from __future__ import annotations

import signal

from attuned.pack.manifest import ResultFormat, RunnerSpec
from attuned.results import CaseStatus, TestCaseResult, TestSuiteResult
from attuned.testing.formats import FORMATS, ResultFormatError, RunnerOutput, SuiteReading
from attuned.testing.process import Ending, ProcessOutcome
from attuned.testing.runners import RunnerCommand


def suite_from_run(
    name: str,
    spec: RunnerSpec,
    command: RunnerCommand,
    outcome: ProcessOutcome,
    *,
    timeout: float,
    output: RunnerOutput,
    output_limit: int,
) -> TestSuiteResult:
    reading: SuiteReading | None = None
    unreadable: str | None = None
    if outcome.ending is not Ending.NOT_STARTED:
        try:
            reading = _read(spec, command, output)
        except ResultFormatError as exc:
            unreadable = f"could not read {spec.result_format.value} results: {exc}"
    problem = _process_problem(outcome, command, timeout, reading) or unreadable
    cases = list(reading.cases) if reading else []
    total, passed, failed, skipped = (
        (reading.total, reading.passed, reading.failed, reading.skipped)
        if reading
        else (0, 0, 0, 0)
    )
    duration_ms = round(outcome.duration * 1000)
    if problem:
        cases.append(
            TestCaseResult(
                name=name, status=CaseStatus.ERROR, duration_ms=duration_ms, error_message=problem
            )
        )
        total, failed = total + 1, failed + 1
    return TestSuiteResult(
        name=name,
        runner_type=spec.type.value,
        total=total,
        passed=passed,
        failed=failed,
        skipped=skipped,
        duration_ms=duration_ms,
        test_cases=cases,
        exit_code=outcome.returncode,
        stdout=outcome.stdout.text(output_limit) or None,
        stderr=outcome.stderr.text(output_limit) or None,
    )


def error_suite(name: str, spec: RunnerSpec, message: str) -> TestSuiteResult:
    """A runner that never started: one `error` case saying why."""
    case = TestCaseResult(name=name, status=CaseStatus.ERROR, error_message=message)
    return TestSuiteResult(
        name=name,
        runner_type=spec.type.value,
        total=1,
        passed=0,
        failed=1,
        skipped=0,
        duration_ms=0,
        test_cases=[case],
    )


def _read(spec: RunnerSpec, command: RunnerCommand, output: RunnerOutput) -> SuiteReading:
    """With the default `simple` format, a runner's own report (pytest's JUnit XML, TAP,
    unittest's summary) is read first: it has per-test counts that Attune's lines lack."""
    readers = [FORMATS[spec.result_format]]
    if spec.result_format is ResultFormat.SIMPLE and command.native_format is not None:
        readers.insert(0, command.native_format)
    for reader in readers[:-1]:
        try:
            return reader.read(output)
        except ResultFormatError:
            continue
    return readers[-1].read(output)


def _process_problem(
    outcome: ProcessOutcome,
    command: RunnerCommand,
    timeout: float,
    reading: SuiteReading | None,
) -> str | None:
    """Why the process itself failed, if it did."""
    if outcome.ending is Ending.NOT_STARTED:
        return f"could not start {command.argv[0]}: {outcome.start_error}"
    if outcome.ending is Ending.TIMED_OUT:
        return f"timed out after {timeout:g} s"
    if outcome.ending is Ending.CANCELLED:
        return "cancelled before it finished"
    if outcome.signal is not None:
        return f"killed by signal {describe_signal(outcome.signal)}"
    code = outcome.returncode
    if (
        code
        and reading is not None
        and reading.failed == 0
        and code not in command.no_tests_exit_codes
    ):
        return f"exited with code {code} although its results report no failure"
    return None


_LIMIT_SIGNALS = {signal.SIGXCPU: "CPU time limit", signal.SIGXFSZ: "file size limit"}


def describe_signal(number: int) -> str:
    try:
        sig = signal.Signals(number)
    except ValueError:
        return str(number)
    why = _LIMIT_SIGNALS.get(sig)
    return f"{sig.name} ({number}{', ' + why if why else ''})"
