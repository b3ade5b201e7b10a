"""Which log events also go to the outbox, how severe each is, and what an event looks like
on the wire. docs/notifications.md documents the envelope and every event's data.

An event's `data` is the same set of fields its log line carries (pack, version, digest,
source, revision, and the event's own), so the log and the outbox never tell two stories.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

from attuned.report.log import Event
from attuned.results import CaseStatus, PackTestResult
from attuned.settings.notify import SinkConfig
from attuned.store.outbox import EventRecord, Route, StoredEvent, stable_id

SCHEMA = "attuned.event/1"

# the state changes the outbox carries, with the severity their log line has
SEVERITY: dict[str, str] = {
    Event.PACK_REGISTERED: "info",
    Event.PACK_UPGRADED: "info",
    Event.PACK_REINSTALLED: "info",
    Event.PACK_FORCED: "warning",
    Event.PACK_TEST_FINISHED: "info",
    Event.PACK_TEST_FAILED: "warning",
    Event.PACK_ROLLED_BACK: "warning",
    Event.PACK_REGISTER_FAILED: "error",
    Event.PACK_UNREGISTERED: "info",
    Event.PACK_REMOVED: "info",
    Event.PACK_FAILED: "warning",
    Event.PACK_BLOCKED: "warning",
    Event.PACK_CONFLICT: "warning",
    Event.PACK_DRIFT_REPAIRED: "warning",
    Event.PACK_DRIFT_DETECTED: "warning",
    Event.PACK_SUSPENDED: "info",
    Event.PACK_RESUMED: "info",
    Event.PACK_RUNTIME_LINKED: "info",
    Event.SOURCE_ERROR: "warning",
    Event.SOURCE_FETCHED: "info",
    Event.SOURCE_VERIFICATION_FAILED: "warning",
    Event.CLUSTER_LEADER_ELECTED: "info",
}
OUTBOX_EVENTS = frozenset(SEVERITY)

FAILED_CASES_MAX = 20  # cases named in a test event; the rest are counted
MESSAGE_MAX = 500  # characters of a failed case's message


def routes(sinks: Sequence[SinkConfig]) -> dict[str, Route]:
    """Each sink's filter, as the outbox asks it when an event is written."""
    return {sink.name: partial(_takes, sink) for sink in sinks}


def _takes(sink: SinkConfig, event: EventRecord) -> bool:
    return sink.takes(event.name, event.severity, event.ref)


def record(event: Event, fields: Mapping[str, Any], *, stable: str | None = None) -> EventRecord:
    """The outbox record of a log event with these fields. `stable`: a key naming a
    standing condition (a pack blocked for one reason), which gets the same id each time it
    is reported, so reporting it again after a restart writes nothing new."""
    if event not in SEVERITY:
        raise ValueError(f"{event} is not an outbox event")
    data = {k: _json_value(v) for k, v in fields.items()}
    ref = data.get("pack") if isinstance(data.get("pack"), str) else None
    if ref is not None:
        subject = f"pack:{ref}"
    elif isinstance(data.get("source"), str):
        subject = f"source:{data['source']}"
    else:
        subject = event.value.split(".", 1)[0]  # cluster, pack (runtime links) ...
    kwargs: dict[str, Any] = {}
    if stable is not None:
        kwargs["id"] = stable_id(event.value, stable)
    return EventRecord(
        name=event.value, severity=SEVERITY[event], subject=subject, data=data, ref=ref, **kwargs
    )


def _json_value(value: Any) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_json_value(v) for v in value]
    return str(value)


def test_summary(result: PackTestResult, test_run_id: int | None) -> dict[str, Any]:
    """What a test event says of a run: counts, verdict, gate and the cases that failed
    (never the output: that stays in `attuned history`)."""
    failed: list[dict[str, Any]] = []
    for suite in result.test_suites:
        bad = [c for c in suite.test_cases if c.status in (CaseStatus.FAILED, CaseStatus.ERROR)]
        failed += [
            {
                "suite": suite.name,
                "case": case.name,
                "status": case.status.value,
                "message": _short(case.error_message),
            }
            for case in bad
        ]
        if suite.failed and not bad:  # a script runner: the suite is the case
            failed.append(
                {
                    "suite": suite.name,
                    "case": None,
                    "status": "failed",
                    "message": f"exit code {suite.exit_code}"
                    if suite.exit_code is not None
                    else None,
                }
            )
    return {
        "test_run_id": test_run_id,
        "status": result.status.value,
        "total": result.total_tests,
        "passed": result.passed,
        "failed": result.failed,
        "skipped": result.skipped,
        "pass_rate": result.pass_rate,
        "duration_ms": result.duration_ms,
        "gate_passed": result.gate.passed,
        "gate_reason": result.gate.reason,
        "failed_cases": failed[:FAILED_CASES_MAX],
        "failed_cases_omitted": max(len(failed) - FAILED_CASES_MAX, 0),
        "baseline_version": result.gate.baseline_version,
        "regressions": result.gate.regressions[:FAILED_CASES_MAX],
        "flaky": result.gate.flaky[:FAILED_CASES_MAX],
        "slower": result.gate.slower[:FAILED_CASES_MAX],
    }


def _short(text: str | None) -> str | None:
    if text is None:
        return None
    text = text.strip()
    return text if len(text) <= MESSAGE_MAX else text[: MESSAGE_MAX - 1] + "…"


def envelope(event: StoredEvent) -> dict[str, Any]:
    """The JSON every webhook and exec sink receives; the same on every attempt."""
    return {
        "schema": SCHEMA,
        "id": event.id,
        "event": event.name,
        "severity": event.severity,
        "occurred_at": event.created_at.isoformat().replace("+00:00", "Z"),
        "node": event.node,
        "subject": event.subject,
        "data": event.data,
    }


def encode(event: StoredEvent) -> bytes:
    return json.dumps(envelope(event), separators=(",", ":"), ensure_ascii=False).encode()
