"""The benchmarks keep working: `bench/run.py --quick` runs every scenario at smoke size.

No timing is asserted (machines are noisy; docs/performance.md holds the numbers): only that
every scenario ran and reported finite numbers.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO

SCENARIOS = {
    "drop_latency",
    "push_latency",
    "noop_resync",
    "initial_sync",
    "idle_cost",
    "executor_overhead",
    "attune_tables",
    "notify",
    "restart",
    "cli_startup",
    "first_sync",
    "verify_latency",
}


@pytest.mark.slow
def test_quick_benchmarks_run_and_report_numbers(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench/run.py"), "--quick", "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    report = json.loads(out.read_text())
    assert report["quick"] is True
    assert set(report["scenarios"]) == SCENARIOS
    for name, result in report["scenarios"].items():
        reported_numbers(name, result, proc.stdout)


def reported_numbers(name: str, result: dict[str, Any], stdout: str) -> None:
    assert "error" not in result, result.get("error")
    metrics = result["metrics"]
    assert metrics, f"{name} reported no metrics"
    for key, value in metrics.items():
        assert isinstance(value, int | float) and not isinstance(value, bool), (name, key)
        assert math.isfinite(value), (name, key, value)
    assert result["tables"] and all(t["rows"] for t in result["tables"]), name
    assert f"## {result['title']}" in stdout  # the Markdown table went to stdout


@pytest.mark.slow
def test_quick_history_benchmark_runs_alone_and_reports_numbers(tmp_path: Path) -> None:
    """bench/history.py (per-case history: registration cost, history and compare queries),
    run as its own script; PostgreSQL too when ATTUNED_TEST_POSTGRES_URL is set."""
    out = tmp_path / "history.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench/history.py"), "--quick", "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    result = json.loads(out.read_text())
    reported_numbers("history", result, proc.stdout)
    assert result["params"]["quick"] is True
