"""Executor overhead per runner type on a trivial test.

For each runner type, the same trivial pack is run two ways, interleaved so that both see the
same machine state:

* bare: `subprocess.run` of exactly the command the runner builds, output captured;
* executor: `TestExecutor.run` on the pack (staging copy, scrubbed environment, rlimits,
  session, capture, result parsing, gate, clean-up).

overhead = executor wall time - bare wall time, per pair. The table also shows how much of the
executor's wall time lies outside the test process itself (wall - the suite's duration_ms).

    python bench/executor_overhead.py [--quick] [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from attuned.pack.manifest import PackManifest
from attuned.testing import TestExecutor
from attuned.testing.runners import RUNNERS, RunnerJob
from attuned.testing.staging import staged_pack

PACKS: dict[str, tuple[str, dict[str, str]]] = {
    "script": (
        "tests/run.sh",
        {"tests/run.sh": "echo 'Total Tests: 1'\necho 'Passed: 1'\necho 'Failed: 0'\n"},
    ),
    "tap": ("tests/run.sh", {"tests/run.sh": "echo '1..1'\necho 'ok 1 - trivial'\n"}),
    "unittest": (
        "tests/test_trivial.py",
        {
            "tests/test_trivial.py": (
                "import unittest\n\n\nclass Trivial(unittest.TestCase):\n"
                "    def test_trivial(self):\n        pass\n"
            )
        },
    ),
    "pytest": (
        "tests/test_trivial.py",
        {"tests/test_trivial.py": "def test_trivial():\n    pass\n"},
    ),
}


def write_pack(root: Path, runner_type: str) -> PackManifest:
    entry_point, files = PACKS[runner_type]
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return PackManifest.model_validate(
        {
            "ref": "bench",
            "label": "Bench",
            "description": "trivial",
            "version": "1.0.0",
            "testing": {
                "runners": {runner_type: {"type": runner_type, "entry_point": entry_point}}
            },
        }
    )


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def measure(runner_type: str, runs: int, executor: TestExecutor) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="attuned-bench-") as scratch:
        pack_dir = Path(scratch) / "pack"
        manifest = write_pack(pack_dir, runner_type)
        assert manifest.testing is not None
        spec = manifest.testing.runners[runner_type]
        bare, wall, outside = [], [], []
        with staged_pack(pack_dir, prefix="bare-") as stage:
            job = RunnerJob(runner_type, spec, stage.pack, stage.reports, executor.settings.python)
            command = RUNNERS[spec.type].command(job)
            for _ in range(runs + 1):  # the first pair warms caches and is dropped
                started = time.perf_counter()
                subprocess.run(
                    command.argv, cwd=stage.pack, capture_output=True, stdin=subprocess.DEVNULL
                )
                bare.append(time.perf_counter() - started)
                started = time.perf_counter()
                result = executor.run(pack_dir, manifest)
                elapsed = time.perf_counter() - started
                assert result.gate.passed, result.gate.reason
                wall.append(elapsed)
                outside.append(elapsed - result.test_suites[0].duration_ms / 1000)
        bare, wall, outside = bare[1:], wall[1:], outside[1:]
        overhead = [w - b for w, b in zip(wall, bare, strict=True)]
        return {
            "bare": statistics.median(bare),
            "executor": statistics.median(wall),
            "overhead": statistics.median(overhead),
            "overhead_p95": percentile(overhead, 0.95),
            "outside": statistics.median(outside),
            "ratio": statistics.median(wall) / statistics.median(bare),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8 runs per runner instead of 30")
    parser.add_argument("--runs", type=int, default=None)
    options = parser.parse_args()
    runs = options.runs or (8 if options.quick else 30)
    executor = TestExecutor()
    ms = 1000
    version = sys.version.split()[0]
    print(f"executor overhead on a trivial test, {runs} runs per runner, python {version}")
    header = (
        f"{'runner':<9} {'bare ms':>8} {'executor ms':>12} {'overhead ms':>12} "
        f"{'p95 ms':>8} {'outside ms':>11} {'ratio':>6}"
    )
    print(header)
    print("-" * len(header))
    for runner_type in PACKS:
        row = measure(runner_type, runs, executor)
        print(
            f"{runner_type:<9} {row['bare'] * ms:>8.1f} {row['executor'] * ms:>12.1f} "
            f"{row['overhead'] * ms:>12.1f} {row['overhead_p95'] * ms:>8.1f} "
            f"{row['outside'] * ms:>11.1f} {row['ratio']:>6.2f}"
        )
    print(
        "bare = subprocess.run of the runner's own command; overhead = executor - bare, "
        "paired per run (median, p95);\noutside = executor wall time minus the suite's "
        "own duration; ratio = executor median / bare median."
    )


def run(quick: bool) -> dict[str, Any]:
    """The same measurement for bench/run.py: 2 runs per runner in --quick, else 30."""
    runs = 2 if quick else 30
    executor = TestExecutor()
    rows, metrics = [], {}
    for runner_type in PACKS:
        row = measure(runner_type, runs, executor)
        rows.append(
            [runner_type] + [f"{row[k] * 1000:.1f}" for k in COLUMNS] + [f"{row['ratio']:.2f}"]
        )
        metrics |= {f"{runner_type}_{k}_s": row[k] for k in COLUMNS} | {
            f"{runner_type}_ratio": row["ratio"]
        }
    return {
        "name": "executor_overhead",
        "title": "6. Test executor overhead per runner type",
        "params": {"runs_per_runner": runs},
        "tables": [
            {
                "columns": ["runner", *(f"{k} ms" for k in COLUMNS), "ratio"],
                "rows": rows,
            }
        ],
        "metrics": metrics,
        "targets": [],
        "notes": [
            "bare: subprocess.run of the runner's own command; executor: TestExecutor.run; "
            "overhead: executor - bare, paired per run (median, p95)",
            "outside: executor wall time minus the suite's own duration; ratio: executor "
            "median / bare median",
        ],
    }


COLUMNS = ("bare", "executor", "overhead", "overhead_p95", "outside")


if __name__ == "__main__":
    main()
