"""attuned show REF: one pack, its components and its latest test result; and its last
attempt that did not become the served version (a candidate rolled back, content that is
invalid), even for a pack that was never registered: why it is not served is the question.

The attempt comes from the database (the newest test run, kept whatever became of the pack)
and from the daemon's status file (the pack's state and last error, the sources' invalid
entries), when there is one.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from attuned.cli.common import (
    add_common,
    config_of,
    execution_dict,
    open_registry,
    pack_dict,
    print_json,
    utc_iso,
)
from attuned.cli.summary import render_result
from attuned.cli.verbs import help_of
from attuned.errors import AttunedError, Problem, ValidationFailed
from attuned.results import PackTestResult
from attuned.store import cases, registered_packs, run_records
from attuned.store.models import TestRun, aware
from attuned.store.registered_packs import RegisteredPack
from attuned.testing.regressions import Case, case_id

_TRYING = (
    "failed",
    "invalid",
    "blocked",
    "pending",
)  # states in which the daemon's last try did not land
# the outcomes of a run whose version did not become the served one (attuned.registry.Outcome)
NOT_LANDED = frozenset({"rolled_back", "aborted", "cancelled", "environment_failed"})


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("show", help=help_of("show"))
    parser.add_argument("ref")
    parser.add_argument(
        "--provenance",
        action="store_true",
        help="where the served version came from: source, commit, signer, tests, and the "
        "sha256 of each file (as activated)",
    )
    add_common(parser)
    parser.set_defaults(run=run)


@dataclass(frozen=True)
class Attempt:
    """The newest try at a version that is not served: which, when, how it ended, why."""

    version: str | None
    at: datetime | None
    outcome: str  # a run's outcome (rolled_back), `invalid`, or the daemon's pack state
    reason: str
    failing: list[Case] = field(default_factory=list)

    def json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "at": None if self.at is None else utc_iso(self.at),
            "outcome": self.outcome,
            "reason": self.reason,
            "failing_cases": [
                {"case": case_id(c.key), "status": c.status, "message": c.message}
                for c in self.failing
            ],
        }


@dataclass(frozen=True)
class DaemonView:
    """What the status file says of one ref: its pack entry, the invalid entries naming it."""

    entry: dict[str, Any] | None = None
    invalid: list[tuple[dict[str, Any], str | None]] = field(default_factory=list)


def run(args: argparse.Namespace) -> int:
    if args.provenance:
        return show_provenance(args)
    config = config_of(args)
    with open_registry(args, config) as registry, registry.db.read() as session:
        record = registered_packs.get_pack(session, args.ref)
        components = registered_packs.components_of(session, record.id) if record else []
        latest = next(iter(run_records.executions(session, args.ref, limit=1)), None)
        failing = [c for c in cases.run_cases(session, latest) if c.failing] if latest else []
    attempt = last_attempt(record, latest, failing, daemon_view(config.status_path, args.ref))
    if record is None and attempt is None:
        raise ValidationFailed([Problem(None, f"pack {args.ref!r} is not registered")])
    if args.json:
        print_json(
            {
                "pack": pack_dict(record) if record else None,
                "components": [
                    {"kind": c.kind, "id": c.id, "ref": c.ref, **c.details} for c in components
                ],
                "latest_test": execution_dict(latest, full=True) if latest else None,
                "last_attempt": attempt.json() if attempt else None,
            }
        )
        return 0
    if record is None:
        print(f"{args.ref}: not registered, nothing served")
    else:
        _print_pack(record, components)
    if attempt is not None:
        _print_attempt(attempt, record)
    _print_test(latest, record)
    return 0


# -- provenance -----------------------------------------------------------------------------


def show_provenance(args: argparse.Namespace) -> int:
    """The record of the newest activation of the ref (the version served since)."""
    from attuned.store import provenance

    with open_registry(args) as registry, registry.db.read() as session:
        found = provenance.latest(session, args.ref)
    if found is None:
        raise ValidationFailed(
            [Problem(None, f"pack {args.ref!r} has no provenance record (never activated)")]
        )
    record = provenance.as_dict(found)
    if args.json:
        print_json(record)
        return 0
    for line in provenance_lines(record):
        print(line)
    return 0


def provenance_lines(record: dict[str, Any]) -> list[str]:
    tests = record["tests"]
    lines = [
        f"{record['pack']} {record['version']}, activated {record['activated_at']} "
        f"on {record['host'] or '-'}",
        f"  digest     {record['digest']}",
        f"  source     {record['source'] or '(by hand)'} ({record['source_type']})",
        f"  url        {record['source_url'] or '-'}",
        f"  commit     {record['commit'] or '-'}",
        f"  tree       {record['tree'] or '-'}",
        f"  signer     {record['signer'] or '-'}",
        "  tests      "
        + (
            "skipped"
            if tests is None
            else f"{tests['status']}, {tests['passed']}/{tests['total']} passed "
            f"(run {record['test_run_id']})"
        ),
        f"  env lock   {record['env_lock'] or '-'}",
        f"files ({len(record['files'])}, sha256):",
    ]
    lines.extend(f"  {sha}  {path}" for path, sha in record["files"].items())
    return lines


# -- what is known of the last attempt ------------------------------------------------------


def daemon_view(status_path: Path, ref: str) -> DaemonView:
    """The status file's word on `ref`; nothing when there is no (readable) file."""
    from attuned.cli.statusfile import read

    try:
        status = read(status_path)
    except AttunedError:
        return DaemonView()
    invalid = [
        (bad, source["last_scan"])
        for source in status["sources"]
        for bad in source["invalid"]
        if ref in (bad.get("ref"), bad.get("entry"))
    ]
    return DaemonView(status["packs"].get(ref), invalid)


def last_attempt(
    record: RegisteredPack | None,
    latest: TestRun | None,
    failing: list[Case],
    view: DaemonView,
) -> Attempt | None:
    """The newest try that did not become what is served, or None when there is none."""
    entry = view.entry or {}
    wanted = entry.get("desired_version") or (entry.get("last_test") or {}).get("version")
    if view.invalid:
        bad, scanned = view.invalid[0]
        when = entry.get("last_error_at") or scanned
        problems = "; ".join(str(p) for p in bad.get("problems", []))
        return Attempt(wanted, _moment(when), "invalid", problems)
    if latest is not None and _candidate(latest):  # (a pack unregistered on purpose: none)
        said = entry.get("last_error") if wanted in (None, latest.pack_version) else None
        return Attempt(
            latest.pack_version,
            aware(latest.execution_time),
            latest.outcome,
            said or latest.gate_reason,
            failing,
        )
    if entry.get("state") in _TRYING and (entry.get("last_error") or record is None):
        why = entry.get("last_error") or entry.get("reason") or ""
        return Attempt(wanted, _moment(entry.get("last_error_at")), entry["state"], why)
    return None


def _candidate(run: TestRun) -> bool:
    """Whether `run` tested a candidate that did not land (an upgrade refused)."""
    return run.outcome in NOT_LANDED


def _moment(value: str | None) -> datetime | None:
    return None if not value else aware(datetime.fromisoformat(value))


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else f"{moment:%Y-%m-%d %H:%M:%S}"


# -- text -----------------------------------------------------------------------------------


def _print_pack(record: RegisteredPack, components: list[Any]) -> None:
    print(f"{record.ref} {record.version}  {record.label}")
    if record.description:
        print(f"  {record.description}")
    if record.managed:
        print(f"  digest {record.digest}")
        print(f"  origin {record.origin}")
    else:
        print("  not registered by attuned (Attune's own, or replaced behind attuned's back)")
    print(f"  served at {record.storage_path or '-'}")
    print(
        f"  registered {record.created_at:%Y-%m-%d %H:%M:%S}, "
        f"updated {record.updated_at:%Y-%m-%d %H:%M:%S}"
    )
    print(f"components ({len(components)}):")
    for c in components:
        print(f"  {c.kind:<19} {c.ref}{_detail(c.kind, c.details)}")


def _print_attempt(attempt: Attempt, record: RegisteredPack | None) -> None:
    serving = f" (serving {record.version})" if record else ""
    print(
        f"last attempt: {attempt.version or 'unknown version'}, {_when(attempt.at)}, "
        f"{_words(attempt.outcome)}{serving}"
    )
    if attempt.reason:
        print(f"  reason: {attempt.reason}")


def _print_test(latest: TestRun | None, record: RegisteredPack | None) -> None:
    if latest is None:
        print("latest test: none")
        return
    if _candidate(latest):
        title = f"tests of {latest.pack_version} (candidate, {_words(latest.outcome)})"
    elif record is not None and latest.pack_version != record.version:
        title = f"latest test, of {latest.pack_version} (not the served version)"
    else:
        title = f"latest test of {latest.pack_version}"
    print(
        f"{title} ({latest.trigger_type}, {latest.outcome}, "
        f"{aware(latest.execution_time):%Y-%m-%d %H:%M:%S}):"
    )
    print(render_result(PackTestResult.model_validate(latest.result)))


def _words(outcome: str) -> str:
    return outcome.replace("_", " ") or "unknown"


def _detail(kind: str, details: dict[str, Any]) -> str:
    """The one column that says most about a component row."""
    if kind == "rule":
        return f"  ({details['trigger_ref']} -> {details['action_ref']})"
    if kind == "sensor":
        return f"  (runtime {details['runtime_ref']})"
    if kind == "action" and details.get("workflow_def") is not None:
        return "  (workflow)"
    if kind == "action" and details.get("runtime") is None:
        return "  (no runtime)"
    return ""
