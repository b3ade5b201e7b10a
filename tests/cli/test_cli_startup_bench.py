"""bench/cli_startup.py keeps working at smoke size: it runs alone and reports finite numbers
and a goal per command (no timing asserted: docs/performance.md holds the numbers)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO
from tests.test_bench import reported_numbers


def test_the_quick_cli_startup_benchmark_reports_every_command(tmp_path: Path) -> None:
    out = tmp_path / "cli_startup.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench/cli_startup.py"), "--quick", "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )

    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    result = json.loads(out.read_text())
    reported_numbers("cli_startup", result, proc.stdout)
    assert [t["limit"] for t in result["targets"]] == [60.0, 100.0, 100.0]
    assert result["params"]["runs"] == 3
    assert [row[0] for row in result["tables"][0]["rows"]] == [
        "python -c pass",
        "attuned --help",
        "attuned status",
        "attuned trigger local",
    ]
