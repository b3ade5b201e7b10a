"""attuned history REF: the test runs of a pack, newest first (the audit trail), filtered;
one case across runs (--case), one run case by case (--cases), flaky cases (--flaky).

The queries are attuned.store.runs'; this module parses flags and prints.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlmodel import Session

from attuned.cli.common import (
    add_common,
    counted,
    execution_dict,
    open_registry,
    print_json,
    table,
    utc_iso,
)
from attuned.cli.verbs import help_of
from attuned.errors import Problem, ValidationFailed
from attuned.store import cases, repository, runs
from attuned.store.models import TestRun, aware
from attuned.testing.regressions import Case, case_id

NEWEST = -1  # `--cases` without a run id
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_MESSAGE_WIDTH = 72


DEFAULT_LIMIT = 100  # rows a query returns unless --limit or --all says otherwise


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("history", help=help_of("history"))
    parser.add_argument("ref")
    parser.add_argument(
        "--limit", type=int, default=None, help=f"show at most N rows (default {DEFAULT_LIMIT})"
    )
    parser.add_argument("--all", action="store_true", help="every row, however many")
    parser.add_argument("--full", action="store_true", help="with --json: include full results")
    picks = parser.add_argument_group("filters (combined: a run must match all)")
    picks.add_argument(
        "--version", dest="versions", action="append", metavar="V", help="runs of version V"
    )
    picks.add_argument(
        "--since", type=since, metavar="WHEN", help="runs at or after WHEN: ISO 8601, or 2h, 7d"
    )
    picks.add_argument(
        "--until", type=until, metavar="WHEN", help="runs at or before WHEN (a date: its end)"
    )
    picks.add_argument(
        "--status",
        dest="statuses",
        action="extend",
        type=statuses,
        metavar="STATUS",
        help=f"{'|'.join(runs.STATUSES)}; repeatable or a comma list",
    )
    picks.add_argument(
        "--trigger",
        dest="triggers",
        action="extend",
        type=triggers,
        metavar="TRIGGER",
        help="install|update|manual (or register|upgrade|reinstall); repeatable or a comma list",
    )
    views = parser.add_mutually_exclusive_group()
    views.add_argument(
        "--case", metavar="GLOB", help="one row per run and case matching suite::name or name"
    )
    views.add_argument(
        "--cases",
        nargs="?",
        const=NEWEST,
        type=run_id,
        metavar="RUN_ID",
        help="the cases of one run (default: the newest run the filters select)",
    )
    views.add_argument(
        "--flaky", action="store_true", help="cases that flip within a digest's newest runs"
    )
    add_common(parser)
    parser.set_defaults(run=run)


# -- flag values --------------------------------------------------------------------------


def moment(text: str, *, end_of_day: bool = False) -> datetime:
    """An ISO 8601 date or time (UTC unless it names a zone), or a duration ago: `90s`,
    `30m`, `2h`, `7d`, `2w`. A date alone is its first instant, or with `end_of_day` its
    last (so `--until 2026-12-01` keeps that whole day)."""
    text = text.strip()
    relative = _RELATIVE.match(text)
    if relative:
        amount, unit = float(relative[1]), _UNITS[relative[2]]
        return datetime.now(UTC) - timedelta(**{unit: amount})
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            day = date.fromisoformat(text)
            at = time.max if end_of_day else time.min
            return datetime.combine(day, at, tzinfo=UTC)
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither an ISO 8601 date or time nor a duration like 2h, 30m, 7d"
        ) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def since(text: str) -> datetime:
    return moment(text)


def until(text: str) -> datetime:
    return moment(text, end_of_day=True)


def _items(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def statuses(text: str) -> list[str]:
    found = _items(text)
    unknown = [s for s in found if s not in runs.STATUSES]
    if unknown or not found:
        raise argparse.ArgumentTypeError(
            f"unknown status {', '.join(unknown) or repr(text)} (one of {', '.join(runs.STATUSES)})"
        )
    return found


def triggers(text: str) -> list[str]:
    try:
        return list(runs.stored_triggers(_items(text) or [text]))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def run_id(text: str) -> int:
    """A run id as history prints it (`#12`) or bare (`12`)."""
    number = text.removeprefix("#")
    if not number.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a run id (12 or #12)")
    return int(number)


def run_filter(args: argparse.Namespace) -> runs.RunFilter:
    return runs.RunFilter(
        ref=args.ref,
        versions=tuple(args.versions or ()),
        since=args.since,
        until=args.until,
        statuses=tuple(dict.fromkeys(args.statuses or ())),
        triggers=tuple(dict.fromkeys(args.triggers or ())),
        limit=None if args.all else (args.limit or DEFAULT_LIMIT),
    )


def filtered(args: argparse.Namespace) -> bool:
    return any((args.versions, args.since, args.until, args.statuses, args.triggers))


# -- the verb -----------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    where = run_filter(args)
    with open_registry(args) as registry, registry.db.read() as session:
        if not runs.has_runs(session, args.ref) and repository.get_pack(session, args.ref) is None:
            raise ValidationFailed(
                [Problem(None, f"pack {args.ref!r} is not registered and has no test runs")]
            )
        if args.case is not None:
            show_case(runs.case_runs(session, where, args.case), args)
        elif args.cases is not None:
            show_run_cases(*one_run(session, where, args.cases), json=args.json)
        elif args.flaky:
            window = registry.executor.settings.history.flaky_window
            show_flaky(runs.flaky(session, where, window), window, args)
        else:
            show_runs(runs.runs(session, where, full=args.full), args)
            if not args.json and where.limit is not None and args.limit is None:
                total = runs.count(session, replace(where, limit=None))
                if total > where.limit:
                    older = counted(total - where.limit, "older run")
                    print(f"({older}: --limit N or --all to see them)")
    return 0


def one_run(session: Session, where: runs.RunFilter, wanted: int) -> tuple[TestRun, list[Case]]:
    if wanted == NEWEST:
        found = runs.runs(session, replace(where, limit=1))
        if not found:
            raise runs.RunNotFound(f"no test run of {where.ref!r} matches")
        chosen = runs.run_by_id(session, where.ref, found[0].id)
    else:
        chosen = runs.run_by_id(session, where.ref, wanted)
    return chosen, cases.run_cases(session, chosen)


def _when(moment: datetime) -> str:
    return f"{aware(moment):%Y-%m-%d %H:%M:%S}"


def _line(message: str | None) -> str:
    """A failure's message on one table line: its first line, cut."""
    first = (message or "").strip().splitlines()[0] if (message or "").strip() else ""
    return first if len(first) <= _MESSAGE_WIDTH else first[: _MESSAGE_WIDTH - 3] + "..."


def _nothing(args: argparse.Namespace, what: str = "test executions") -> None:
    if filtered(args):
        print(f"no {what} of {args.ref!r} match the filters")
    else:
        print(f"no {what} recorded for {args.ref!r}")


def show_runs(rows: list[runs.RunRow], args: argparse.Namespace) -> None:
    if args.json:
        print_json([execution_dict(r, full=args.full) for r in rows])
        return
    if not rows:
        _nothing(args)
        return
    print(
        table(
            [
                [
                    f"#{r.id}",
                    _when(r.execution_time),
                    r.pack_version,
                    r.trigger_type,
                    r.status,
                    f"{r.passed}/{r.total_tests}",
                    f"{r.pass_rate:.0%}",
                    r.outcome,
                    ("passed" if r.gate_passed else "not passed") + f": {r.gate_reason}",
                ]
                for r in rows
            ],
            ["run", "time", "version", "trigger", "status", "passed", "rate", "outcome", "gate"],
        )
    )


def case_run_dict(row: runs.CaseRun) -> dict[str, Any]:
    return {
        "run_id": row.run_id,
        "pack_version": row.pack_version,
        "pack_digest": row.pack_digest,
        "trigger_type": row.trigger_type,
        "execution_time": utc_iso(row.execution_time),
        "case": row.case,
        "suite": row.suite,
        "name": row.name,
        "status": row.status,
        "duration_ms": row.duration_ms,
        "message": row.message,
    }


def show_case(rows: list[runs.CaseRun], args: argparse.Namespace) -> None:
    if args.json:
        print_json([case_run_dict(r) for r in rows])
        return
    if not rows:
        _nothing(args, f"runs of a case matching {args.case!r}")
        return
    print(
        table(
            [
                [
                    f"#{r.run_id}",
                    _when(r.execution_time),
                    r.pack_version,
                    r.trigger_type,
                    r.case,
                    r.status,
                    str(r.duration_ms),
                    _line(r.message),
                ]
                for r in rows
            ],
            ["run", "time", "version", "trigger", "case", "status", "ms", "message"],
        )
    )


def case_dict(case: Case) -> dict[str, Any]:
    return {
        "case": case_id(case.key),
        "suite": case.suite,
        "name": case.name,
        "status": case.status,
        "duration_ms": case.duration_ms,
        "message": case.message,
    }


def show_run_cases(chosen: TestRun, found: list[Case], *, json: bool) -> None:
    if json:
        print_json({"run": execution_dict(chosen), "cases": [case_dict(c) for c in found]})
        return
    print(
        f"run #{chosen.id}: {chosen.pack_ref} {chosen.pack_version}, {chosen.trigger_type}, "
        f"{chosen.status} ({chosen.passed}/{chosen.total_tests} passed), {chosen.outcome}, "
        f"{_when(chosen.execution_time)}"
    )
    if not found:
        print("no cases recorded")
        return
    rows = [
        [c.suite, c.name, c.status, str(c.duration_ms), _line(c.message)]
        for c in sorted(found, key=lambda c: c.key)
    ]
    print(table(rows, ["suite", "case", "status", "ms", "message"]))
    for block in failure_output(found, chosen.result):
        print(block)


def failure_output(found: list[Case], result: dict[str, Any]) -> list[str]:
    """Each failing case's whole message and captured output, which the table cuts to one
    line: what an operator reads to see why."""
    captured = _captured(result)
    blocks = []
    for case in sorted((c for c in found if c.failing), key=lambda c: c.key):
        parts = [f"{case.status.upper()} {case_id(case.key)}:"]
        if case.message and case.message.strip():
            parts.append(_indented(case.message))
        for stream, text in captured.get(case.key, {}).items():
            parts.append(f"  {stream}:")
            parts.append(_indented(text, "    "))
        blocks.append("\n".join(parts))
    return ["", *blocks] if blocks else []


def _captured(result: dict[str, Any]) -> dict[tuple[str, str], dict[str, str]]:
    """The stdout and stderr the stored result kept per case (suite, name), when it did."""
    found: dict[tuple[str, str], dict[str, str]] = {}
    for suite in result.get("test_suites") or []:
        for case in suite.get("test_cases") or []:
            streams = {
                name: str(case[name]).rstrip()
                for name in ("stdout", "stderr")
                if case.get(name) and str(case[name]).strip()
            }
            key = (str(suite.get("name", "")), str(case.get("name", "")))
            if streams:
                found.setdefault(key, streams)
    return found


def _indented(text: str, prefix: str = "  ") -> str:
    return "\n".join(prefix + line for line in text.rstrip().splitlines())


def flaky_dict(report: runs.FlakyDigest) -> dict[str, Any]:
    return {
        "digest": report.digest,
        "versions": list(report.versions),
        "run_ids": list(report.run_ids),
        "cases": [
            {
                "case": c.case,
                "suite": c.suite,
                "name": c.name,
                "passed": c.passed,
                "failed": c.failed,
                "skipped": c.skipped,
            }
            for c in report.cases
        ],
    }


def show_flaky(found: list[runs.FlakyDigest], window: int, args: argparse.Namespace) -> None:
    if args.json:
        print_json([flaky_dict(r) for r in found])
        return
    if not found:
        _nothing(args, f"flaky cases (within {counted(window, 'run')} of one digest)")
        return
    rows = [
        [
            ", ".join(report.versions),
            report.digest[:12] or "-",
            c.case,
            str(c.passed),
            str(c.failed),
            str(c.skipped),
            f"{len(report.run_ids)}: " + " ".join(f"#{i}" for i in report.run_ids),
        ]
        for report in found
        for c in report.cases
    ]
    print(table(rows, ["version", "digest", "case", "passed", "failed", "skipped", "runs"]))
