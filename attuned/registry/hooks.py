"""The cluster's duties inside the registry's transactions, as hooks the registry calls.

The registry sits below the cluster: it cannot know about leadership or followers, so the
cluster hands it these callables instead (a single node keeps the defaults, which do
nothing).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlmodel import Session

from attuned.store.repository import RegisteredPack


def _nothing(*_args: Any) -> None:
    return None


@dataclass(frozen=True)
class CommitHooks:
    """Cluster duties inside the registry's transactions (a leader's, on PostgreSQL): check
    leadership right before each commit, store the pack's content and announce the change
    in the same transaction, so followers never see a pack row without its content."""

    before_commit: Callable[[Session], None] = _nothing
    pack_committed: Callable[[Session, RegisteredPack, Path], None] = _nothing
    pack_removed: Callable[[Session, str], None] = _nothing
