"""Suspended packs: the refs an operator told attuned to leave alone until resumed."""

from __future__ import annotations

from sqlmodel import Session, select

from attuned.store.models import PackSuspension


def suspended_refs(session: Session) -> dict[str, PackSuspension]:
    return {s.ref: s for s in session.exec(select(PackSuspension)).all()}


def suspend(session: Session, ref: str, reason: str) -> bool:
    """Mark `ref` suspended; False when it already was."""
    if session.get(PackSuspension, ref) is not None:
        return False
    session.add(PackSuspension(ref=ref, reason=reason))
    return True


def resume(session: Session, ref: str) -> bool:
    """Lift a suspension; False when `ref` was not suspended."""
    found = session.get(PackSuspension, ref)
    if found is None:
        return False
    session.delete(found)
    return True
