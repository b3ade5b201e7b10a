"""attuned register PATH: validate, test, and register one pack."""

from __future__ import annotations

import argparse
from pathlib import Path

from attuned.cli.common import add_common, colour, open_registry, pack_dict, print_json
from attuned.cli.summary import render_result
from attuned.cli.verbs import help_of
from attuned.errors import TestsFailed
from attuned.registry import EnvironmentNotReady, Outcome, TestsRolledBack


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("register", help=help_of("register"))
    parser.add_argument("path", type=Path, help="the pack directory (holds pack.yaml)")
    parser.add_argument(
        "--force",
        action="store_true",
        help="re-register an existing pack; register even if tests fail",
    )
    parser.add_argument(
        "--upgrade",
        action="store_true",
        help="replace an already registered pack, only if its tests pass",
    )
    parser.add_argument("--skip-tests", action="store_true", help="do not run the pack's tests")
    add_common(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    with open_registry(args) as registry:
        try:
            done = registry.register(
                args.path, force=args.force, replace=args.upgrade, skip_tests=args.skip_tests
            )
        except (TestsRolledBack, EnvironmentNotReady) as failed:
            if args.json:
                print_json(
                    {
                        "pack": None,
                        "test_result": failed.result.model_dump(mode="json"),
                        "tests_skipped": False,
                        "error": str(failed),
                    }
                )
            else:
                print(render_result(failed.result))
            error = TestsFailed(str(failed))
            error.answered = args.json
            raise error from None
    if args.json:
        print_json(
            {
                "pack": pack_dict(done.pack),
                "test_result": done.test_result.model_dump(mode="json")
                if done.test_result
                else None,
                "tests_skipped": done.tests_skipped,
                "outcome": done.outcome.value,
                "trigger": done.trigger.value,
                "warnings": [str(w) for w in done.warnings],
            }
        )
        return 0
    if done.test_result is not None:
        print(render_result(done.test_result))
    else:
        print("tests: skipped (--skip-tests)")
    note = {
        Outcome.FORCED: colour(" (forced despite failing tests)", "yellow"),
        Outcome.WARNED: colour(" (tests failed; on_failure: warn)", "yellow"),
    }.get(done.outcome, "")
    print(f"registered {done.pack.ref} {done.pack.version} ({done.trigger.value}){note}")
    return 0
