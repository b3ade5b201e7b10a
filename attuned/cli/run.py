"""attuned run: the reconciling daemon (stops on SIGTERM/SIGINT, reloads on SIGHUP)."""

from __future__ import annotations

import argparse
import sys

from attuned.cli.common import add_common, config_of
from attuned.cli.verbs import help_of
from attuned.report.log import configure_logging


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("run", help=help_of("run"))
    add_common(parser, json_flag=False)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from attuned.reconcile.daemon import Daemon

    config = config_of(args)
    fmt = config.log.format
    configure_logging(
        config.log.level,
        sys.stdout,
        json=None if fmt == "auto" else fmt == "json",
        file=config.log.file,
    )
    return Daemon(config).run()
