"""`pytest`: `python -m pytest` with a JUnit XML report requested, so that counts are per
test case even when the pack keeps the default `simple` format."""

from __future__ import annotations

from attuned.testing.formats.junit import JUnitFormat
from attuned.testing.runners.base import RunnerCommand, RunnerJob, private_report_dir

_NO_TESTS_COLLECTED = 5


class PytestRunner:
    def command(self, job: RunnerJob) -> RunnerCommand:
        report = private_report_dir(job.report_dir, "pytest-") / "junit.xml"
        return RunnerCommand(
            argv=[
                job.python,
                "-m",
                "pytest",
                job.spec.entry_point,
                f"--junitxml={report}",
                "-p",
                "no:cacheprovider",
                *job.spec.args,
            ],
            report=report,
            native_format=JUnitFormat(),
            no_tests_exit_codes=frozenset({_NO_TESTS_COLLECTED}),
        )
