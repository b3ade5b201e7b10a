"""The event outbox: events written inside the transaction of the change they report, and
their deliveries, one per sink whose filter takes the event.

Everything the dispatcher knows lives in these rows, so a restart resumes where it stopped.
Order is kept per subject (one pack, one source): a delivery waits while an earlier one of
its subject is pending for the same sink. This module only reads and writes rows; when to
retry and what a sink answered is the dispatcher's business (`attuned.notify`). Here:
writing events, the stored event, each sink's counts and the upkeep; the dispatcher's
queue is `attuned.store.delivery_queue`, the operators' listing and redelivery
`attuned.store.outbox_admin`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, bindparam, delete, func, insert, select, update
from sqlmodel import Session

from attuned.store.models import (
    OUTBOX_DELIVERY,
    OUTBOX_EVENT,
    aware,
    utcnow,
)

PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"

_E = OUTBOX_EVENT.c
_D = OUTBOX_DELIVERY.c

_NAMESPACE = uuid.UUID("5b0c9a5e-3a51-4f3e-9c1e-6d1f5f0a7e21")  # attuned's event ids


def stable_id(*parts: str) -> str:
    """The same id for the same condition (a pack blocked for the same reason, say), so a
    restart that reports it again writes nothing new."""
    return str(uuid.uuid5(_NAMESPACE, "\x1f".join(parts)))


@dataclass(frozen=True)
class EventRecord:
    """One event as the outbox stores it. `data` is the event's payload (JSON values)."""

    name: str
    severity: str
    subject: str
    data: dict[str, Any]
    ref: str | None = None
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    at: datetime = field(default_factory=utcnow)


Route = Callable[[EventRecord], bool]


@dataclass
class Outbox:
    """Where the registry and the daemon put events: `routes` maps each configured sink to
    its filter (a delivery row is made for each sink that takes the event); `node` names
    this host in every event."""

    routes: Mapping[str, Route] = field(default_factory=dict)
    node: str = ""

    def add(self, session: Session, record: EventRecord) -> bool:
        """Write `record` and its deliveries in the caller's transaction; False when an
        event with its id exists already (a condition reported again)."""
        return add(session.connection(), record, self.routes, self.node)


# built once: most of an insert's cost was SQLAlchemy building the statement again
_EVENT_EXISTS = select(_E.seq).where(_E.id == bindparam("event_id"))
_INSERT_EVENT = insert(OUTBOX_EVENT).returning(_E.seq)
_INSERT_DELIVERY = insert(OUTBOX_DELIVERY)


def add(
    connection: Connection, record: EventRecord, routes: Mapping[str, Route], node: str
) -> bool:
    if connection.execute(_EVENT_EXISTS, {"event_id": record.id}).first() is not None:
        return False
    seq = connection.execute(
        _INSERT_EVENT,
        {
            "id": record.id,
            "name": record.name,
            "severity": record.severity,
            "subject": record.subject,
            "ref": record.ref,
            "node": node,
            "data": record.data,
            "created_at": record.at,
        },
    ).scalar_one()
    sinks = [name for name, takes in routes.items() if takes(record)]
    if sinks:
        connection.execute(
            _INSERT_DELIVERY,
            [
                {
                    "event_seq": seq,
                    "sink": sink,
                    "subject": record.subject,
                    "state": PENDING,
                    "attempts": 0,
                    "next_attempt_at": record.at,
                }
                for sink in sinks
            ],
        )
    return True


# -- stored events, as the dispatcher and the operators read them -----------------------------


@dataclass(frozen=True)
class StoredEvent:
    seq: int
    id: str
    name: str
    severity: str
    subject: str
    ref: str | None
    node: str
    data: dict[str, Any]
    created_at: datetime


def stored_event(row: Any) -> StoredEvent:
    """An `outbox_event` row (or a joined row with its columns) as a StoredEvent."""
    return StoredEvent(
        seq=row.seq,
        id=row.id,
        name=row.name,
        severity=row.severity,
        subject=row.subject,
        ref=row.ref,
        node=row.node,
        data=dict(row.data or {}),
        created_at=aware(row.created_at),
    )


# -- the state of each sink (the status and the dispatcher report it) -------------------------


@dataclass(frozen=True)
class SinkCounts:
    pending: int = 0
    delivered: int = 0
    dead: int = 0
    last_error: str | None = None
    last_error_at: datetime | None = None
    last_delivered_at: datetime | None = None


def counts(session: Session) -> dict[str, SinkCounts]:
    """Per sink: deliveries in each state, the newest error and the newest delivery."""
    connection = session.connection()
    tally: dict[str, dict[str, int]] = {}
    for sink, state, count in connection.execute(
        select(_D.sink, _D.state, func.count()).group_by(_D.sink, _D.state)
    ):
        tally.setdefault(sink, {})[state] = count
    delivered_at: dict[str, datetime | None] = {
        sink: at
        for sink, at in connection.execute(
            select(_D.sink, func.max(_D.delivered_at)).group_by(_D.sink)
        )
    }
    errors: dict[str, tuple[str, datetime]] = {}
    newest_error = (
        select(_D.sink, func.max(_D.last_attempt_at).label("at"))
        .where(_D.last_error.is_not(None))
        .group_by(_D.sink)
        .subquery()
    )
    for sink, error, at in connection.execute(
        select(_D.sink, _D.last_error, _D.last_attempt_at).join(
            newest_error,
            and_(_D.sink == newest_error.c.sink, _D.last_attempt_at == newest_error.c.at),
        )
    ):
        errors[sink] = (error, aware(at))
    return {
        sink: SinkCounts(
            pending=tally.get(sink, {}).get(PENDING, 0),
            delivered=tally.get(sink, {}).get(DELIVERED, 0),
            dead=tally.get(sink, {}).get(DEAD, 0),
            last_error=errors[sink][0] if sink in errors else None,
            last_error_at=errors[sink][1] if sink in errors else None,
            last_delivered_at=aware(delivered_at.get(sink)),
        )
        for sink in set(tally) | set(delivered_at)
    }


# -- upkeep: removed sinks and old events -----------------------------------------------------


def any_before(session: Session, before: datetime) -> bool:
    """Whether any event is older than `before` (one indexed read)."""
    found = session.connection().execute(select(_E.seq).where(_E.created_at < before).limit(1))
    return found.first() is not None


def orphaned(session: Session, sinks: set[str]) -> list[str]:
    """Sinks with pending deliveries that are not among `sinks` (removed from the config)."""
    rows = session.connection().execute(
        select(_D.sink).where(_D.state == PENDING, _D.sink.not_in(sinks)).distinct()
    )
    return sorted(str(sink) for (sink,) in rows)


def bury(session: Session, sinks: list[str], now: datetime) -> int:
    """Mark the pending deliveries of these (removed) sinks dead, saying why."""
    done = 0
    for sink in sinks:
        done += (
            session.connection()
            .execute(
                update(OUTBOX_DELIVERY)
                .where(_D.sink == sink, _D.state == PENDING)
                .values(
                    state=DEAD,
                    last_attempt_at=now,
                    last_error=f"sink {sink!r} is no longer configured",
                )
            )
            .rowcount
        )
    return done


def prune(session: Session, before: datetime) -> int:
    """Forget events older than `before` that nothing waits to deliver (their deliveries go
    with them); returns how many events went."""
    connection = session.connection()
    waiting = select(_D.event_seq).where(_D.state == PENDING)
    return int(
        connection.execute(
            delete(OUTBOX_EVENT).where(_E.created_at < before, _E.seq.not_in(waiting))
        ).rowcount
    )


def event_ids(session: Session) -> list[str]:
    """Every stored event's id, oldest first (tests and the benchmark compare these)."""
    return [str(i) for i in session.connection().scalars(select(_E.id).order_by(_E.seq))]
