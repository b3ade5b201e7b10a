"""What every runner type implements: the command that starts its tests."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from attuned.pack.manifest import RunnerSpec
from attuned.testing.formats.base import ResultReader


@dataclass(frozen=True)
class RunnerJob:
    """One runner entry of a pack, ready to start in the staged copy."""

    name: str
    spec: RunnerSpec
    workdir: Path  # the staged copy of the pack; also the working directory
    report_dir: Path  # private, outside the pack: where a runner asks its tool for reports
    python: str  # interpreter for Python-based runners

    @property
    def entry_point(self) -> Path:
        return self.workdir / self.spec.entry_point


@dataclass(frozen=True)
class RunnerCommand:
    argv: list[str]
    report: Path | None = None  # report file the tool was asked to write
    # How to read this tool's own output when the pack keeps the default `simple` format.
    native_format: ResultReader | None = None
    # Exit codes by which the tool says "no tests were collected" rather than "failed".
    no_tests_exit_codes: frozenset[int] = frozenset()


class Runner(Protocol):
    def command(self, job: RunnerJob) -> RunnerCommand: ...


def launch_argv(script: Path) -> list[str]:
    """How to start a script: its shebang when it has one (even without the executable bit,
    which archives and some checkouts lose), else /bin/sh for `.sh` and bash for the rest."""
    shebang = _shebang(script)
    if shebang:
        return [str(script)] if os.access(script, os.X_OK) else [*shebang, str(script)]
    if script.suffix == ".sh":
        return ["/bin/sh", str(script)]
    return ["bash", str(script)]


def _shebang(script: Path) -> list[str]:
    """The interpreter and its single optional argument, split the way Linux does."""
    try:
        with script.open("rb") as handle:
            first = handle.readline(256)
    except OSError:
        return []
    if not first.startswith(b"#!"):
        return []
    return first[2:].decode("utf-8", "replace").strip().split(None, 1)


def private_report_dir(report_dir: Path, prefix: str) -> Path:
    """A directory of a runner's own under `report_dir`, so that one runner never reads
    another's report, owned like `report_dir`: the test process may run as another user
    (`testing.run_as`) and must be able to write its report there."""
    directory = Path(tempfile.mkdtemp(prefix=prefix, dir=report_dir))
    owner = report_dir.stat()
    if (owner.st_uid, owner.st_gid) != (os.getuid(), os.getgid()):
        os.chown(directory, owner.st_uid, owner.st_gid)
    return directory
