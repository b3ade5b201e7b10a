"""The dispatcher's side of the outbox: the deliveries a sink may attempt now, in order per
subject, and the verdicts of its attempts stored back.

When to retry and what a sink answered is the dispatcher's business (`attuned.notify`);
this module only reads and writes the delivery rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, func, select, update
from sqlmodel import Session

from attuned.store.models import OUTBOX_DELIVERY, OUTBOX_EVENT
from attuned.store.outbox import DELIVERED, PENDING, StoredEvent, stored_event

_E = OUTBOX_EVENT.c
_D = OUTBOX_DELIVERY.c


@dataclass(frozen=True)
class Queued:
    """A pending delivery with its event, ready to send."""

    delivery_id: int
    sink: str
    subject: str
    attempts: int
    event: StoredEvent


def queue(session: Session, sink: str, now: datetime, limit: int = 200) -> list[Queued]:
    """The deliveries `sink` may attempt now, oldest first: for each subject whose oldest
    pending delivery is due, that one and the pending ones after it (each to be sent only
    if the one before it was delivered)."""
    connection = session.connection()
    heads = (
        select(_D.subject, func.min(_D.event_seq).label("head"))
        .where(_D.sink == sink, _D.state == PENDING)
        .group_by(_D.subject)
        .subquery()
    )
    due_subjects = [
        subject
        for (subject,) in connection.execute(
            select(heads.c.subject)
            .join(OUTBOX_DELIVERY, and_(_D.event_seq == heads.c.head, _D.sink == sink))
            .where(_D.next_attempt_at <= now)
            .order_by(heads.c.head)
            .limit(limit)
        )
    ]
    if not due_subjects:
        return []
    rows = connection.execute(
        select(
            *OUTBOX_EVENT.c,
            _D.id.label("delivery_id"),
            _D.attempts.label("delivery_attempts"),
        )
        .join(OUTBOX_EVENT, _E.seq == _D.event_seq)
        .where(_D.sink == sink, _D.state == PENDING, _D.subject.in_(due_subjects))
        .order_by(_D.event_seq)
        .limit(limit)
    ).all()
    return [
        Queued(
            delivery_id=row.delivery_id,
            sink=sink,
            subject=row.subject,
            attempts=row.delivery_attempts,
            event=stored_event(row),
        )
        for row in rows
    ]


@dataclass(frozen=True)
class Verdict:
    """What became of one attempt: the delivery's new state and, while pending, when to try
    again."""

    delivery_id: int
    state: str
    at: datetime
    error: str | None = None
    retry_at: datetime | None = None


def record(session: Session, verdicts: Iterable[Verdict]) -> None:
    """Store the verdicts of a batch of attempts: one statement per kind of verdict, run
    for all of its rows (one UPDATE per row was most of the dispatcher's database time)."""
    groups: dict[tuple[bool, bool], list[dict[str, Any]]] = {}
    for verdict in verdicts:
        delivered = verdict.state == DELIVERED
        retried = verdict.retry_at is not None
        row = {
            "b_id": verdict.delivery_id,
            "b_state": verdict.state,
            "b_at": verdict.at,
            "b_error": verdict.error,
        }
        if retried:
            row["b_retry_at"] = verdict.retry_at
        groups.setdefault((delivered, retried), []).append(row)
    connection = session.connection()
    for (delivered, retried), rows in groups.items():
        values: dict[str, Any] = {
            "state": bindparam("b_state"),
            "attempts": _D.attempts + 1,
            "last_attempt_at": bindparam("b_at"),
            "last_error": bindparam("b_error"),
        }
        if delivered:
            values["delivered_at"] = bindparam("b_at")
        if retried:
            values["next_attempt_at"] = bindparam("b_retry_at")
        statement = (
            update(OUTBOX_DELIVERY)
            .where(_D.id == bindparam("b_id"), _D.state == PENDING)
            .values(**values)
        )
        connection.execute(statement, rows)
