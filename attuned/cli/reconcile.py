"""attuned reconcile: one pass now (--once: in this process; else: ask the running daemon)."""

from __future__ import annotations

import argparse
import os
import signal

from attuned.cli.common import add_common, config_of, print_json
from attuned.cli.daemonlock import NoDaemon
from attuned.cli.verbs import help_of
from attuned.errors import AttunedError
from attuned.report.status import read_status


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("reconcile", help=help_of("reconcile"))
    parser.add_argument(
        "--once",
        action="store_true",
        help="run one pass in this process and exit (4 if a pack failed)",
    )
    add_common(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    config = config_of(args)
    if not args.once:
        pid = running_daemon_pid(config.status_path)
        try:
            os.kill(pid, signal.SIGUSR1)
        except PermissionError:
            raise AttunedError(
                f"cannot signal attuned (pid {pid}): run this as its user or root"
            ) from None
        print(f"asked attuned (pid {pid}) for a full reconcile")
        return 0
    from attuned.reconcile.daemon import Daemon

    # the log stays at --log-level, whose default is `warning` as for every verb but `run`
    # (main() configured it): `log.level` is the daemon's
    daemon = Daemon(config)
    code = daemon.run_once()
    if args.json:
        print_json({ref: p.model_dump(mode="json") for ref, p in daemon.packs.items()})
    else:
        for ref, pack in sorted(daemon.packs.items()):
            print(f"{ref:<24} {pack.state:<10} {pack.version or '-':<12} {pack.reason}")
    return code


def running_daemon_pid(status_path: os.PathLike[str]) -> int:
    """The pid of the daemon that writes `status_path`, if it is alive; else NoDaemon (5)."""
    try:
        status = read_status(status_path)  # type: ignore[arg-type]
    except (OSError, ValueError):
        raise NoDaemon(f"no running daemon: cannot read {status_path}") from None
    pid = status.daemon.pid
    if status.daemon.phase == "stopped":
        raise NoDaemon(f"no running daemon: {status_path} says it stopped")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        raise NoDaemon(f"no running daemon: pid {pid} from {status_path} is gone") from None
    except PermissionError:
        pass  # alive, another user's: signalling it will say so
    return pid
