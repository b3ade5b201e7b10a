"""attuned status: read the daemon's status file and show it (--watch: refresh)."""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime

from attuned.cli.common import STATUS_COLOUR, add_common, colour, config_of, print_json, table
from attuned.cli.verbs import help_of
from attuned.errors import AttunedError
from attuned.report.status import PackStatus, Status, read_status

_STATE_COLOUR = {
    "active": "green",
    "failed": "red",
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
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    path = config_of(args).status_path
    while True:
        try:
            status = read_status(path)
        except OSError as exc:
            raise AttunedError(f"cannot read the status file {path}: {exc.strerror}") from None
        except ValueError as exc:
            raise AttunedError(f"{path} is not a status file: {exc}") from None
        if args.json:
            print_json(status.model_dump(mode="json"))
        else:
            if args.watch:
                print("\033[2J\033[H", end="")
            print(render(status))
        if not args.watch:
            return 0
        time.sleep(1)


def _ago(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    seconds = (datetime.now(UTC) - moment).total_seconds()
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def _regressed(pack: PackStatus) -> str:
    """Why a candidate was refused by the regression gate, when it was."""
    cases = pack.last_test.regressions if pack.last_test and pack.state == "failed" else []
    return f"; regressed: {', '.join(cases)}" if cases else ""


def render(status: Status) -> str:
    d = status.daemon
    lines = [
        f"attuned {d.version}  pid {d.pid}  {d.phase}  up since {d.started_at:%Y-%m-%d %H:%M:%S}"
        + (f"  error: {d.error}" if d.error else "")
    ]
    if status.last_reconcile:
        r = status.last_reconcile
        lines.append(f"last reconcile {_ago(r.finished_at)} ({r.trigger}, {r.duration_ms} ms)")
    for s in status.sources:
        state = (
            "ok" if s.readable and not s.error else f"ERROR since {_ago(s.error_since)}: {s.error}"
        )
        lines.append(f"source {s.name} ({s.type} {s.location}): {s.candidates} packs, {state}")
        for bad in s.invalid:
            lines.append(f"  invalid {bad['entry']}: {'; '.join(bad['problems'])}")
    rows = []
    for ref, p in sorted(status.packs.items()):
        test = "-"
        if p.last_test:
            test = colour(p.last_test.status, STATUS_COLOUR.get(p.last_test.status, "bold"))
            test += f" {p.last_test.passed}/{p.last_test.total}"
        rows.append(
            [
                ref,
                colour(p.state, _STATE_COLOUR.get(p.state, "bold")),
                p.version or "-",
                p.source or "by hand",
                test,
                p.reason + _regressed(p),
            ]
        )
    lines.append("")
    lines.append(
        table(rows, ["pack", "state", "version", "source", "last test", "detail"])
        if rows
        else "no packs"
    )
    for c in status.conflicts:
        lines.append(f"conflict: {c['reason']}")
    return "\n".join(lines)
