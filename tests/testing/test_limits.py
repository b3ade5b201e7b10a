"""Resource limits reach the test process, and breaking one names the limit."""

from __future__ import annotations

import sys

from attuned.testing import CaseStatus, ExecutorSettings, ResourceLimits

NO_LIMITS = ResourceLimits(
    cpu_seconds=None, address_space_mb=None, open_files=None, processes=None, file_size_mb=None
)


def limited(**limits: int | None) -> ExecutorSettings:
    return ExecutorSettings(kill_grace=0.2, limits=NO_LIMITS.model_copy(update=limits))


def shell(entry: str, **spec: object) -> dict[str, object]:
    return {"type": "script", "entry_point": entry, **spec}


def test_limits_are_visible_to_the_test(run_pack):
    script = 'echo "$(ulimit -n) $(ulimit -u) $(ulimit -v) $(ulimit -f) $(ulimit -t)"'
    settings = limited(
        open_files=77, processes=300, address_space_mb=2048, file_size_mb=3, cpu_seconds=50
    )

    result = run_pack({"tests/run": script}, {"s": shell("tests/run")}, settings=settings)

    # bash reports -v in KiB and -f in 1024-byte blocks
    assert result.test_suites[0].stdout == f"77 300 {2048 * 1024} {3 * 1024} 50\n"


def test_defaults_apply_when_not_configured(run_pack):
    result = run_pack(
        {"tests/run.sh": 'echo "$(ulimit -n) $(ulimit -t)"'}, {"s": shell("tests/run.sh")}
    )

    assert result.test_suites[0].stdout == "1024 600\n"


def test_cpu_limit_stops_a_busy_loop(run_pack):
    result = run_pack(
        {"tests/spin.sh": "while :; do :; done"},
        {"s": shell("tests/spin.sh", timeout=20)},
        settings=limited(cpu_seconds=1),
    )

    (case,) = result.test_suites[0].test_cases
    assert case.status is CaseStatus.ERROR
    assert case.error_message == "killed by signal SIGXCPU (24, CPU time limit)"


def test_file_size_limit_stops_a_runaway_writer(run_pack):
    result = run_pack(
        {"tests/fill": "exec head -c 3000000 /dev/zero > big"},
        {"s": shell("tests/fill")},
        settings=limited(file_size_mb=1),
    )

    (case,) = result.test_suites[0].test_cases
    assert case.error_message == "killed by signal SIGXFSZ (25, file size limit)"


def test_address_space_limit_makes_big_allocations_fail(run_pack):
    code = (
        "try:\n"
        "    block = bytearray(800 * 1024 * 1024)\n"
        "    print('allocated')\n"
        "except MemoryError:\n"
        "    print('MemoryError')\n"
    )
    result = run_pack(
        {"tests/alloc.py": f"#!{sys.executable}\n{code}"},
        {"s": shell("tests/alloc.py")},
        executable=("tests/alloc.py",),
        settings=limited(address_space_mb=300),
    )

    assert result.test_suites[0].stdout == "MemoryError\n"


def test_open_files_limit_is_enforced(run_pack):
    code = (
        "import os\n"
        "fds = []\n"
        "try:\n"
        "    while True:\n"
        "        fds.append(os.open('/dev/null', os.O_RDONLY))\n"
        "except OSError:\n"
        "    print(len(fds) < 40)\n"
    )
    result = run_pack(
        {"tests/fds.py": f"#!{sys.executable}\n{code}"},
        {"s": shell("tests/fds.py")},
        executable=("tests/fds.py",),
        settings=limited(open_files=40),
    )

    assert result.test_suites[0].stdout == "True\n"
