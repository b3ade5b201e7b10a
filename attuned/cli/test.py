"""attuned test PATH: run a pack's tests and store nothing; attuned test --pack REF: test the
served version of a registered pack again and record the run (Attune's `manual` trigger)."""

from __future__ import annotations

import argparse
from pathlib import Path

from attuned.cli.common import add_common, config_of, open_registry, print_json
from attuned.cli.summary import render_result
from attuned.cli.verbs import help_of
from attuned.errors import TestsFailed
from attuned.pack.loader import load_pack
from attuned.registry.wiring import tester_for
from attuned.results import PackTestResult


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("test", help=help_of("test"))
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("path", type=Path, nargs="?", help="a pack directory (nothing stored)")
    target.add_argument(
        "--pack", metavar="REF", help="the served version of a registered pack (run recorded)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="list passing cases too")
    add_common(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    result: PackTestResult
    if args.pack:
        with open_registry(args) as registry:
            result = registry.test_served(args.pack)
        ref = args.pack
    else:
        assert args.path is not None  # argparse: one of the two is required
        pack = load_pack(args.path)
        result = tester_for(config_of(args)).run(pack.path, pack.manifest).result
        ref = pack.ref
    if args.json:
        print_json(result.model_dump(mode="json"))
    else:
        print(render_result(result, verbose=args.verbose))
    if result.gate.blocks:
        error = TestsFailed(f"tests of {ref} did not pass: {result.gate.reason}")
        error.answered = args.json
        raise error
    return 0
