"""Errors that reach the operator: each names where the problem is, so it can be fixed.

Every error an operator can see is an `AttunedError`, and its class says what the CLI exits
with (`exit_code`, docs/cli.md); `attuned.cli.main` maps them in one place. The bases live
here; an error that carries one part's data lives beside the code that raises it (path):

    AttunedError                   1  any error an operator can see
    +-- ValidationFailed           2  input not acceptable: file, line and field
    |   +-- ConfigError            2  attuned.yaml
    |   +-- DependencyError        2  a dependency missing or at an unsatisfying version
    |   +-- RevisionError          2  reconcile/inplace.py: `plan --revision` names nothing
    +-- ConflictError              3  already registered, and no --force / --upgrade
    +-- TestsFailed                4  the gate refused the pack: nothing registered
    |   +-- TestsRolledBack        4  registry/verdict.py: with the stored result
    |   +-- EnvironmentNotReady    4  registry/verdict.py: its environment could not be built
    +-- StoreError                 1  the pack store holds files it did not write
    +-- EnvironmentFailed          1  a Python environment could not be built (its log kept)
    +-- RegistrationCancelled      1  registry/verdict.py: the daemon is stopping
    +-- AttuneSchemaMissing        1  store/attune/schema.py: no Attune schema, may not create
    +-- RunNotFound                2  store/runs.py: no test run matches the selector
    +-- SnapshotChanged            1  reconcile/snapshot_copy.py: files changed while copied
    +-- AlreadyRunning             1  reconcile/daemon/statelock.py: the state is held
    +-- NotLeader                  1  cluster/leader.py: this node must not write
    |   +-- FencedOut              1  cluster/leader.py: refused right before COMMIT
    +-- ArchiveTooLarge            1  cluster/archives.py: too big to travel to followers
    +-- ArchiveRejected            1  cluster/archives.py: unsafe or not what its digest says
    +-- NotReady                   2  cli/plan.py: the database is not at this schema
    +-- NoDaemon                   5  cli/daemonlock.py: the verb needs a running daemon

(tests/test_errors.py keeps this tree equal to the classes.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


def _one_line(text: str) -> str:
    """Control characters escaped: a problem is one log line, whatever a hostile file holds."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def headline(exc: BaseException) -> str:
    """An exception as one line for a log field or a status: its first line, or its type
    when it says nothing."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one file: rendered as ``file:line: field: message``."""

    file: Path | None
    message: str
    line: int | None = None
    field: str | None = None

    def __str__(self) -> str:
        where = ""
        if self.file is not None:
            where = str(self.file)
            if self.line is not None:
                where += f":{self.line}"
            where += ": "
        what = f"{self.field}: " if self.field else ""
        return _one_line(f"{where}{what}{self.message}")


class AttunedError(Exception):
    """Base of every error attuned reports; `exit_code` is what the CLI exits with."""

    exit_code = 1
    answered = False  # the verb's --json answer already tells of this error (register, test)


@dataclass
class ValidationFailed(AttunedError):
    """Input (a manifest, a component, a config file) is not acceptable."""

    problems: list[Problem] = field(default_factory=list)
    exit_code = 2

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems) or "validation failed"


class ConfigError(ValidationFailed):
    """The daemon's own configuration file is wrong."""


class ConflictError(AttunedError):
    """The pack is already registered and the caller did not force."""

    exit_code = 3


class DependencyError(ValidationFailed):
    """A declared pack dependency is missing or at an unsatisfying version."""


class TestsFailed(AttunedError):
    """The pack's tests did not pass the gate; registration was rolled back."""

    exit_code = 4
    __test__ = False  # not a pytest class


class StoreError(AttunedError):
    """The pack store's files are not what the store expects (a hand-made directory, say)."""


class EnvironmentFailed(AttunedError):
    """A pack's Python environment could not be prepared; `stdout`/`stderr` hold the build's
    log and `build_exit_code` its tool's exit code (the CLI exits 1, as for any error)."""

    def __init__(
        self,
        message: str,
        *,
        stdout: str = "",
        stderr: str = "",
        build_exit_code: int | None = None,
        cancelled: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.stdout = stdout
        self.stderr = stderr
        self.build_exit_code = build_exit_code
        self.cancelled = cancelled
