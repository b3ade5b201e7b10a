"""attuned unregister REF: remove a pack (its test history stays)."""

from __future__ import annotations

import argparse

from attuned.cli.common import add_common, open_registry, pack_dict, print_json
from attuned.cli.verbs import help_of


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("unregister", help=help_of("unregister"))
    parser.add_argument("ref")
    parser.add_argument(
        "--force", action="store_true", help="remove even though other packs depend on it"
    )
    add_common(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    with open_registry(args) as registry:
        record = registry.unregister(args.ref, force=args.force)
    if args.json:
        print_json({"unregistered": pack_dict(record)})
    else:
        print(f"unregistered {record.ref} {record.version}")
    return 0
