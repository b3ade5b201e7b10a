"""attuned test PATH: run a pack's tests and store nothing."""

from __future__ import annotations

import argparse
from pathlib import Path

from attuned.cli.common import add_common, config_of, print_json
from attuned.cli.summary import render_result
from attuned.errors import TestsFailed
from attuned.pack.loader import load_pack
from attuned.registry import tester_for


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("test", help="run a pack's tests without registering anything")
    parser.add_argument("path", type=Path)
    parser.add_argument("-v", "--verbose", action="store_true", help="list passing cases too")
    add_common(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    pack = load_pack(args.path)
    config = config_of(args)
    result = tester_for(config).run(pack.path, pack.manifest).result
    if args.json:
        print_json(result.model_dump(mode="json"))
    else:
        print(render_result(result, verbose=args.verbose))
    if result.gate.blocks:
        raise TestsFailed(f"tests of {pack.ref} did not pass: {result.gate.reason}")
    return 0
