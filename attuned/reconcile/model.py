"""The values the planner works on: what sources want, what the database has, what failed.

Plain frozen data, no I/O, so that the planner can be a pure function and tested without a
filesystem, a database or a clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path


@dataclass(frozen=True)
class Requirement:
    """A dependency as the planner needs it: a ref and a version range."""

    ref: str
    constraint: str = "*"


@dataclass(frozen=True)
class Candidate:
    """A pack a source wants active, frozen in a content-addressed snapshot."""

    ref: str
    version: str
    digest: str
    source: str
    snapshot: Path
    entry: str = ""  # the folder or archive name inside the source
    source_revision: str | None = None
    requires: tuple[Requirement, ...] = ()
    # a git source's: the tree of `source_revision`, and who signed it ("unsigned
    # (verification off)" when the source does not verify); recorded as provenance
    source_tree: str | None = None
    signer: str | None = None


@dataclass(frozen=True)
class InvalidCandidate:
    """A folder entry that could not be read as a pack; keeps its old version serving."""

    source: str
    entry: str
    digest: str
    problems: tuple[str, ...]
    ref_hint: str | None = None  # the ref, when pack.yaml was readable enough to tell


@dataclass(frozen=True)
class SourceState:
    """Whether a source could be read this pass, and whether it may prune."""

    name: str
    readable: bool
    prune: bool
    error: str | None = None


@dataclass(frozen=True)
class Desired:
    candidates: tuple[Candidate, ...] = ()
    invalid: tuple[InvalidCandidate, ...] = ()
    sources: tuple[SourceState, ...] = ()  # in config order: the first source wins a conflict


@dataclass(frozen=True)
class ActualPack:
    """A registered pack as the database records it."""

    ref: str
    version: str
    digest: str
    source: str | None = None  # None: registered by hand, never pruned
    requires: tuple[Requirement, ...] = ()
    suspended: bool = False


class FailureKind(StrEnum):
    DETERMINISTIC = "deterministic"  # same content fails the same way: wait for new content
    TRANSIENT = "transient"  # database down, disk full, crash: retry with backoff


@dataclass(frozen=True)
class Failure:
    ref: str
    digest: str
    kind: FailureKind
    reason: str
    at: float  # when it happened (seconds since the epoch)
    attempts: int = 1
    retry_at: float = 0.0  # transient: not before this


@dataclass(frozen=True)
class Memory:
    """What earlier passes learnt: failures by ref, and refs operators suspended."""

    failures: dict[str, Failure] = field(default_factory=dict)
    suspended: frozenset[str] = frozenset()


class ActionKind(StrEnum):
    INSTALL = "install"
    UPGRADE = "upgrade"
    REINSTALL = "reinstall"  # same version, new content
    REMOVE = "remove"
    NOOP = "noop"
    BLOCKED = "blocked"
    CONFLICT = "conflict"
    FAILED = "failed"  # a remembered deterministic failure of this very content
    WAIT = "wait"  # a transient failure whose backoff has not elapsed
    SUSPENDED = "suspended"
    KEEP = "keep"  # not desired, but must not be removed (source unreadable, prune off, ...)


CHANGES = frozenset(
    {ActionKind.INSTALL, ActionKind.UPGRADE, ActionKind.REINSTALL, ActionKind.REMOVE}
)


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    ref: str
    reason: str = ""
    candidate: Candidate | None = None
    current_version: str | None = None
    current_digest: str | None = None  # what is served now: a removal's event and status say it
    current_source: str | None = None

    @property
    def changes_something(self) -> bool:
        return self.kind in CHANGES


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...]

    def changes(self) -> list[Action]:
        return [a for a in self.actions if a.changes_something]

    def by_ref(self) -> dict[str, Action]:
        return {a.ref: a for a in self.actions if a.kind is not ActionKind.CONFLICT}
