"""The `attuned` command: parse, dispatch to one module per verb, map errors to exit codes."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from attuned.cli import (
    compare,
    config,
    db,
    envs,
    events,
    history,
    packs,
    plan,
    reconcile,
    register,
    run,
    show,
    status,
    suspend,
    test,
    trigger,
    unregister,
    validate,
)
from attuned.errors import AttunedError, ValidationFailed
from attuned.report.log import configure_logging

EXIT_CODES = """\
exit codes:
  0  success (registered, valid, tests passed the gate)
  1  any other error (database unreachable, store damaged, ...)
  2  validation or usage error (bad pack.yaml, component, config or arguments)
  3  conflict (pack already registered without --force; unregister with dependents)
  4  tests failed: the registration was rolled back (attuned test: the gate blocked;
     attuned reconcile --once: a pack is failed or blocked)
"""

VERBS = (
    run,
    reconcile,
    plan,
    status,
    trigger,
    suspend,
    register,
    validate,
    test,
    packs,
    show,
    history,
    compare,
    unregister,
    events,
    envs,
    db,
    config,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="attuned",
        description="Register, test and manage Attune packs.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--log-level",
        default="warning",
        choices=["debug", "info", "warning", "error"],
        help="structured log (stderr) verbosity, default warning",
    )
    sub = parser.add_subparsers(dest="verb", required=True, metavar="COMMAND")
    for verb in VERBS:
        verb.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level)
    try:
        code: int = args.run(args)
    except ValidationFailed as exc:
        print(f"error: {exc}" if "\n" not in str(exc) else f"error:\n{exc}", file=sys.stderr)
        return exc.exit_code
    except AttunedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
