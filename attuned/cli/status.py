"""attuned status: read the daemon's status file and show it (--watch: refresh).

Fast on purpose (monitoring runs it every few seconds): the config comes from
cli/fastconfig.py and the file is read as plain JSON, rendered from the parsed dict. pydantic
(60 ms) is imported only for a file whose shape is not this version's (an older or newer
daemon's, a damaged one): its models fill the defaults, or say what is wrong, as before.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from attuned.cli import fastconfig
from attuned.cli.common import STATUS_COLOUR, add_common, colour, config_of, print_json, table
from attuned.cli.verbs import help_of
from attuned.errors import AttunedError

_STATE_COLOUR = {
    "active": "green",
    "failed": "red",
    "blocked": "red",
    "pending": "yellow",
    "suspended": "yellow",
    "kept": "dim",
    "removed": "dim",
}

# the fields of each object in the status file, in the order attuned.report.status's models
# declare (and write) them; a test holds this to the models
SHAPE: dict[str, tuple[str, ...]] = {
    "status": (
        "daemon",
        "updated_at",
        "last_reconcile",
        "sources",
        "packs",
        "conflicts",
        "notify",
    ),
    "daemon": (
        "version",
        "pid",
        "started_at",
        "phase",
        "config_file",
        "error",
        "role",
        "node",
        "leader",
    ),
    "last_reconcile": ("started_at", "finished_at", "duration_ms", "trigger", "counts"),
    "source": (
        "name",
        "type",
        "location",
        "readable",
        "last_scan",
        "candidates",
        "revision",
        "error",
        "error_since",
        "invalid",
    ),
    "pack": (
        "state",
        "version",
        "digest",
        "source",
        "active_since",
        "desired_version",
        "reason",
        "last_test",
        "last_error",
        "last_error_at",
    ),
    "last_test": ("status", "passed", "total", "at", "version", "regressions"),
    "sink": (
        "name",
        "type",
        "target",
        "dispatching",
        "pending",
        "delivered",
        "dead",
        "last_error",
        "last_error_at",
        "last_delivered_at",
        "problem",
    ),
}


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("status", help=help_of("status"))
    parser.add_argument("--watch", action="store_true", help="refresh every second until ^C")
    add_common(parser)
    parser.set_defaults(run=run, logs=False)


def run(args: argparse.Namespace) -> int:
    settings = fastconfig.read(args.config)
    path = settings.status_path if settings is not None else config_of(args).status_path
    while True:
        status = read(path)
        if args.json:
            print_json(status)
        else:
            text = _rendered(status, path)
            if args.watch:
                print("\033[2J\033[H", end="")
            print(text)
        if not args.watch:
            return 0
        time.sleep(1)


def read(path: Path) -> dict[str, Any]:
    """The status file as attuned.report.status.Status.model_dump(mode="json") gives it: the
    parsed JSON itself when its shape is this version's (the daemon wrote it so), else
    through the model."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise AttunedError(f"cannot read the status file {path}: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    return data if _current(data) else _through_model(path, text)


def _through_model(path: Path, text: str) -> dict[str, Any]:
    from pydantic import ValidationError

    from attuned.report.status import Status

    try:
        return Status.model_validate_json(text).model_dump(mode="json")
    except ValidationError as exc:  # one line: the first few fields that are wrong
        problems = exc.errors(include_url=False)
        why = "; ".join(
            ".".join(map(str, e["loc"])) + f": {e['msg']}" if e["loc"] else e["msg"]
            for e in problems[:3]
        ) + (f" (and {len(problems) - 3} more)" if len(problems) > 3 else "")
        raise AttunedError(f"{path} is not a status file: {why}") from None


def _current(data: Any) -> bool:
    """Whether every object in `data` has exactly the fields SHAPE gives it, in its order."""

    def fits(value: Any, kind: str) -> bool:
        return isinstance(value, dict) and tuple(value) == SHAPE[kind]

    def each(values: Any, kind: str) -> bool:
        return isinstance(values, list) and all(fits(v, kind) for v in values)

    if not fits(data, "status") or not fits(data["daemon"], "daemon"):
        return False
    if data["last_reconcile"] is not None and not fits(data["last_reconcile"], "last_reconcile"):
        return False
    packs = data["packs"]
    if not isinstance(packs, dict) or not all(fits(p, "pack") for p in packs.values()):
        return False
    tests = [p["last_test"] for p in packs.values() if p["last_test"] is not None]
    return (
        each(tests, "last_test")
        and each(data["sources"], "source")
        and each(data["notify"], "sink")
    )


def _rendered(status: dict[str, Any], path: Path) -> str:
    """`render`, or the model's verdict on a file whose values are not what they should be."""
    try:
        return render(status)
    except (TypeError, ValueError, KeyError, AttributeError):
        return render(_through_model(path, json.dumps(status)))


def _moment(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _ago(value: str | None) -> str:
    moment = _moment(value)
    if moment is None:
        return "-"
    seconds = (datetime.now(UTC) - moment).total_seconds()
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def _regressed(pack: dict[str, Any]) -> str:
    """Why a candidate was refused by the regression gate, when it was."""
    last = pack["last_test"]
    cases = last["regressions"] if last and pack["state"] == "failed" else []
    return f"; regressed: {', '.join(cases)}" if cases else ""


def render(status: dict[str, Any]) -> str:
    """The status (as `read` returns it) for people."""
    d = status["daemon"]
    lines = [
        f"attuned {d['version']}  pid {d['pid']}  {d['phase']}  "
        f"up since {_moment(d['started_at']):%Y-%m-%d %H:%M:%S}"
        + (f"  error: {d['error']}" if d["error"] else "")
    ]
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
        lines.append(
            f"source {s['name']} ({s['type']} {s['location']}): {s['candidates']} packs, {state}"
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
