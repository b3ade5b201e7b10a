"""attuned history REF: every test execution of a pack, newest first (the audit trail)."""

from __future__ import annotations

import argparse

from attuned.cli.common import add_common, execution_dict, open_registry, print_json, table
from attuned.store import repository


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("history", help="test executions of a pack, newest first")
    parser.add_argument("ref")
    parser.add_argument("--limit", type=int, default=None, help="show at most N executions")
    parser.add_argument("--full", action="store_true", help="with --json: include full results")
    add_common(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    with open_registry(args) as registry, registry.db.read() as session:
        rows = repository.executions(session, args.ref, args.limit)
    if args.json:
        print_json([execution_dict(r, full=args.full) for r in rows])
        return 0
    if not rows:
        print(f"no test executions recorded for {args.ref!r}")
        return 0
    print(
        table(
            [
                [
                    f"{r.execution_time:%Y-%m-%d %H:%M:%S}",
                    r.pack_version,
                    r.trigger_type,
                    r.status,
                    f"{r.passed}/{r.total_tests}",
                    f"{r.pass_rate:.0%}",
                    r.outcome,
                    ("passed" if r.gate_passed else "not passed") + f": {r.gate_reason}",
                ]
                for r in rows
            ],
            ["time", "version", "trigger", "status", "passed", "rate", "outcome", "gate"],
        )
    )
    return 0
