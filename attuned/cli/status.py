"""attuned status: read the daemon's status file and show it (--watch: refresh), and whether
the daemon that wrote it still runs: its pid alive and the state lock held (a daemon killed
with SIGKILL leaves a file that says `idle` forever). Not running exits NO_DAEMON (5).

Fast on purpose (monitoring runs it every few seconds): the config comes from
cli/fastconfig.py and the file is read by cli/statusfile.py, as plain JSON when it can be,
rendered from the parsed dict.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from attuned.cli import fastconfig
from attuned.cli.common import (
    STATUS_COLOUR,
    add_common,
    colour,
    config_of,
    counted,
    print_json,
    table,
    utc_iso,
)
from attuned.cli.daemonlock import LOCK_NAME, NO_DAEMON, holder
from attuned.cli.statusfile import read, through_model
from attuned.cli.verbs import help_of
from attuned.durations import ago
from attuned.errors import AttunedError

_STATE_COLOUR = {
    "active": "green",
    "failed": "red",
    "invalid": "red",
    "blocked": "red",
    "pending": "yellow",
    "suspended": "yellow",
    "kept": "dim",
    "removed": "dim",
}


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("status", help=help_of("status"))
    parser.add_argument("--watch", action="store_true", help="refresh every second until ^C")
    add_common(parser)
    parser.set_defaults(run=run, logs=False)


def run(args: argparse.Namespace) -> int:
    path, state_dir = paths(args)
    while True:
        status = read(path)
        life = liveness(status, path, state_dir)
        if args.json:
            print_json({**status, **life.json()})
        else:
            text = _rendered(status, path, life)
            if args.watch:
                print("\033[2J\033[H", end="")
            print(text)
        if not args.watch:
            return 0 if life.running else NO_DAEMON
        time.sleep(1)


# -- where the file is ----------------------------------------------------------------------


def paths(args: argparse.Namespace) -> tuple[Path, Path]:
    """The status file and the state directory the config names. A config that no longer
    parses (edited while the daemon runs) still leaves the daemon's file readable: its
    paths are taken from what can be read of it (else the defaults), with the config's
    error as a warning, as long as a status file is there."""
    settings = fastconfig.read(args.config)
    if settings is not None:
        return settings.status_path, settings.state_dir
    try:
        config = config_of(args)
    except AttunedError as exc:
        status_path, state_dir = last_known_paths(args.config)
        if not status_path.is_file():
            raise
        print(
            f"warning: the config does not load ({exc}); showing {status_path}",
            file=sys.stderr,
        )
        return status_path, state_dir
    return config.status_path, config.state_dir


def last_known_paths(explicit: Path | None) -> tuple[Path, Path]:
    """The status file and state directory as fastconfig would derive them, leniently: the
    config's `state_dir` and `status_file` when it is YAML enough to hold them as text,
    the ATTUNED_* and systemd overrides, else the built-in defaults."""
    data = _lenient_yaml(fastconfig.find(explicit))
    env = {k.upper(): v for k, v in os.environ.items()}
    state = env.get("ATTUNED_STATE_DIR", data.get("state_dir"))
    state_dir = Path(state) if isinstance(state, str) else _systemd_dir("STATE_DIRECTORY")
    status = env.get("ATTUNED_STATUS_FILE", data.get("status_file"))
    if isinstance(status, str):
        return Path(status), state_dir
    runtime = _systemd_dir("RUNTIME_DIRECTORY") if "RUNTIME_DIRECTORY" in os.environ else None
    return (runtime or state_dir) / "status.json", state_dir


def _lenient_yaml(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, ValueError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def _systemd_dir(variable: str) -> Path:
    value = os.environ.get(variable, "").split(":")[0]
    return Path(value) if value else Path("./var")


# -- whether its daemon runs ----------------------------------------------------------------


class Liveness(NamedTuple):
    """Whether the daemon that wrote the file runs; if not, since when (the file's last
    write: the daemon's last sign of life) and why it is known not to."""

    running: bool
    since: datetime | None = None
    why: str = ""

    def json(self) -> dict[str, Any]:
        since = None if self.since is None else utc_iso(self.since)
        return {"running": self.running, "not_running_since": since}


def liveness(status: dict[str, Any], path: Path, state_dir: Path) -> Liveness:
    daemon = status["daemon"]
    why = "stopped" if daemon["phase"] == "stopped" else _gone(daemon["pid"], state_dir)
    if why is None:
        return Liveness(True)
    since: datetime | None
    try:
        since = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    except OSError:
        since = _moment(status["updated_at"])
    return Liveness(False, since, why)


def _gone(pid: int, state_dir: Path) -> str | None:
    """Why the daemon `pid` is known not to run, None when it runs (or cannot be told)."""
    if pid <= 0:
        return f"pid {pid} is not a process"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return f"pid {pid} is gone"
    except PermissionError:
        pass  # alive, another user's
    lock = state_dir / LOCK_NAME
    try:  # a pid reused by another process: the state lock tells
        if lock.exists() and holder(state_dir) is None:
            return f"pid {pid} does not hold {lock}"
    except OSError:
        pass  # the lock cannot be read: the pid alone says
    return None


# -- what it says, for people ---------------------------------------------------------------


def _rendered(status: dict[str, Any], path: Path, life: Liveness) -> str:
    """`render`, or the model's verdict on a file whose values are not what they should be."""
    try:
        return render(status, life)
    except (TypeError, ValueError, KeyError, AttributeError):
        return render(through_model(path, json.dumps(status)), life)


def _moment(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _ago(value: str | None) -> str:
    moment = _moment(value)
    if moment is None:
        return "-"
    return ago((datetime.now(UTC) - moment).total_seconds()) + " ago"


def _regressed(pack: dict[str, Any]) -> str:
    """Why a candidate was refused by the regression gate, when it was."""
    last = pack["last_test"]
    cases = last["regressions"] if last and pack["state"] == "failed" else []
    return f"; regressed: {', '.join(cases)}" if cases else ""


def render(status: dict[str, Any], life: Liveness | None = None) -> str:
    """The status (as `read` returns it) for people; `life`: whether its daemon runs."""
    lines = [_daemon_line(status["daemon"], life or Liveness(True))]
    reload_failed = status["daemon"]["config_reload_failed"]
    if reload_failed:
        lines.append(
            f"config reload failed at {_moment(reload_failed['at']):%Y-%m-%d %H:%M:%S}: "
            f"{reload_failed['error']} (running with the previous config)"
        )
    if status["last_reconcile"]:
        r = status["last_reconcile"]
        lines.append(
            f"last reconcile {_ago(r['finished_at'])} ({r['trigger']}, {r['duration_ms']} ms)"
        )
    for s in status["sources"]:
        state = (
            "ok"
            if s["readable"] and not s["error"]
            else f"ERROR since {_ago(s['error_since'])}: {s['error']}"
        )
        commit = f", commit {s['revision'][:12]}" if s["revision"] else ""
        lines.append(
            f"source {s['name']} ({s['type']} {s['location']}{commit}): "
            f"{counted(s['candidates'], 'pack')}, {state}"
        )
        for bad in s["invalid"]:
            lines.append(f"  invalid {bad['entry']}: {'; '.join(bad['problems'])}")
    rows = []
    for ref, p in sorted(status["packs"].items()):
        test = "-"
        last = p["last_test"]
        if last:
            test = colour(last["status"], STATUS_COLOUR.get(last["status"], "bold"))
            test += f" {last['passed']}/{last['total']}"
        rows.append(
            [
                ref,
                colour(p["state"], _STATE_COLOUR.get(p["state"], "bold")),
                p["version"] or "-",
                p["source"] or "by hand",
                test,
                p["reason"] + _regressed(p),
            ]
        )
    lines.append("")
    lines.append(
        table(rows, ["pack", "state", "version", "source", "last test", "detail"])
        if rows
        else "no packs"
    )
    for c in status["conflicts"]:
        lines.append(f"conflict: {c['reason']}")
    return "\n".join(lines)


def _daemon_line(d: dict[str, Any], life: Liveness) -> str:
    head = f"attuned {d['version']}  pid {d['pid']}  "
    if life.running:
        return (
            head
            + f"{d['phase']}  up since {_moment(d['started_at']):%Y-%m-%d %H:%M:%S}"
            + (f"  error: {d['error']}" if d["error"] else "")
            + (f" (next try {_moment(d['next_retry_at']):%H:%M:%S})" if d["next_retry_at"] else "")
        )
    since = f"{life.since:%Y-%m-%d %H:%M:%S}" if life.since else "?"
    if life.why == "stopped":
        return head + f"stopped since {since}"
    return head + f"not running since {since} ({life.why}; it was {d['phase']})"
