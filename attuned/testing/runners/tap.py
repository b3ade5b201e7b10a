"""`tap`: any executable whose stdout is TAP, started like a script; read as TAP unless the
pack chose another format."""

from __future__ import annotations

from attuned.testing.formats.tap import TapFormat
from attuned.testing.runners.base import RunnerCommand, RunnerJob, launch_argv


class TapRunner:
    def command(self, job: RunnerJob) -> RunnerCommand:
        return RunnerCommand(
            argv=[*launch_argv(job.entry_point), *job.spec.args], native_format=TapFormat()
        )
