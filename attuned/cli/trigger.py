"""attuned trigger SOURCE: ask the running daemon to poll a source now (a push happened).

No API: the command drops a file into `<state_dir>/triggers/` that the daemon watches with
inotify. `deploy/git-hooks/post-receive` calls this after every push, so it starts in well
under 0.1 s: the config is read by cli/fastconfig.py, not the models, and nothing of the
database or the daemon is imported. When no daemon holds the state directory, it says so and
exits 5 (the file stays; the daemon's first pass polls every source anyway).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from attuned.cli import fastconfig
from attuned.cli.common import add_common, config_of, print_json
from attuned.cli.daemonlock import NoDaemon, holder
from attuned.cli.verbs import help_of
from attuned.errors import AttunedError, Problem, ValidationFailed


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("trigger", help=help_of("trigger"))
    parser.add_argument("source", help="the source's name in attuned.yaml")
    add_common(parser)
    parser.set_defaults(run=run, logs=False)


def run(args: argparse.Namespace) -> int:
    settings = fastconfig.read(args.config) or _settings_of(args)
    if args.source not in settings.sources:
        names = ", ".join(settings.sources) or "none"
        raise ValidationFailed(
            [Problem(settings.path, f"no source named {args.source!r} (sources: {names})")]
        )
    folder = settings.triggers_path
    try:
        _drop(folder, args.source)
    except OSError as exc:  # the pushing user cannot write there (docs/sources-git.md)
        raise AttunedError(f"cannot write {folder / args.source}: {exc.strerror}") from None
    try:
        pid = holder(settings.state_dir)
    except OSError as exc:  # the lock file is not readable by this user: say what is known
        pid, unknown = "unknown", f"; cannot tell whether it runs: {exc.strerror}"
    else:
        unknown = ""
    if pid is None:
        raise NoDaemon(
            f"no attuned daemon runs on {settings.state_dir}: nothing reads {args.source} now "
            "(the daemon's first pass reads every source when it starts)"
        )
    if args.json:
        print_json(
            {
                "source": args.source,
                "trigger": str(folder / args.source),
                "daemon_pid": int(pid) if pid.isdigit() else None,
            }
        )
    else:
        # a folder is read whole: a change inotify cannot see (a network filesystem) is found
        what = "poll" if settings.sources[args.source] == "git" else "rescan"
        print(f"asked attuned to {what} {args.source} now (pid {pid}{unknown})")
    return 0


def _drop(folder: Path, source: str) -> None:
    """Write then rename: the daemon sees exactly one event, for the final name."""
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{source}.", dir=folder)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(f"{time.time()}\n")
        os.chmod(tmp, 0o664)
        os.replace(tmp, folder / source)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _settings_of(args: argparse.Namespace) -> fastconfig.Settings:
    """The full loader's answer (or its clear error), for a config fastconfig is unsure of."""
    config = config_of(args)
    sources: dict[str, str] = {s.name: s.type for s in config.sources}
    return fastconfig.Settings(config.path, config.state_dir, config.status_path, sources)
