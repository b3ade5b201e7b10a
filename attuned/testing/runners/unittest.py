"""`unittest`: `python -m unittest -v` on a test file, or discovery when the entry point is
a directory. Read from unittest's own summary unless the pack chose another format."""

from __future__ import annotations

from attuned.testing.formats.unittest_text import UnittestTextFormat
from attuned.testing.runners.base import RunnerCommand, RunnerJob

_NO_TESTS_RAN = 5  # Python 3.12+


class UnittestRunner:
    def command(self, job: RunnerJob) -> RunnerCommand:
        entry = job.spec.entry_point
        # Without -t the start directory is the top level: it need not be a package.
        target = ["discover", "-v", "-s", entry] if job.entry_point.is_dir() else ["-v", entry]
        return RunnerCommand(
            argv=[job.python, "-m", "unittest", *target, *job.spec.args],
            native_format=UnittestTextFormat(),
            no_tests_exit_codes=frozenset({_NO_TESTS_RAN}),
        )
