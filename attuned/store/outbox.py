"""The event outbox: events written inside the transaction of the change they report, and
their deliveries, one per sink whose filter takes the event.

Everything the dispatcher knows lives in these rows, so a restart resumes where it stopped.
Order is kept per subject (one pack, one source): a delivery waits while an earlier one of
its subject is pending for the same sink. This module only reads and writes rows; when to
retry and what a sink answered is the dispatcher's business (`attuned.notify`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, bindparam, delete, func, insert, or_, select, update
from sqlmodel import Session

from attuned.store.models import OutboxDelivery, OutboxEvent, aware, utcnow

PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"

_events = OutboxEvent.__table__  # type: ignore[attr-defined]
_deliveries = OutboxDelivery.__table__  # type: ignore[attr-defined]
_E = _events.c
_D = _deliveries.c

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
_INSERT_EVENT = insert(_events).returning(_E.seq)
_INSERT_DELIVERY = insert(_deliveries)


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


# -- the dispatcher's side -------------------------------------------------------------------


@dataclass(frozen=True)
class Queued:
    """A pending delivery with its event, ready to send."""

    delivery_id: int
    sink: str
    subject: str
    attempts: int
    event: StoredEvent


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


def _stored(row: Any) -> StoredEvent:
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
            .join(_deliveries, and_(_D.event_seq == heads.c.head, _D.sink == sink))
            .where(_D.next_attempt_at <= now)
            .order_by(heads.c.head)
            .limit(limit)
        )
    ]
    if not due_subjects:
        return []
    rows = connection.execute(
        select(
            *_events.c,
            _D.id.label("delivery_id"),
            _D.attempts.label("delivery_attempts"),
        )
        .join(_events, _E.seq == _D.event_seq)
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
            event=_stored(row),
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
            update(_deliveries)
            .where(_D.id == bindparam("b_id"), _D.state == PENDING)
            .values(**values)
        )
        connection.execute(statement, rows)


# -- what operators ask ----------------------------------------------------------------------


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
            *_events.c,
            _D.sink.label("d_sink"),
            _D.state.label("d_state"),
            _D.attempts.label("d_attempts"),
            _D.last_error.label("d_error"),
            _D.next_attempt_at.label("d_next"),
            _D.delivered_at.label("d_delivered"),
        )
        .select_from(_events.outerjoin(_deliveries, _D.event_seq == _E.seq))
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
            event=_stored(row),
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
            select(*_events.c).where(_E.id.like(prefix.replace("%", "") + "%")).limit(2)
        )
        found[prefix] = [_stored(row) for row in rows]
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
    conditions = []
    if event_seqs:
        conditions.append(_D.event_seq.in_(event_seqs))
    if dead:
        conditions.append(_D.state == DEAD)
    if sink is not None:
        conditions.append(_D.sink == sink)
    queued = connection.execute(
        update(_deliveries)
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
                insert(_deliveries).values(
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
                update(_deliveries)
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
            delete(_events).where(_E.created_at < before, _E.seq.not_in(waiting))
        ).rowcount
    )


def event_ids(session: Session) -> list[str]:
    """Every stored event's id, oldest first (tests and the benchmark compare these)."""
    return [str(i) for i in session.connection().scalars(select(_E.id).order_by(_E.seq))]
