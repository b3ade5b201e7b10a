"""attuned suspend|resume REF: tell the daemon to leave a pack alone, or to manage it again."""

from __future__ import annotations

import argparse
import os
import signal

from attuned.cli.common import add_common, config_of, open_registry, print_json
from attuned.cli.reconcile import running_daemon_pid
from attuned.cli.verbs import help_of
from attuned.errors import AttunedError
from attuned.notify import events
from attuned.report.log import Event, get_logger
from attuned.store import suspensions


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for verb in ("suspend", "resume"):
        parser = sub.add_parser(verb, help=help_of(verb))
        parser.add_argument("ref")
        if verb == "suspend":
            parser.add_argument("--reason", default="", help="shown in status")
        add_common(parser)
        parser.set_defaults(run=run, verb=verb)


def run(args: argparse.Namespace) -> int:
    event = Event.PACK_SUSPENDED if args.verb == "suspend" else Event.PACK_RESUMED
    with open_registry(args) as registry, registry.db.write() as session:
        if args.verb == "suspend":
            changed = suspensions.suspend(session, args.ref, args.reason)
        else:
            changed = suspensions.resume(session, args.ref)
        fields = {"pack": args.ref, "reason": getattr(args, "reason", None)}
        told = events.record(event, fields)
        if changed:  # in the same transaction: the event is there exactly when the change is
            registry.outbox.add(session, told)
    get_logger().info(event, pack=args.ref, changed=changed, event_id=told.id if changed else None)
    notified = _nudge_daemon(args)
    if args.json:
        print_json(
            {"ref": args.ref, "verb": args.verb, "changed": changed, "daemon_notified": notified}
        )
    else:
        state = "suspended" if args.verb == "suspend" else "resumed"
        print(
            f"{args.ref} {state}"
            + ("" if changed else " (it already was)")
            + ("" if notified else "; takes effect at the daemon's next pass")
        )
    return 0


def _nudge_daemon(args: argparse.Namespace) -> bool:
    try:
        os.kill(running_daemon_pid(config_of(args).status_path), signal.SIGUSR1)
    except (AttunedError, PermissionError):
        return False
    return True
