"""The outbox as operators handle it (`attuned events`): events listed with their
deliveries, found by id prefix, and queued again."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, and_, insert, or_, select, update
from sqlmodel import Session

from attuned.store.models import OUTBOX_DELIVERY, OUTBOX_EVENT, aware
from attuned.store.outbox import DEAD, PENDING, Route, StoredEvent, stored_event

_E = OUTBOX_EVENT.c
_D = OUTBOX_DELIVERY.c


@dataclass(frozen=True)
class Listed:
    """An event with one of its deliveries (sink None: no sink took it)."""

    event: StoredEvent
    sink: str | None
    state: str | None
    attempts: int
    last_error: str | None
    next_attempt_at: datetime | None
    delivered_at: datetime | None


def listing(
    session: Session,
    *,
    state: str | None = None,
    sink: str | None = None,
    ref: str | None = None,
    limit: int = 100,
) -> list[Listed]:
    """Newest first: events and their deliveries, filtered by delivery state, sink or pack."""
    query = (
        select(
            *OUTBOX_EVENT.c,
            _D.sink.label("d_sink"),
            _D.state.label("d_state"),
            _D.attempts.label("d_attempts"),
            _D.last_error.label("d_error"),
            _D.next_attempt_at.label("d_next"),
            _D.delivered_at.label("d_delivered"),
        )
        .select_from(OUTBOX_EVENT.outerjoin(OUTBOX_DELIVERY, _D.event_seq == _E.seq))
        .order_by(_E.seq.desc(), _D.sink)
        .limit(limit)
    )
    if state is not None:
        query = query.where(_D.state == state)
    if sink is not None:
        query = query.where(_D.sink == sink)
    if ref is not None:
        query = query.where(_E.ref == ref)
    return [
        Listed(
            event=stored_event(row),
            sink=row.d_sink,
            state=row.d_state,
            attempts=row.d_attempts or 0,
            last_error=row.d_error,
            next_attempt_at=aware(row.d_next),
            delivered_at=aware(row.d_delivered),
        )
        for row in session.connection().execute(query)
    ]


def find_events(session: Session, prefixes: Sequence[str]) -> dict[str, list[StoredEvent]]:
    """Each id prefix -> the events whose id starts with it (the CLI shows 8 characters)."""
    connection = session.connection()
    found: dict[str, list[StoredEvent]] = {}
    for prefix in prefixes:
        rows = connection.execute(
            select(*OUTBOX_EVENT.c).where(_E.id.like(prefix.replace("%", "") + "%")).limit(2)
        )
        found[prefix] = [stored_event(row) for row in rows]
    return found


def redeliver(
    session: Session,
    now: datetime,
    *,
    event_seqs: Sequence[int] = (),
    dead: bool = False,
    sink: str | None = None,
    routes: Mapping[str, Route] | None = None,
) -> int:
    """Queue deliveries again (attempts start over): those of `event_seqs`, or every dead
    one; only `sink`'s when given. An event `sink` never had a delivery for gets one
    (`routes` names the sinks that exist). Returns how many deliveries were queued."""
    connection = session.connection()
    conditions: list[ColumnElement[bool]] = []
    if event_seqs:
        conditions.append(_D.event_seq.in_(event_seqs))
    if dead:
        conditions.append(_D.state == DEAD)
    if sink is not None:
        conditions.append(_D.sink == sink)
    queued = connection.execute(
        update(OUTBOX_DELIVERY)
        .where(and_(*conditions) if conditions else or_(False))
        .values(state=PENDING, attempts=0, next_attempt_at=now, last_error=None, delivered_at=None)
    ).rowcount
    if sink is not None and event_seqs and routes is not None and sink in routes:
        have = {
            seq
            for (seq,) in connection.execute(
                select(_D.event_seq).where(_D.event_seq.in_(event_seqs), _D.sink == sink)
            )
        }
        for seq in sorted(set(event_seqs) - have):
            subject = connection.execute(select(_E.subject).where(_E.seq == seq)).scalar_one()
            connection.execute(
                insert(OUTBOX_DELIVERY).values(
                    event_seq=seq,
                    sink=sink,
                    subject=subject,
                    state=PENDING,
                    attempts=0,
                    next_attempt_at=now,
                )
            )
            queued += 1
    return int(queued)
