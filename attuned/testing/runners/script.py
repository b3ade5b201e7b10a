"""`script`: any program in the pack, started by its shebang, /bin/sh or bash."""

from __future__ import annotations

from attuned.testing.runners.base import RunnerCommand, RunnerJob, launch_argv


class ScriptRunner:
    def command(self, job: RunnerJob) -> RunnerCommand:
        return RunnerCommand(argv=[*launch_argv(job.entry_point), *job.spec.args])
