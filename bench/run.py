"""Run the benchmarks of issue 8: Markdown tables on stdout, every number in a JSON file.

    python bench/run.py [--quick] [--only NAME ...] [--json PATH]

--quick is the smoke size CI runs (tests/test_bench.py): every scenario, tiny N, about a
minute. Without it, expect half an hour (10,000 packs are built and re-registered, and the
polling scenario waits on the default 60 s interval). Each scenario is also runnable alone:
`python bench/<name>.py [--quick]`.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import machine, render

SCENARIOS = (
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
)


def load_average() -> list[float]:
    """Other work on the machine while a scenario ran: read it next to the numbers."""
    return [round(x, 2) for x in os.getloadavg()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke size (CI): about a minute")
    parser.add_argument(
        "--only", nargs="+", choices=SCENARIOS, metavar="NAME", help="run only these scenarios"
    )
    parser.add_argument(
        "--json", type=Path, help="where to write the results (default: a temp file)"
    )
    options = parser.parse_args()
    names = options.only or list(SCENARIOS)
    out = options.json or Path(tempfile.mkstemp(prefix="attuned-bench-", suffix=".json")[1])
    report: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": options.quick,
        "command": " ".join(["python", "bench/run.py", *sys.argv[1:]]),
        "machine": machine(),
        "scenarios": {},
    }
    m = report["machine"]
    print(
        f"# attuned benchmarks{' (--quick)' if options.quick else ''}\n\n"
        f"{m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB, {m['disk']}, "
        f"Linux {m['kernel']}, Python {m['python']}, SQLite {m['sqlite']}\n",
        flush=True,
    )
    failed = []
    started = time.monotonic()
    for name in names:
        module = importlib.import_module(name)
        load_before = load_average()
        began = time.monotonic()
        try:
            result = module.run(options.quick)
        except Exception:
            failed.append(name)
            print(f"## {name}: FAILED\n\n```\n{traceback.format_exc()}```\n", flush=True)
            report["scenarios"][name] = {"name": name, "error": traceback.format_exc()}
            continue
        finally:
            gc.collect()
        result["seconds"] = time.monotonic() - began
        result["load_average"] = {"before": load_before, "after": load_average()}
        report["scenarios"][name] = result
        print(render(result), flush=True)
        print(
            f"({result['seconds']:.0f} s, load average {load_before[0]} -> "
            f"{result['load_average']['after'][0]})\n",
            flush=True,
        )
        out.write_text(json.dumps(report, indent=1, default=str))  # partial results survive
    report["seconds"] = time.monotonic() - started
    out.write_text(json.dumps(report, indent=1, default=str))
    print(f"total {report['seconds']:.0f} s; results: {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
