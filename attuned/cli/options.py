"""The options every verb takes, wherever they are written: `attuned --config X status`,
`attuned status --config X`, `attuned db --config X upgrade` are one command.

Each level of the parser declares them with `SUPPRESS` defaults, so a level that does not see
an option leaves what another level parsed; `fill_defaults` supplies the rest. Light on
purpose: `attuned --help` imports this and nothing heavy.
"""

from __future__ import annotations

import argparse
from pathlib import Path

LOG_LEVELS = ("debug", "info", "warning", "error")
DEFAULTS = {"config": None, "json": False, "log_level": "warning"}


def add_common(
    parser: argparse.ArgumentParser, *, json_flag: bool = True, log_level: bool = True
) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=argparse.SUPPRESS,
        help="attuned.yaml (default ./attuned.yaml, then "
        "/etc/attuned/attuned.yaml; env ATTUNED_CONFIG)",
    )
    if json_flag:
        parser.add_argument(
            "--json",
            action="store_true",
            default=argparse.SUPPRESS,
            help="print JSON instead of text",
        )
    if log_level:
        parser.add_argument(
            "--log-level",
            choices=LOG_LEVELS,
            default=argparse.SUPPRESS,
            help="structured log (stderr) verbosity, default warning",
        )


def fill_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """The common options no level of the command line gave."""
    for name, value in DEFAULTS.items():
        if not hasattr(args, name):
            setattr(args, name, value)
    return args


def takes_value(word: str) -> bool:
    """Whether the next word is this option's value (`--config X`), not the verb."""
    return word in ("--config", "--log-level")
