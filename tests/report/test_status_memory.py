"""The daemon keeps one PackStatus per pack for its lifetime: what one costs (issue 18)."""

from __future__ import annotations

import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

from attuned.report.status import (
    DaemonStatus,
    LastTest,
    PackState,
    PackStatus,
    Status,
    now,
    read_status,
    write_status,
)


def served(i: int, state: PackState = "active") -> PackStatus:
    """A served pack's status built the way the summary builds it, from values as database
    rows bring them: every string its own object."""
    return PackStatus(
        state=state,
        version="".join(["1.0", ".0"]),
        digest=f"{i:064x}",
        source="".join(["loc", "al"]),
        active_since=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=i),
    )


def test_a_pack_status_costs_the_daemon_about_half_a_kib() -> None:
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        packs = {}
        for i in range(1000):
            status = served(i)
            status.reason = "up to date"  # as the summary assigns it
            packs[f"pack{i:05d}"] = status
        grown = tracemalloc.take_snapshot().compare_to(before, "filename")
    finally:
        tracemalloc.stop()

    per_pack = sum(stat.size_diff for stat in grown) / len(packs)
    # 1,350 bytes before: each instance had its own set of the fields set (728 bytes) and
    # its own copies of the version and source names
    assert per_pack < 640, per_pack


def test_statuses_keep_what_was_assigned_and_read_back_equal(tmp_path: Path) -> None:
    first, second = served(1, "pending"), served(2)
    first.desired_version = "".join(["2.0", ".0"])
    first.last_test = LastTest(status="passed", passed=1, total=1, at=now(), version="1.0.0")

    assert second.desired_version is None and second.last_test is None
    assert first.version is second.version  # one string for a value many packs repeat
    status = Status(
        daemon=DaemonStatus(version="1", pid=1, started_at=now(), phase="idle"),
        updated_at=now(),
        packs={"a": first, "b": second},
    )
    write_status(tmp_path / "status.json", status)
    assert read_status(tmp_path / "status.json") == status
    assert first.model_copy(update={"reason": "x"}).reason == "x" and first.reason == ""
