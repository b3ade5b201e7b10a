"""What a registry change tells: the facts every pack event carries, the events a stored
test run and a registration write to the outbox, and the log lines that say the same.

The outbox records are written in the change's own transaction; the log lines follow once
it stands, each naming the id of the outbox event it matches.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session
from structlog.typing import FilteringBoundLogger

from attuned.notify import events
from attuned.pack.loader import Pack
from attuned.registry.verdict import Decision, Outcome, Trigger
from attuned.report.log import Event
from attuned.results import PackTestResult
from attuned.store import repository
from attuned.store.outbox import EventRecord
from attuned.store.repository import RegisteredPack

REGISTERED_EVENT = {
    Trigger.REGISTER: Event.PACK_REGISTERED,
    Trigger.UPGRADE: Event.PACK_UPGRADED,
    Trigger.REINSTALL: Event.PACK_REINSTALLED,
    Trigger.MANUAL: Event.PACK_REGISTERED,
}


def about(pack: Pack | RegisteredPack, source: str | None, revision: str | None) -> dict[str, Any]:
    """The fields every pack event carries, in the log and in the outbox."""
    return {
        "pack": pack.ref,
        "version": pack.version,
        "digest": pack.digest or None,
        "source": source,
        "revision": revision,
    }


def store_run(
    session: Session,
    result: PackTestResult | None,
    trigger: Trigger,
    outcome: Outcome,
    facts: dict[str, Any],
) -> tuple[int | None, list[EventRecord]]:
    """Add the run (if tests ran) to the audit trail; returns its id and its events, for the
    caller's transaction to write."""
    if result is None:
        return None, []
    run = repository.add_test_run(
        session,
        result,
        trigger_type=trigger.value,
        outcome=outcome.value,
        pack_digest=facts["digest"] or "",
        source=facts["source"],
        source_revision=facts["revision"],
    )
    return run.id, run_events(result, run.id, trigger, outcome, facts)


def run_events(
    result: PackTestResult,
    run_id: int | None,
    trigger: Trigger,
    outcome: Outcome,
    facts: dict[str, Any],
) -> list[EventRecord]:
    """The events of a stored test run: it finished, the gate failed, it was rolled back."""
    fields = {
        **facts,
        "trigger": trigger.value,
        "outcome": outcome.value,
        "tests": events.test_summary(result, run_id),
    }
    written = [events.record(Event.PACK_TEST_FINISHED, fields)]
    if not result.gate.passed:
        written.append(events.record(Event.PACK_TEST_FAILED, fields))
    if outcome in (Outcome.ROLLED_BACK, Outcome.ENVIRONMENT_FAILED):
        written.append(
            events.record(Event.PACK_ROLLED_BACK, {**fields, "reason": result.gate.reason})
        )
    return written


def forced_events(
    facts: dict[str, Any], decision: Decision, result: PackTestResult | None
) -> list[EventRecord]:
    """`pack.forced` when the pack goes ahead past a failed gate (warned or forced)."""
    if decision.outcome is Outcome.REGISTERED:
        return []
    reason = result.gate.reason if result else ""
    return [
        events.record(
            Event.PACK_FORCED, {**facts, "outcome": decision.outcome.value, "reason": reason}
        )
    ]


def registered_event(
    facts: dict[str, Any],
    decision: Decision,
    result: PackTestResult | None,
    pack_id: int,
    run_id: int | None,
    runtimes: list[str],
) -> EventRecord:
    """The registration's own event: registered, upgraded or reinstalled."""
    return events.record(
        REGISTERED_EVENT[decision.trigger],
        {
            **facts,
            "pack_id": pack_id,
            "previous_version": decision.previous_version,
            "trigger": decision.trigger.value,
            "outcome": decision.outcome.value,
            "test_status": result.status.value if result else "skipped",
            "test_run_id": run_id,
            "runtime_names": runtimes,
        },
    )


def log_registered(
    plog: FilteringBoundLogger,
    decision: Decision,
    result: PackTestResult | None,
    written: list[EventRecord],
) -> None:
    """The log lines of a registration that stands, once its transaction committed."""
    trigger, outcome = decision.trigger, decision.outcome
    if outcome is not Outcome.REGISTERED:  # warned or forced past a failed gate
        plog.warning(
            Event.PACK_FORCED,
            outcome=outcome.value,
            reason=result.gate.reason if result else "",
            event_id=id_of(written, Event.PACK_FORCED),
        )
    plog.info(
        REGISTERED_EVENT[trigger],
        previous_version=decision.previous_version,
        trigger=trigger.value,
        outcome=outcome.value,
        tests=result.status.value if result else "skipped",
        event_id=id_of(written, REGISTERED_EVENT[trigger]),
    )


def id_of(written: list[EventRecord], event: Event) -> str | None:
    return next((r.id for r in written if r.name == event), None)
