"""`unittest`: what `python -m unittest -v` runs, on a test file or, when the entry point is
a directory, by discovery; started through a small script (unittest_report.py) that also
writes each case's outcome from unittest's own result object into a private JSON report."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from attuned.testing.formats.unittest_json import UnittestJsonFormat
from attuned.testing.runners.base import RunnerCommand, RunnerJob

_NO_TESTS_RAN = 5  # Python 3.12+
_HELPER = Path(__file__).with_name("unittest_report.py")  # run, never imported


class UnittestRunner:
    def command(self, job: RunnerJob) -> RunnerCommand:
        entry = job.spec.entry_point
        # Without -t the start directory is the top level: it need not be a package.
        target = ["discover", "-v", "-s", entry] if job.entry_point.is_dir() else ["-v", entry]
        # The script is copied into the staged run: attuned's own files may be out of the
        # sandbox's sight (an installation under /home), the staged copy never is.
        directory = _private_directory(job.report_dir)
        helper = Path(shutil.copy(_HELPER, directory / _HELPER.name))
        report = directory / "unittest.json"
        return RunnerCommand(
            argv=[job.python, str(helper), str(report), *target, *job.spec.args],
            report=report,
            native_format=UnittestJsonFormat(),
            no_tests_exit_codes=frozenset({_NO_TESTS_RAN}),
        )


def _private_directory(report_dir: Path) -> Path:
    """A directory of its own, so that one runner never reads another's report, owned like
    `report_dir`: the test process may run as another user (`testing.run_as`) and must
    write its report there."""
    directory = Path(tempfile.mkdtemp(prefix="unittest-", dir=report_dir))
    owner = report_dir.stat()
    if (owner.st_uid, owner.st_gid) != (os.getuid(), os.getgid()):
        os.chown(directory, owner.st_uid, owner.st_gid)
    return directory
