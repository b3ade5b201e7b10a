"""attuned events: what the outbox holds and where each event went; queue deliveries again;
deliver now (for hosts that run `reconcile --once` from a timer instead of the daemon)."""

from __future__ import annotations

import argparse
from typing import Any

from attuned.cli.common import add_common, colour, config_of, open_registry, print_json, table
from attuned.cli.verbs import help_of
from attuned.errors import Problem, ValidationFailed
from attuned.notify import events
from attuned.report.log import Event, get_logger
from attuned.store import outbox_admin
from attuned.store.models import utcnow
from attuned.store.outbox_admin import Listed

STATE_COLOUR = {"delivered": "green", "dead": "red", "pending": "yellow"}
ID_SHOWN = 8  # characters of an event id in the table; `redeliver` takes any unique prefix


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("events", help=help_of("events"))
    state = parser.add_mutually_exclusive_group()
    for name in ("pending", "dead", "delivered"):
        state.add_argument(
            f"--{name}",
            dest="state",
            action="store_const",
            const=name,
            help=f"only deliveries that are {name}",
        )
    parser.add_argument("--sink", help="only this sink's deliveries")
    parser.add_argument("--pack", metavar="REF", help="only events of this pack")
    parser.add_argument("--limit", type=int, default=50, help="newest N rows (default 50)")
    add_common(parser)
    verbs = parser.add_subparsers(dest="events_verb", metavar="[redeliver|deliver]")
    again = verbs.add_parser("redeliver", help="queue deliveries again (attempts start over)")
    again.add_argument("ids", nargs="*", metavar="ID", help="event ids (a unique prefix will do)")
    again.add_argument("--dead", action="store_true", help="every dead delivery")
    again.add_argument("--sink", dest="redeliver_sink", help="only to this sink")
    add_common(again)  # after the sub-verb too
    deliver = verbs.add_parser("deliver", help="deliver what is due now, then exit")
    deliver.add_argument(
        "--timeout", type=float, default=None, help="seconds (default outbox.drain_timeout)"
    )
    add_common(deliver)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.events_verb == "redeliver":
        return _redeliver(args)
    if args.events_verb == "deliver":
        return _deliver(args)
    return _list(args)


def _list(args: argparse.Namespace) -> int:
    with open_registry(args) as registry, registry.db.read() as session:
        rows = outbox_admin.listing(
            session, state=args.state, sink=args.sink, ref=args.pack, limit=args.limit
        )
    if args.json:
        print_json(_grouped(rows))
        return 0
    if not rows:
        print("no events" + (" matching" if args.state or args.sink or args.pack else ""))
        return 0
    print(
        table(
            [
                [
                    row.event.id[:ID_SHOWN],
                    f"{row.event.created_at:%Y-%m-%d %H:%M:%S}",
                    row.event.name,
                    row.event.ref or row.event.subject,
                    row.sink or "-",
                    colour(row.state, STATE_COLOUR[row.state]) if row.state else "-",
                    str(row.attempts) if row.sink else "",
                    _when(row),
                    (row.last_error or "")[:80],
                ]
                for row in rows
            ],
            ["event", "time", "name", "about", "sink", "state", "tries", "next/done", "error"],
        )
    )
    return 0


def _when(row: Listed) -> str:
    if row.state == "pending" and row.next_attempt_at is not None:
        return f"next {row.next_attempt_at:%H:%M:%S}"
    if row.state == "delivered" and row.delivered_at is not None:
        return f"{row.delivered_at:%H:%M:%S}"
    return ""


def _grouped(rows: list[Listed]) -> list[dict[str, Any]]:
    """One object per event (newest first) with its deliveries."""
    grouped: dict[int, dict[str, Any]] = {}
    for row in rows:
        entry = grouped.setdefault(
            row.event.seq,
            {
                **events.envelope(row.event),
                "pack": row.event.ref,
                "deliveries": [],
            },
        )
        if row.sink is not None:
            entry["deliveries"].append(
                {
                    "sink": row.sink,
                    "state": row.state,
                    "attempts": row.attempts,
                    "last_error": row.last_error,
                    "next_attempt_at": row.next_attempt_at.isoformat()
                    if row.next_attempt_at and row.state == "pending"
                    else None,
                    "delivered_at": row.delivered_at.isoformat() if row.delivered_at else None,
                }
            )
    return list(grouped.values())


def _redeliver(args: argparse.Namespace) -> int:
    if bool(args.ids) == bool(args.dead):
        raise ValidationFailed([Problem(None, "give event ids, or --dead (not both)")])
    config = config_of(args)
    sink = args.redeliver_sink
    if sink is not None and sink not in {s.name for s in config.notify}:
        raise ValidationFailed([Problem(None, f"no sink named {sink!r} in the config")])
    with open_registry(args) as registry, registry.db.write() as session:
        seqs = []
        for prefix, found in outbox_admin.find_events(session, args.ids).items():
            if len(found) != 1:
                why = "no event" if not found else "more than one event"
                raise ValidationFailed([Problem(None, f"{why} has an id starting {prefix!r}")])
            seqs.append(found[0].seq)
        queued = outbox_admin.redeliver(
            session,
            utcnow(),
            event_seqs=seqs,
            dead=args.dead,
            sink=sink,
            routes=events.routes(config.notify),
        )
    get_logger().info(Event.NOTIFY_REDELIVERED, deliveries=queued, sink=sink, dead=args.dead)
    if args.json:
        print_json({"queued": queued})
    else:
        print(
            f"{queued} deliver{'y' if queued == 1 else 'ies'} queued again; the daemon sends "
            f"them within outbox.poll_interval ({config.outbox.poll_interval:g} s)"
        )
    return 0


def _deliver(args: argparse.Namespace) -> int:
    from attuned.reconcile.daemon import Daemon

    config = config_of(args)
    timeout = args.timeout if args.timeout is not None else config.outbox.drain_timeout
    finished, counts = Daemon(config).deliver_only(timeout)
    result = {
        name: {"pending": c.pending, "delivered": c.delivered, "dead": c.dead}
        for name, c in sorted(counts.items())
    }
    if args.json:
        print_json({"finished": finished, "sinks": result})
    else:
        for name, c in result.items():
            print(f"{name}: {c['delivered']} delivered, {c['pending']} pending, {c['dead']} dead")
        if not finished:
            print(f"stopped after {timeout:g} s; the rest is still queued")
    return 0 if finished else 1
