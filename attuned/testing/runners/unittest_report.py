"""Not imported by attuned: a script the unittest runner copies next to its report and starts
with the pack's interpreter, inside the sandbox. It runs exactly what `python -m unittest`
would run, and prints the same, but its result object also records every case's outcome;
when the run ends, they are written as JSON for attuned to read. Counting from unittest's own
result object, not its text, keeps counts right when tests print, use subtests or expect
failures.

    python unittest_report.py REPORT.json [unittest arguments...]

The standard library only, in syntax that old interpreters accept: the pack's may be older
than attuned's.
"""

from __future__ import annotations

import json
import os
import sys
import time
import unittest
from typing import Any

FORMAT = "attuned-unittest/1"
_MESSAGE_LIMIT = 4096  # per case: a report stays small however long the tracebacks
_MESSAGE_HEAD = 1024  # of a longer message: where it failed, and the exception at its end
_report_path = ""  # set by main() before the run


class RecordingResult(unittest.TextTestResult):
    """unittest's verbose text result that also keeps one record per case."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cases: list[dict[str, Any]] = []
        self._started = time.monotonic()

    def startTest(self, test: unittest.TestCase) -> None:
        self._started = time.monotonic()
        super().startTest(test)

    def addSuccess(self, test: unittest.TestCase) -> None:
        super().addSuccess(test)
        self._record(test, "passed")

    def addFailure(self, test: unittest.TestCase, err: Any) -> None:
        super().addFailure(test, err)
        self._record(test, "failed", self._traceback(err, test))

    def addError(self, test: unittest.TestCase, err: Any) -> None:
        super().addError(test, err)  # also setUpClass/import errors, as unittest names them
        self._record(test, "error", self._traceback(err, test))

    def addSkip(self, test: unittest.TestCase, reason: str) -> None:
        super().addSkip(test, reason)
        self._record(test, "skipped", "skipped: " + reason if reason else "skipped")

    def addExpectedFailure(self, test: unittest.TestCase, err: Any) -> None:
        super().addExpectedFailure(test, err)  # unittest counts it as a success
        message = "expected failure: " + self._traceback(err, test)
        self._record(test, "passed", message)

    def addUnexpectedSuccess(self, test: unittest.TestCase) -> None:
        super().addUnexpectedSuccess(test)
        message = "unexpected success: the test is marked expectedFailure but passed"
        self._record(test, "failed", message)

    def addSubTest(self, test: unittest.TestCase, subtest: unittest.TestCase, err: Any) -> None:
        """A failing subtest is a case of its own; passing ones are not (their test passes
        as one case when all of them pass)."""
        super().addSubTest(test, subtest, err)
        if err is not None:
            status = "failed" if issubclass(err[0], test.failureException) else "error"
            self._record(subtest, status, self._traceback(err, test), timed=False)

    def _traceback(self, err: Any, test: unittest.TestCase) -> str:
        """As unittest prints it: without its own frames, with output captured by -b."""
        return str(self._exc_info_to_string(err, test))  # type: ignore[attr-defined]

    def _record(
        self, test: unittest.TestCase, status: str, message: str | None = None, timed: bool = True
    ) -> None:
        elapsed = time.monotonic() - self._started if timed else 0.0
        self.cases.append(
            {
                "name": test.id(),
                "status": status,
                "duration_ms": max(0, round(elapsed * 1000)),
                "error_message": _shortened(message.strip()) if message else None,
            }
        )


def _shortened(message: str) -> str:
    if len(message) <= _MESSAGE_LIMIT:
        return message
    tail = _MESSAGE_LIMIT - _MESSAGE_HEAD
    return message[:_MESSAGE_HEAD] + "\n[...]\n" + message[-tail:]


class RecordingRunner(unittest.TextTestRunner):
    """The text runner, writing the report once the whole run has finished: a report that
    exists is a complete run."""

    resultclass = RecordingResult

    def run(self, test: Any) -> Any:
        result = super().run(test)
        assert isinstance(result, RecordingResult)
        _write_report(result)
        return result


def _write_report(result: RecordingResult) -> None:
    document = {"format": FORMAT, "tests_run": result.testsRun, "test_cases": result.cases}
    partial = _report_path + ".partial"
    with open(partial, "w", encoding="utf-8") as handle:
        json.dump(document, handle)
    os.replace(partial, _report_path)  # never a half-written report


def main() -> None:
    global _report_path
    _report_path = sys.argv[1]
    sys.argv = ["python -m unittest", *sys.argv[2:]]
    sys.path[0] = os.getcwd()  # as `python -m` has it, not this script's directory
    unittest.main(module=None, testRunner=RecordingRunner)


if __name__ == "__main__":
    main()
