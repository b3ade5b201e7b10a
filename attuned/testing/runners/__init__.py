"""Runner types, one module each; adding one = a module and a line in RUNNERS."""

from __future__ import annotations

from attuned.pack.manifest import RunnerType
from attuned.testing.runners.base import Runner, RunnerCommand, RunnerJob
from attuned.testing.runners.pytest import PytestRunner
from attuned.testing.runners.script import ScriptRunner
from attuned.testing.runners.tap import TapRunner
from attuned.testing.runners.unittest import UnittestRunner

RUNNERS: dict[RunnerType, Runner] = {
    RunnerType.SCRIPT: ScriptRunner(),
    RunnerType.UNITTEST: UnittestRunner(),
    RunnerType.PYTEST: PytestRunner(),
    RunnerType.TAP: TapRunner(),
}

__all__ = ["RUNNERS", "Runner", "RunnerCommand", "RunnerJob"]
