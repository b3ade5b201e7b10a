"""attuned packs: list registered packs."""

from __future__ import annotations

import argparse

from attuned.cli.common import add_common, open_registry, pack_dict, print_json, table
from attuned.cli.verbs import help_of
from attuned.store import registered_packs, run_records


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("packs", help=help_of("packs"))
    add_common(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    with open_registry(args) as registry, registry.db.read() as session:
        packs = registered_packs.list_packs(session)
        statuses = run_records.latest_statuses(session)
    if args.json:
        print_json([pack_dict(p, statuses.get(p.ref, "none")) for p in packs])
        return 0
    if not packs:
        print("no packs registered")
        return 0
    rows = [
        [
            p.ref,
            p.version,
            p.digest[:12] if p.managed else "(not attuned's)",
            statuses.get(p.ref, "-"),
            p.origin,
        ]
        for p in packs
    ]
    print(table(rows, ["ref", "version", "digest", "last test", "origin"]))
    return 0
