"""attuned history REF: the test runs of a pack, newest first (the audit trail), filtered;
one case across runs (--case), one run case by case (--cases), flaky cases (--flaky).

The queries are attuned.store.runs'; this module parses flags and asks them, and
attuned/cli/history_views.py prints what they found.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta

from sqlmodel import Session

from attuned.cli.common import add_common, counted, open_registry
from attuned.cli.history_views import show_case, show_flaky, show_run_cases, show_runs
from attuned.cli.verbs import help_of
from attuned.errors import Problem, ValidationFailed
from attuned.store import cases, repository, runs
from attuned.store.models import TestRun
from attuned.testing.regressions import Case

NEWEST = -1  # `--cases` without a run id
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


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
