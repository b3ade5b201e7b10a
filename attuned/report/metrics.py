"""Prometheus metrics as a node_exporter textfile: monitoring without an API.

Rendered from the same `Status` the status file holds, plus the few totals the status does
not keep (`MetricCounters`). The file is replaced atomically, so the collector never reads
half of it. docs/metrics.md documents every metric; a test keeps the two in step.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal, get_args

from attuned.report.atomic import replace_text
from attuned.report.status import PackState, Phase, Status
from attuned.results import TestStatus

MetricType = Literal["gauge", "counter"]
Labels = tuple[tuple[str, str], ...]


@dataclass
class MetricCounters:
    """Totals since the daemon started, which the status file does not hold.

    The daemon updates it from the main loop and from test worker threads, hence the lock.
    """

    passes_total: int = 0
    pass_errors_total: int = 0
    test_executions_by_status: dict[str, int] = field(default_factory=dict)
    source_last_success: dict[str, datetime] = field(default_factory=dict)
    notify_attempts: dict[tuple[str, str], int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count_pass(self, *, ok: bool) -> None:
        """A reconcile pass ended; `ok=False` when it ended degraded."""
        with self._lock:
            self.passes_total += 1
            if not ok:
                self.pass_errors_total += 1

    def count_test(self, status: str) -> None:
        """A pack test execution finished with this status (`passed`, `failed`...)."""
        with self._lock:
            counts = self.test_executions_by_status
            counts[status] = counts.get(status, 0) + 1

    def source_succeeded(self, source: str, at: datetime) -> None:
        """A scan read the source; kept here because the status forgets it on the next error."""
        with self._lock:
            self.source_last_success[source] = at

    def count_notify(self, sink: str, result: str) -> None:
        """A delivery attempt to `sink` ended: `delivered`, `retry` or `dead`."""
        with self._lock:
            key = (sink, result)
            self.notify_attempts[key] = self.notify_attempts.get(key, 0) + 1

    def snapshot(self) -> MetricCounters:
        """A consistent copy to render from, while other threads keep counting."""
        with self._lock:
            return MetricCounters(
                passes_total=self.passes_total,
                pass_errors_total=self.pass_errors_total,
                test_executions_by_status=dict(self.test_executions_by_status),
                source_last_success=dict(self.source_last_success),
                notify_attempts=dict(self.notify_attempts),
            )


@dataclass
class _Family:
    name: str
    type: MetricType
    help: str
    samples: list[tuple[Labels, float]] = field(default_factory=list)

    def add(self, value: float, **labels: str) -> None:
        self.samples.append((tuple(labels.items()), value))


def escape_label_value(value: str) -> str:
    """Text exposition format: backslash, double quote and line feed are escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def _render(family: _Family) -> str:
    lines = [
        f"# HELP {family.name} {_escape_help(family.help)}",
        f"# TYPE {family.name} {family.type}",
    ]
    for labels, value in family.samples:
        if labels:
            inner = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in labels)
            lines.append(f"{family.name}{{{inner}}} {_number(value)}")
        else:
            lines.append(f"{family.name} {_number(value)}")
    return "\n".join(lines) + "\n"


def _daemon_families(status: Status) -> list[_Family]:
    build = _Family("attuned_build_info", "gauge", "attuned's version, as a label; always 1")
    build.add(1, version=status.daemon.version)
    start = _Family(
        "attuned_daemon_start_time_seconds", "gauge", "when the daemon started, unix seconds"
    )
    start.add(status.daemon.started_at.timestamp())
    phase = _Family(
        "attuned_daemon_phase", "gauge", "1 for the daemon's current phase, 0 for the others"
    )
    for name in get_args(Phase):
        phase.add(1 if status.daemon.phase == name else 0, phase=name)
    return [build, start, phase]


def _pack_families(status: Status) -> list[_Family]:
    packs = _Family("attuned_packs", "gauge", "packs the daemon knows of, by state")
    for state in get_args(PackState):
        packs.add(sum(1 for p in status.packs.values() if p.state == state), state=state)
    conflicts = _Family(
        "attuned_conflicts", "gauge", "pack refs offered by more than one source or entry"
    )
    conflicts.add(len(status.conflicts))
    return [packs, conflicts]


def _reconcile_families(status: Status, counters: MetricCounters) -> list[_Family]:
    passes = _Family(
        "attuned_reconcile_passes_total", "counter", "reconcile passes since the daemon started"
    )
    passes.add(counters.passes_total)
    errors = _Family(
        "attuned_reconcile_errors_total",
        "counter",
        "reconcile passes that ended degraded (database down, disk full...)",
    )
    errors.add(counters.pass_errors_total)
    duration = _Family(
        "attuned_reconcile_duration_seconds", "gauge", "how long the last completed pass took"
    )
    success = _Family(
        "attuned_reconcile_last_success_timestamp_seconds",
        "gauge",
        "when the last completed pass finished, unix seconds",
    )
    if status.last_reconcile is not None:
        duration.add(status.last_reconcile.duration_ms / 1000)
        success.add(status.last_reconcile.finished_at.timestamp())
    tests = _Family(
        "attuned_test_executions_total", "counter", "pack test executions since start, by status"
    )
    by_status = {s.value: 0 for s in TestStatus} | counters.test_executions_by_status
    for name in sorted(by_status):
        tests.add(by_status[name], status=name)
    return [passes, errors, duration, success, tests]


def _source_families(status: Status, counters: MetricCounters) -> list[_Family]:
    up = _Family("attuned_source_up", "gauge", "1 when the last scan could read the source")
    success = _Family(
        "attuned_source_last_success_timestamp_seconds",
        "gauge",
        "when a scan last read the source, unix seconds",
    )
    candidates = _Family(
        "attuned_source_candidates", "gauge", "packs found in the source at the last scan"
    )
    invalid = _Family(
        "attuned_source_invalid_entries", "gauge", "entries of the source that are not valid packs"
    )
    for source in status.sources:
        if source.last_scan is None:  # not scanned yet: nothing is known
            continue
        readable = source.readable and source.error is None
        up.add(1 if readable else 0, source=source.name)
        last = source.last_scan if readable else counters.source_last_success.get(source.name)
        if last is not None:
            success.add(last.timestamp(), source=source.name)
        candidates.add(source.candidates, source=source.name)
        invalid.add(len(source.invalid), source=source.name)
    return [up, success, candidates, invalid]


NOTIFY_RESULTS = ("delivered", "retry", "dead")


def _notify_families(status: Status, counters: MetricCounters) -> list[_Family]:
    deliveries = _Family(
        "attuned_notify_deliveries",
        "gauge",
        "event deliveries kept in the outbox, by sink and state (pending, delivered, dead)",
    )
    attempts = _Family(
        "attuned_notify_attempts_total",
        "counter",
        "delivery attempts since the daemon started, by sink and result",
    )
    last = _Family(
        "attuned_notify_last_delivery_timestamp_seconds",
        "gauge",
        "when the sink last took an event, unix seconds",
    )
    for sink in status.notify:
        for state in ("pending", "delivered", "dead"):
            deliveries.add(getattr(sink, state), sink=sink.name, state=state)
        for result in NOTIFY_RESULTS:
            attempts.add(
                counters.notify_attempts.get((sink.name, result), 0), sink=sink.name, result=result
            )
        if sink.last_delivered_at is not None:
            last.add(sink.last_delivered_at.timestamp(), sink=sink.name)
    return [deliveries, attempts, last]


def render_metrics(status: Status, counters: MetricCounters) -> str:
    """The textfile for this status: every family with HELP and TYPE, in a stable order."""
    counts = counters.snapshot()
    families = [
        *_daemon_families(status),
        *_pack_families(status),
        *_reconcile_families(status, counts),
        *_source_families(status, counts),
        *_notify_families(status, counts),
    ]
    return "".join(_render(f) for f in families)


def write_metrics(path: Path, text: str) -> None:
    """Replace `path` atomically with mode 0644 (node_exporter runs as another user). The
    directory is not created: it belongs to node_exporter's set-up."""
    replace_text(path, text)
