"""The `attuned` command: parse, dispatch to one module per verb, map errors to exit codes."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Sequence

from attuned.cli.options import add_common, fill_defaults, takes_value
from attuned.cli.verbs import VERBS

EXIT_CODES = """\
exit codes:
  0  success (registered, valid, tests passed the gate)
  1  any other error (database unreachable, store damaged, ...)
  2  validation or usage error (bad pack.yaml, component, config or arguments)
  3  conflict (pack already registered without --force; unregister with dependents)
  4  tests failed: the registration was rolled back (attuned test: the gate blocked;
     attuned reconcile --once: a pack is failed, invalid or blocked)
  5  no daemon runs on the state directory (trigger; reconcile without --once; status:
     the daemon stopped or died)
  141  stdout was closed by its reader (| head)
"""


def build_parser(verb: str | None = None) -> argparse.ArgumentParser:
    """The parser. `verb`: the one verb to parse, whose module alone is imported (the others
    are listed by name and help only); None: every verb in full (docs and tests)."""
    parser = argparse.ArgumentParser(
        prog="attuned",
        description="Register, test and manage Attune packs.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common(parser)  # also before the verb: `attuned --config X status`
    sub = parser.add_subparsers(dest="verb", required=True, metavar="COMMAND")
    if verb is None:
        wanted = {module for module, _ in VERBS.values()}
    else:  # an unknown verb imports nothing: argparse refuses it by name
        wanted = {VERBS[verb][0]} if verb in VERBS else set()
    added: set[str] = set()
    for name, (module, text) in VERBS.items():
        if module not in wanted:
            sub.add_parser(name, help=text)
        elif module not in added:  # one module may add several verbs (suspend, resume)
            importlib.import_module(f"attuned.cli.{module}").add_parser(sub)
            added.add(module)
    return parser


def verb_in(argv: Sequence[str]) -> str | None:
    """The verb `argv` asks for: its first word that is not an option (or an option's
    value); "" when there is none (`attuned --help`: nothing to import)."""
    words = iter(argv)
    for word in words:
        if takes_value(word):
            next(words, None)
        elif not word.startswith("-"):
            return word
    return ""


def main(argv: Sequence[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else list(argv)
    args = fill_defaults(build_parser(verb_in(arguments)).parse_args(arguments))
    from attuned.errors import AttunedError, headline  # after --help: dataclasses cost 6 ms

    if getattr(args, "logs", True):  # `status` and `trigger` log nothing: no structlog (50 ms)
        from attuned.report.log import configure_logging

        configure_logging(args.log_level)
    # a verb whose exit 1 is an answer (compare: regressions) exits this on every error
    error_exit: int | None = getattr(args, "error_exit", None)
    try:
        code: int = args.run(args)
    except AttunedError as exc:
        return _failed(args, str(exc), error_exit or exc.exit_code, answered=exc.answered)
    except BrokenPipeError:  # `attuned status --json | head`: the reader has had enough
        _discard_stdout()
        return CLOSED_PIPE
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if not type(exc).__module__.startswith(_DATABASE_MODULES):
            raise
        return _failed(args, f"the database failed: {headline(exc)}", error_exit or 1)
    return code


CLOSED_PIPE = 141  # what a shell reports for a process killed by SIGPIPE
# exceptions of these packages are the database's (locked, unreachable): one line, no trace
_DATABASE_MODULES = ("sqlalchemy", "psycopg", "sqlite3")


def _failed(args: argparse.Namespace, message: str, code: int, *, answered: bool = False) -> int:
    """Say why on stderr (one line, or the problems one per line); with --json, also as a
    JSON object on stdout, so a tool reading stdout sees the failure (unless the verb's own
    JSON answer says it: `register` and `test` print their result, then fail)."""
    print(f"error:\n{message}" if "\n" in message else f"error: {message}", file=sys.stderr)
    if getattr(args, "json", False) and not answered:
        try:
            print(json.dumps({"error": message, "exit_code": code}))
        except BrokenPipeError:
            _discard_stdout()
    return code


def _discard_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
