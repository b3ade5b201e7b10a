"""What a source is: something that answers "which packs do you want, with what content?"

A source never touches the database. Directory sources (watched folders) and git sources
both return a `ScanResult`; the planner cannot tell them apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from attuned.reconcile.model import Candidate, InvalidCandidate, SourceState


@dataclass(frozen=True)
class ScanResult:
    """One scan of one source. `state.readable` False means: know nothing, prune nothing."""

    state: SourceState
    candidates: tuple[Candidate, ...] = ()
    invalid: tuple[InvalidCandidate, ...] = ()
    revision: str | None = None  # e.g. a git commit sha; None for folders
    stats: dict[str, int] = field(default_factory=dict)  # e.g. {"entries": 3, "snapshots_made": 1}


class Source(Protocol):
    name: str

    def scan(self) -> ScanResult:
        """Read the source now and snapshot every candidate; never raises for bad input."""
        ...
