"""The outbox's rows on real databases: deliveries per matching sink, order per subject,
verdicts, counts, redelivery and retention."""

from __future__ import annotations

from datetime import timedelta

from attuned.store import delivery_queue, outbox, outbox_admin
from attuned.store.database import Database
from attuned.store.delivery_queue import Verdict
from attuned.store.models import utcnow
from attuned.store.outbox import DEAD, DELIVERED, PENDING, EventRecord, Outbox


def event(name: str = "pack.registered", ref: str | None = "hello", **data: object) -> EventRecord:
    subject = f"pack:{ref}" if ref else "source:local"
    severity = "warning" if name.endswith("failed") else "info"
    return EventRecord(name=name, severity=severity, subject=subject, data=dict(data), ref=ref)


ALL = {"a": lambda _e: True, "b": lambda e: e.severity == "warning"}


def test_an_event_gets_a_delivery_for_each_sink_that_takes_it(database: Database) -> None:
    box = Outbox(ALL, node="host1")
    with database.write() as session:
        assert box.add(session, event("pack.registered", version="1.0.0"))
        assert box.add(session, event("pack.test.failed"))
    with database.read() as session:
        rows = outbox_admin.listing(session)
    assert sorted((r.event.name, r.sink) for r in rows) == [
        ("pack.registered", "a"),
        ("pack.test.failed", "a"),
        ("pack.test.failed", "b"),
    ]
    registered = next(r.event for r in rows if r.event.name == "pack.registered")
    assert (registered.node, registered.data, registered.ref) == (
        "host1",
        {"version": "1.0.0"},
        "hello",
    )


def test_an_event_no_sink_takes_is_kept_without_deliveries(database: Database) -> None:
    with database.write() as session:
        Outbox({}, node="h").add(session, event())
    with database.read() as session:
        [row] = outbox_admin.listing(session)
    assert (row.sink, row.state) == (None, None)


def test_the_same_id_is_written_once(database: Database) -> None:
    """A condition reported again (a restart) keeps its stable id: nothing new is written."""
    same = outbox.stable_id("pack.blocked", "blocked:hello", "needs core")
    box = Outbox(ALL)
    with database.write() as session:
        assert box.add(session, EventRecord("pack.blocked", "warning", "pack:hello", {}, id=same))
    with database.write() as session:
        assert not box.add(
            session, EventRecord("pack.blocked", "warning", "pack:hello", {}, id=same)
        )
    with database.read() as session:
        assert outbox.event_ids(session) == [same]


def test_a_rolled_back_transaction_leaves_no_event(database: Database) -> None:
    box = Outbox(ALL)
    try:
        with database.write() as session:
            box.add(session, event())
            raise RuntimeError("the change failed")
    except RuntimeError:
        pass
    with database.read() as session:
        assert outbox.event_ids(session) == []
        assert outbox.counts(session) == {}


def test_the_queue_keeps_order_per_subject_and_lets_other_subjects_pass(
    database: Database,
) -> None:
    box = Outbox({"a": lambda _e: True})
    with database.write() as session:
        for name in ("first", "second", "third"):
            box.add(session, event(f"pack.{name}", ref="hello"))
        box.add(session, event("pack.other", ref="world"))
    now = utcnow()
    with database.read() as session:
        queued = delivery_queue.queue(session, "a", now)
    assert [q.event.name for q in queued] == [
        "pack.first",
        "pack.second",
        "pack.third",
        "pack.other",
    ]
    first = queued[0]
    later = now + timedelta(seconds=60)  # hello's first failed: retried in a minute
    with database.write() as session:
        delivery_queue.record(
            session, [Verdict(first.delivery_id, PENDING, now, "HTTP 503", later)]
        )
    with database.read() as session:
        waiting = delivery_queue.queue(session, "a", now)
        assert [q.event.name for q in waiting] == ["pack.other"]  # hello's wait behind theirs
        due_later = delivery_queue.queue(session, "a", later)
    assert [(q.event.name, q.attempts) for q in due_later] == [
        ("pack.first", 1),
        ("pack.second", 0),
        ("pack.third", 0),
        ("pack.other", 0),
    ]


def test_a_dead_delivery_no_longer_holds_its_subject(database: Database) -> None:
    box = Outbox({"a": lambda _e: True})
    with database.write() as session:
        box.add(session, event("pack.first"))
        box.add(session, event("pack.second"))
    now = utcnow()
    with database.read() as session:
        head = delivery_queue.queue(session, "a", now)[0]
    with database.write() as session:
        delivery_queue.record(session, [Verdict(head.delivery_id, DEAD, now, "HTTP 410 Gone")])
    with database.read() as session:
        assert [q.event.name for q in delivery_queue.queue(session, "a", now)] == ["pack.second"]


def test_counts_redeliver_and_prune(database: Database) -> None:
    box = Outbox(ALL)
    with database.write() as session:
        box.add(session, event("pack.test.failed"))
        box.add(session, event("pack.registered"))
    now = utcnow()
    with database.read() as session:
        a = delivery_queue.queue(session, "a", now)
        [b] = delivery_queue.queue(session, "b", now)
    with database.write() as session:
        delivery_queue.record(
            session,
            [Verdict(a[0].delivery_id, DELIVERED, now), Verdict(a[1].delivery_id, DELIVERED, now)],
        )
        delivery_queue.record(session, [Verdict(b.delivery_id, DEAD, now, "HTTP 400 Bad Request")])
    with database.read() as session:
        counts = outbox.counts(session)
    assert (counts["a"].delivered, counts["a"].pending, counts["a"].dead) == (2, 0, 0)
    assert (counts["b"].delivered, counts["b"].dead, counts["b"].last_error) == (
        0,
        1,
        "HTTP 400 Bad Request",
    )
    assert counts["a"].last_delivered_at is not None

    with database.write() as session:
        assert outbox_admin.redeliver(session, now, dead=True) == 1
    with database.read() as session:
        [again] = delivery_queue.queue(session, "b", now)
        assert (again.attempts, again.event.name) == (0, "pack.test.failed")
        assert outbox.counts(session)["b"].pending == 1

    # retention: old delivered events go; one still pending stays, whatever its age
    with database.write() as session:
        assert outbox.prune(session, now + timedelta(days=1)) == 1
    with database.read() as session:
        assert [r.event.name for r in outbox_admin.listing(session)] == ["pack.test.failed"] * 2


def test_redelivering_to_a_sink_that_never_had_the_event(database: Database) -> None:
    with database.write() as session:
        Outbox({"a": lambda _e: True}).add(session, event())
    with database.read() as session:
        [found] = outbox_admin.find_events(session, [outbox.event_ids(session)[0][:8]]).values()
    now = utcnow()
    with database.write() as session:
        queued = outbox_admin.redeliver(
            session, now, event_seqs=[found[0].seq], sink="late", routes={"late": lambda _e: True}
        )
    assert queued == 1
    with database.read() as session:
        assert [q.event.name for q in delivery_queue.queue(session, "late", now)] == [
            "pack.registered"
        ]
