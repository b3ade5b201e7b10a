"""Keeping the session's objects true after a Core statement wrote their rows: Core writes
go around the ORM, so a copy the session already holds would be read stale."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlmodel import Session


def expire_held(session: Session, kind: type, which: Callable[[Any], bool]) -> None:
    """Expire the objects of `kind` the session holds that `which` picks: rows just written
    by a Core statement must not be read from a stale copy."""
    for held in list(session.identity_map.values()):
        if isinstance(held, kind) and which(held):
            session.expire(held)
