"""`unittest`: what `python -m unittest -v` runs, on a test file or, when the entry point is
a directory, by discovery; started through a small script (unittest_report.py) that also
writes each case's outcome from unittest's own result object into a private JSON report."""

from __future__ import annotations

import shutil
from pathlib import Path

from attuned.testing.formats.unittest_json import UnittestJsonFormat
from attuned.testing.runners.base import RunnerCommand, RunnerJob, private_report_dir

_NO_TESTS_RAN = 5  # Python 3.12+
_HELPER = Path(__file__).with_name("unittest_report.py")  # run, never imported


class UnittestRunner:
    def command(self, job: RunnerJob) -> RunnerCommand:
        entry = job.spec.entry_point
        # Without -t the start directory is the top level: it need not be a package.
        target = ["discover", "-v", "-s", entry] if job.entry_point.is_dir() else ["-v", entry]
        # The script is copied into the staged run: attuned's own files may be out of the
        # sandbox's sight (an installation under /home), the staged copy never is.
        directory = private_report_dir(job.report_dir, "unittest-")
        helper = Path(shutil.copy(_HELPER, directory / _HELPER.name))
        report = directory / "unittest.json"
        return RunnerCommand(
            argv=[job.python, str(helper), str(report), *target, *job.spec.args],
            report=report,
            native_format=UnittestJsonFormat(),
            no_tests_exit_codes=frozenset({_NO_TESTS_RAN}),
        )
