"""attuned trigger SOURCE: ask the running daemon to poll a source now (a push happened).

No API: the command drops a file into `<state_dir>/triggers/` that the daemon watches with
inotify. `deploy/git-hooks/post-receive` calls this after every push.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from attuned.cli.common import add_common, config_of, print_json
from attuned.cli.verbs import help_of
from attuned.errors import Problem, ValidationFailed


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("trigger", help=help_of("trigger"))
    parser.add_argument("source", help="the source's name in attuned.yaml")
    add_common(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    config = config_of(args)
    names = [s.name for s in config.sources]
    if args.source not in names:
        raise ValidationFailed(
            [
                Problem(
                    config.path,
                    f"no source named {args.source!r} (sources: {', '.join(names) or 'none'})",
                )
            ]
        )
    folder = config.triggers_path
    folder.mkdir(parents=True, exist_ok=True)
    # write then rename: the daemon sees exactly one event, for the final name
    fd, tmp = tempfile.mkstemp(prefix=f".{args.source}.", dir=folder)
    with os.fdopen(fd, "w") as handle:
        handle.write(f"{time.time()}\n")
    os.chmod(tmp, 0o664)
    os.replace(tmp, folder / args.source)
    if args.json:
        print_json({"source": args.source, "trigger": str(folder / args.source)})
    else:
        print(f"asked attuned to poll {args.source} now")
    return 0
