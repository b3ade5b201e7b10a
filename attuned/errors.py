"""Errors that reach the operator: each names where the problem is, so it can be fixed."""

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
