"""How `attuned history` prints each of its views, as a table or with --json: the runs of a
pack, one case across runs, the cases of one run (with each failure's whole message and
output), the flaky cases.

Kept apart from attuned/cli/history.py, which parses the flags and runs the queries, so
that each reads on its own.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any

from attuned.cli.common import counted, execution_dict, print_json, table, utc_iso
from attuned.store import runs
from attuned.store.models import TestRun, aware
from attuned.testing.regressions import Case, case_id

_MESSAGE_WIDTH = 72


def filtered(args: argparse.Namespace) -> bool:
    """Whether a filter flag was given: then an empty answer blames the filters."""
    return any((args.versions, args.since, args.until, args.statuses, args.triggers))


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
