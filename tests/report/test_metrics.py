"""The Prometheus textfile: read back with prometheus_client's own parser, replaced atomically,
and documented metric by metric."""

from __future__ import annotations

import os
import re
import stat
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from attuned.report.metrics import MetricCounters, render_metrics, write_metrics
from attuned.report.status import (
    DaemonStatus,
    PackStatus,
    ReconcileSummary,
    SinkStatus,
    SourceStatus,
    Status,
)
from tests.conftest import REPO

NOW = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)
STARTED = NOW - timedelta(hours=2)
STATES = ("active", "pending", "failed", "invalid", "blocked", "removed", "suspended", "kept")
PHASES = ("starting", "idle", "reconciling", "degraded", "stopping", "stopped")


def make_status(**overrides: object) -> Status:
    data: dict[str, object] = {
        "daemon": DaemonStatus(version="0.1.0", pid=42, started_at=STARTED, phase="idle"),
        "updated_at": NOW,
        "last_reconcile": ReconcileSummary(
            started_at=NOW - timedelta(seconds=2),
            finished_at=NOW - timedelta(seconds=1),
            duration_ms=1250,
            trigger="full",
        ),
        "sources": [
            SourceStatus(
                name="local",
                type="directory",
                location="/srv/attuned/packs.d",
                last_scan=NOW - timedelta(seconds=2),
                candidates=3,
                invalid=[{"entry": "broken", "problems": ["pack.yaml:1: ref: missing"]}],
            ),
            SourceStatus(
                name="nfs",
                type="directory",
                location="/mnt/packs",
                readable=False,
                last_scan=NOW - timedelta(seconds=2),
                error="No such file or directory",
                error_since=NOW - timedelta(minutes=10),
            ),
            SourceStatus(name="new", type="directory", location="/srv/new"),
        ],
        "packs": {
            "a": PackStatus(state="active"),
            "b": PackStatus(state="active"),
            "c": PackStatus(state="failed"),
            "d": PackStatus(state="blocked"),
        },
        "conflicts": [{"ref": "a", "source": "nfs", "entry": "a", "reason": "local wins"}],
        "notify": [
            SinkStatus(
                name="chat",
                type="webhook",
                target="https://hooks.example.com/…",
                pending=2,
                delivered=40,
                dead=1,
                last_error="HTTP 503 Service Unavailable",
                last_error_at=NOW - timedelta(seconds=30),
                last_delivered_at=NOW - timedelta(minutes=5),
            ),
            # never delivered anything: no timestamp sample rather than a made-up one
            SinkStatus(name="mail", type="exec", target="/usr/local/bin/mail-event", pending=3),
        ],
    }
    data.update(overrides)
    return Status.model_validate(data)


def make_counters() -> MetricCounters:
    counters = MetricCounters()
    for ok in (True, True, False):
        counters.count_pass(ok=ok)
    for outcome in ("passed", "passed", "failed", "partial"):
        counters.count_test(outcome)
    counters.source_succeeded("nfs", NOW - timedelta(minutes=11))
    for result in ("delivered", "delivered", "retry", "dead"):
        counters.count_notify("chat", result)
    counters.count_notify("gone", "delivered")  # a sink no longer configured: not rendered
    return counters


def parse(text: str) -> dict[str, Metric]:
    return {family.name: family for family in text_string_to_metric_families(text)}


def values(family: Metric, label: str) -> dict[str, float]:
    return {sample.labels[label]: sample.value for sample in family.samples}


def test_every_metric_reads_back_with_its_type_labels_and_value() -> None:
    families = parse(render_metrics(make_status(), make_counters()))
    types = {name: family.type for name, family in families.items()}
    assert types == {
        "attuned_build_info": "gauge",
        "attuned_daemon_start_time_seconds": "gauge",
        "attuned_daemon_phase": "gauge",
        "attuned_packs": "gauge",
        "attuned_conflicts": "gauge",
        "attuned_reconcile_passes": "counter",
        "attuned_reconcile_errors": "counter",
        "attuned_reconcile_duration_seconds": "gauge",
        "attuned_reconcile_last_success_timestamp_seconds": "gauge",
        "attuned_test_executions": "counter",
        "attuned_source_up": "gauge",
        "attuned_source_last_success_timestamp_seconds": "gauge",
        "attuned_source_candidates": "gauge",
        "attuned_source_invalid_entries": "gauge",
        "attuned_notify_deliveries": "gauge",
        "attuned_notify_attempts": "counter",
        "attuned_notify_last_delivery_timestamp_seconds": "gauge",
    }
    assert values(families["attuned_build_info"], "version") == {"0.1.0": 1}
    [start] = families["attuned_daemon_start_time_seconds"].samples
    assert start.value == STARTED.timestamp()
    assert values(families["attuned_daemon_phase"], "phase") == {
        p: (1 if p == "idle" else 0) for p in PHASES
    }
    assert values(families["attuned_packs"], "state") == {
        "active": 2,
        "pending": 0,
        "failed": 1,
        "invalid": 0,
        "blocked": 1,
        "removed": 0,
        "suspended": 0,
        "kept": 0,
    }
    assert families["attuned_conflicts"].samples[0].value == 1

    [passes] = families["attuned_reconcile_passes"].samples
    assert (passes.name, passes.value) == ("attuned_reconcile_passes_total", 3)
    assert families["attuned_reconcile_errors"].samples[0].value == 1
    assert families["attuned_reconcile_duration_seconds"].samples[0].value == 1.25
    [success] = families["attuned_reconcile_last_success_timestamp_seconds"].samples
    assert success.value == (NOW - timedelta(seconds=1)).timestamp()
    tests = families["attuned_test_executions"]
    assert {s.name for s in tests.samples} == {"attuned_test_executions_total"}
    assert values(tests, "status") == {
        "passed": 2,
        "failed": 1,
        "partial": 1,
        "skipped": 0,
        "error": 0,
    }

    # "new" was never scanned: no sample rather than a made-up one
    assert values(families["attuned_source_up"], "source") == {"local": 1, "nfs": 0}
    assert values(families["attuned_source_last_success_timestamp_seconds"], "source") == {
        "local": (NOW - timedelta(seconds=2)).timestamp(),
        "nfs": (NOW - timedelta(minutes=11)).timestamp(),
    }
    assert values(families["attuned_source_candidates"], "source") == {"local": 3, "nfs": 0}
    assert values(families["attuned_source_invalid_entries"], "source") == {"local": 1, "nfs": 0}

    deliveries = {
        (s.labels["sink"], s.labels["state"]): s.value
        for s in families["attuned_notify_deliveries"].samples
    }
    assert deliveries == {
        ("chat", "pending"): 2,
        ("chat", "delivered"): 40,
        ("chat", "dead"): 1,
        ("mail", "pending"): 3,
        ("mail", "delivered"): 0,
        ("mail", "dead"): 0,
    }
    attempts = families["attuned_notify_attempts"]
    assert {s.name for s in attempts.samples} == {"attuned_notify_attempts_total"}
    assert {(s.labels["sink"], s.labels["result"]): s.value for s in attempts.samples} == {
        ("chat", "delivered"): 2,
        ("chat", "retry"): 1,
        ("chat", "dead"): 1,
        ("mail", "delivered"): 0,
        ("mail", "retry"): 0,
        ("mail", "dead"): 0,
    }
    assert values(families["attuned_notify_last_delivery_timestamp_seconds"], "sink") == {
        "chat": (NOW - timedelta(minutes=5)).timestamp()
    }


def test_before_the_first_pass_nothing_is_invented() -> None:
    status = make_status(
        daemon=DaemonStatus(version="0.1.0", pid=42, started_at=STARTED, phase="starting"),
        last_reconcile=None,
        sources=[SourceStatus(name="local", type="directory", location="/srv")],
        packs={},
        notify=[],
    )
    families = parse(render_metrics(status, MetricCounters()))
    assert families["attuned_reconcile_duration_seconds"].samples == []
    assert families["attuned_reconcile_last_success_timestamp_seconds"].samples == []
    assert families["attuned_source_up"].samples == []
    assert families["attuned_reconcile_passes"].samples[0].value == 0
    assert set(values(families["attuned_packs"], "state").values()) == {0}
    assert values(families["attuned_packs"], "state").keys() == set(STATES)
    assert values(families["attuned_daemon_phase"], "phase")["starting"] == 1
    for family in (
        "attuned_notify_deliveries",
        "attuned_notify_attempts",
        "attuned_notify_last_delivery_timestamp_seconds",
    ):
        assert families[family].samples == []  # no sinks configured: nothing to count


def test_label_values_are_escaped() -> None:
    odd = 'a "quoted" back\\slash\nand a newline'
    status = make_status(
        daemon=DaemonStatus(version=odd, pid=42, started_at=STARTED, phase="idle"),
        sources=[
            SourceStatus(name=odd, type="directory", location="/srv", last_scan=NOW, candidates=2)
        ],
    )
    text = render_metrics(status, MetricCounters())
    assert 'version="a \\"quoted\\" back\\\\slash\\nand a newline"' in text
    families = parse(text)
    assert values(families["attuned_build_info"], "version") == {odd: 1}
    assert values(families["attuned_source_candidates"], "source") == {odd: 2}


def test_counters_from_many_threads_lose_nothing() -> None:
    """Tests finish on worker threads; with a tiny switch interval an unlocked read-modify-write
    of the dict loses updates within a few thousand increments."""
    counters = MetricCounters()
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)

    def work() -> None:
        for _ in range(2000):
            counters.count_test("passed")
            counters.count_pass(ok=True)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    snapshot = counters.snapshot()
    assert snapshot.test_executions_by_status == {"passed": 16000}
    assert snapshot.passes_total == 16000


def test_the_file_is_replaced_whole_with_mode_0644(tmp_path: Path) -> None:
    path = tmp_path / "attuned.prom"
    first = render_metrics(make_status(), MetricCounters())
    second = render_metrics(make_status(), make_counters())
    old_umask = os.umask(0o077)  # the mode must not depend on the daemon's umask
    try:
        write_metrics(path, first)
        with path.open() as reader:  # a collector that opened the file before the update
            write_metrics(path, second)
            assert reader.read() == first  # still the whole old file: renamed, not rewritten
    finally:
        os.umask(old_umask)
    assert path.read_text() == second
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["attuned.prom"]  # no temp files left


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "attuned.prom"
    write_metrics(path, "attuned_conflicts 0\n")
    with pytest.raises(UnicodeEncodeError):
        write_metrics(path, "attuned_conflicts 1 \udcff\n")  # not encodable: fails mid-write
    assert path.read_text() == "attuned_conflicts 0\n"
    assert [p.name for p in tmp_path.iterdir()] == ["attuned.prom"]


def test_a_missing_collector_directory_is_an_error_not_created(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_metrics(tmp_path / "textfile_collector/attuned.prom", "")
    assert not (tmp_path / "textfile_collector").exists()


def test_every_metric_is_documented_and_every_documented_metric_exists() -> None:
    text = render_metrics(make_status(), make_counters())
    rendered = set(re.findall(r"^# TYPE (\S+) ", text, re.MULTILINE))
    page = (REPO / "docs/metrics.md").read_text()
    documented = set(re.findall(r"^\| `(attuned_[a-z_]+)", page, re.MULTILINE))
    assert sorted(rendered - documented) == [], "rendered but not in docs/metrics.md"
    assert sorted(documented - rendered) == [], "in docs/metrics.md but never rendered"
