"""Outbox events: which log events they are, their subject and severity, stable ids for
conditions, and what a test event says of a run."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from attuned.notify import events
from attuned.report.log import Event
from attuned.results import (
    CaseStatus,
    GateDecision,
    PackTestResult,
    TestCaseResult,
    TestSuiteResult,
)
from attuned.store.outbox import StoredEvent


def test_subject_orders_by_pack_else_by_source() -> None:
    pack = events.record(Event.PACK_BLOCKED, {"pack": "hello", "source": "local", "reason": "x"})
    source = events.record(Event.SOURCE_ERROR, {"source": "local", "error": "gone"})
    leader = events.record(Event.CLUSTER_LEADER_ELECTED, {"node": "h2"})
    assert [(e.subject, e.ref, e.severity) for e in (pack, source, leader)] == [
        ("pack:hello", "hello", "warning"),
        ("source:local", None, "warning"),
        ("cluster", None, "info"),
    ]


def test_a_condition_has_one_id_however_often_it_is_reported() -> None:
    fields = {"pack": "hello", "reason": "needs core"}
    once = events.record(Event.PACK_BLOCKED, fields, stable="blocked:hello\x1fneeds core")
    again = events.record(Event.PACK_BLOCKED, fields, stable="blocked:hello\x1fneeds core")
    other = events.record(Event.PACK_BLOCKED, fields, stable="blocked:hello\x1fneeds web")
    assert once.id == again.id != other.id
    assert events.record(Event.PACK_BLOCKED, fields).id != once.id  # a plain event: new id


def test_only_state_changes_go_to_the_outbox() -> None:
    with pytest.raises(ValueError, match="not an outbox event"):
        events.record(Event.RECONCILE_STARTED, {})


def test_a_test_event_names_the_failed_cases_but_never_the_output() -> None:
    cases = [
        TestCaseResult(name=f"case{n}", status=CaseStatus.FAILED, error_message="x" * 2000)
        for n in range(25)
    ] + [TestCaseResult(name="fine", status=CaseStatus.PASSED, stdout="secret output")]
    suite = TestSuiteResult(
        name="pytest",
        runner_type="pytest",
        total=26,
        passed=1,
        failed=25,
        skipped=0,
        duration_ms=5,
        test_cases=cases,
        stdout="all the output",
    )
    result = PackTestResult.from_suites(
        pack_ref="hello",
        pack_version="1.0.0",
        execution_time=datetime.now(UTC),
        duration_ms=5,
        suites=[suite],
        gate=GateDecision(passed=False, reason="failed"),
    )
    summary = events.test_summary(result, 7)
    assert (summary["test_run_id"], summary["status"], summary["failed"]) == (7, "failed", 25)
    assert len(summary["failed_cases"]) == 20 and summary["failed_cases_omitted"] == 5
    assert len(summary["failed_cases"][0]["message"]) == events.MESSAGE_MAX
    assert "output" not in repr(summary)


def test_the_envelope_is_the_same_bytes_on_every_attempt() -> None:
    stored = StoredEvent(
        seq=1,
        id="0b7c",
        name="pack.registered",
        severity="info",
        subject="pack:hello",
        ref="hello",
        node="h1",
        data={"pack": "hello", "note": "größe"},
        created_at=datetime(2026, 12, 5, 8, 0, 0, 123456, tzinfo=UTC),
    )
    assert events.encode(stored) == events.encode(stored)
    assert events.envelope(stored) == {
        "schema": "attuned.event/1",
        "id": "0b7c",
        "event": "pack.registered",
        "severity": "info",
        "occurred_at": "2026-12-05T08:00:00.123456Z",
        "node": "h1",
        "subject": "pack:hello",
        "data": {"pack": "hello", "note": "größe"},
    }
