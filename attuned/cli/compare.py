"""attuned compare REF [A] [B]: what changed, case by case, between two test runs of a pack
(by default: the serving version's newest run and the latest candidate's).

Exit 0: nothing newly failing; 1: regressions (cases that passed in A and fail in B, not
flaky); 2: no such pack, run or selector. The comparison is the regression gate's own
(attuned.store.comparisons.compare_runs), so `compare` says what the gate would.
"""

from __future__ import annotations

import argparse
from typing import Any

from attuned.cli.common import add_common, colour, open_registry, print_json, utc_iso
from attuned.cli.verbs import help_of
from attuned.store.comparisons import RunComparison, compare_runs
from attuned.store.models import TestRun
from attuned.testing.regressions import KINDS, Change, Thresholds

TITLES = {
    "newly_failing": ("newly failing", "red"),
    "fixed": ("fixed", "green"),
    "new": ("new", "bold"),
    "removed": ("removed", "bold"),
    "still_failing": ("still failing", "red"),
    "slower": ("slower", "yellow"),
    "faster": ("faster", "green"),
    "flaky": ("flaky", "yellow"),
}
_MESSAGE_WIDTH = 100


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("compare", help=help_of("compare"))
    parser.add_argument("ref")
    parser.add_argument(
        "a",
        nargs="?",
        metavar="A",
        help="the run before: a version, #ID, serving or latest (default: serving)",
    )
    parser.add_argument(
        "b",
        nargs="?",
        metavar="B",
        help="the run after (default: the newest run of other content than A's)",
    )
    add_common(parser)
    parser.set_defaults(run=run, error_exit=2)


def run(args: argparse.Namespace) -> int:
    """Exit 1 means regressions, so every error exits 2 (`error_exit`), the database's too."""
    with open_registry(args) as registry, registry.db.read() as session:
        history = registry.executor.settings.history
        found = compare_runs(
            session,
            args.ref,
            args.a,
            args.b,
            window=history.flaky_window,
            thresholds=Thresholds(history.slower_percent, history.slower_ms),
        )
    if args.json:
        print_json(comparison_dict(found))
    else:
        print(render(found))
    return 1 if found.comparison.regressions else 0


def run_dict(record: TestRun) -> dict[str, Any]:
    return {
        "run_id": record.id,
        "version": record.pack_version,
        "digest": record.pack_digest,
        "execution_time": utc_iso(record.execution_time),
    }


def change_dict(change: Change) -> dict[str, Any]:
    return {
        "case": change.case,
        "before": change.before,
        "after": change.after,
        "before_ms": change.before_ms,
        "after_ms": change.after_ms,
        "message": change.message,
    }


def comparison_dict(found: RunComparison) -> dict[str, Any]:
    comparison = found.comparison
    return {
        "pack": found.ref,
        "before": run_dict(found.before),
        "after": run_dict(found.after),
        "regressions": bool(comparison.regressions),
        "counts": comparison.counts(),
        "cases": {kind: [change_dict(c) for c in getattr(comparison, kind)] for kind in KINDS},
    }


def label(found: RunComparison, record: TestRun) -> str:
    """`1.0.0 (#12)`, saying when the run is of the content attuned serves."""
    serving = (
        ", serving" if record.pack_digest and record.pack_digest == found.serving_digest else ""
    )
    return f"{record.pack_version} (#{record.id}{serving})"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:g} ms"


def describe(kind: str, change: Change) -> str:
    if kind in ("slower", "faster"):
        return f"{change.case}  {_ms(change.before_ms)} -> {_ms(change.after_ms)}"
    if kind == "new":
        text = f"{change.case}  {change.after}"
    elif kind == "removed":
        text = f"{change.case}  was {change.before}"
    else:
        text = f"{change.case}  {change.before} -> {change.after}"
    if change.message:
        first = change.message.strip().splitlines()[0] if change.message.strip() else ""
        if first:
            cut = first if len(first) <= _MESSAGE_WIDTH else first[: _MESSAGE_WIDTH - 3] + "..."
            text += f": {cut}"
    return text


def render(found: RunComparison) -> str:
    comparison = found.comparison
    lines = [f"{found.ref}: {label(found, found.before)} -> {label(found, found.after)}"]
    for kind in KINDS:
        changes = getattr(comparison, kind)
        if not changes:
            continue
        title, tint = TITLES[kind]
        lines.append(colour(f"{title} ({len(changes)}):", tint))
        lines += [f"  {describe(kind, c)}" for c in changes]
    counts = comparison.counts()
    summary = ", ".join(f"{counts[kind]} {TITLES[kind][0]}" for kind in KINDS)
    lines.append(
        f"{summary}, {counts['unchanged']} unchanged between "
        f"{found.before.pack_version} (#{found.before.id}) and "
        f"{found.after.pack_version} (#{found.after.id})"
    )
    return "\n".join(lines)
