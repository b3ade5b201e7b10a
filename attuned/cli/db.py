"""attuned db upgrade|current: run the schema migrations by hand."""

from __future__ import annotations

import argparse

from attuned.cli.common import add_common, config_of, print_json
from attuned.cli.verbs import help_of
from attuned.store.database import Database


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("db", help=help_of("db"))
    add_common(parser)  # `attuned db --config X ...` too
    verbs = parser.add_subparsers(dest="db_verb", required=True)
    upgrade = verbs.add_parser("upgrade", help="migrate the schema (default: to the newest)")
    upgrade.add_argument("revision", nargs="?", default="head")
    add_common(upgrade)
    current = verbs.add_parser("current", help="print the schema revision")
    add_common(current)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    config = config_of(args)
    database = Database.from_config(config)
    try:
        if args.db_verb == "upgrade":
            database.migrate(args.revision, packs_dir=config.packs_path)
        revision = database.current_revision()
    finally:
        database.dispose()
    if args.json:
        print_json({"revision": revision})
    else:
        print(f"schema revision: {revision or 'none'}")
    return 0
