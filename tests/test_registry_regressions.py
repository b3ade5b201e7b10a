"""The regression gate on real registrations: real TAP test scripts, real databases.

A case that passed in the serving version and fails in the candidate refuses the upgrade
(`block`), registers it with a warning (`warn`) or only is recorded (`ignore`); a case that
flips within the runs of one content is flaky and never blocks on its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select
from structlog.testing import capture_logs

from attuned.registry import Outcome, Registry, TestsRolledBack
from attuned.settings.testing import ExecutorSettings, HistorySettings, SandboxMode
from attuned.store import registered_packs
from attuned.store.database import Database
from attuned.store.models import TestCaseRecord, TestRun
from attuned.store.packstore import PackStore
from attuned.testing.executor import TestExecutor
from tests.conftest import PackFactory

CASES = ("alpha", "bravo", "charlie", "delta", "echo")


def tap_script(failing: set[str] = frozenset(), flag: Path | None = None) -> str:
    """A TAP producer: five cases, `failing` fail; with `flag`, `delta` fails while the file
    exists (an outcome that changes without the content changing)."""
    lines = ["#!/bin/sh", f"echo 1..{len(CASES)}"]
    for number, name in enumerate(CASES, 1):
        if name == "delta" and flag is not None:
            lines.append(
                f'if [ -e "{flag}" ]; then echo "not ok {number} - {name}"; '
                f'else echo "ok {number} - {name}"; fi'
            )
        elif name in failing:
            lines += [f'echo "not ok {number} - {name}"', f'echo "  # {name} broke"']
        else:
            lines.append(f'echo "ok {number} - {name}"')
    return "\n".join(lines) + "\n"


def tap_pack(
    make_pack: PackFactory,
    version: str,
    *,
    failing: set[str] = frozenset(),
    flag: Path | None = None,
    regressions: str | None = None,
    note: str = "",
) -> Path:
    testing: dict[str, Any] = {
        "enabled": True,
        "runners": {
            "tap": {
                "type": "script",
                "entry_point": "tests/run_tests.sh",
                "timeout": 20,
                "result_format": "tap",
            }
        },
        "min_pass_rate": 0.8,
    }
    if regressions is not None:
        testing["regressions"] = regressions
    return make_pack(
        "hello",
        version=version,
        test_script=tap_script(failing, flag),
        testing=testing,
        files={"README.md": f"hello {version} {note}\n"},
    )


@pytest.fixture
def registry(database: Database, tmp_path: Path) -> Iterator[Registry]:
    # no sandbox: the flaky case reads a flag file under the test's tmp_path
    settings = ExecutorSettings(kill_grace=0.5, sandbox=SandboxMode.NONE)
    yield Registry(database, PackStore(tmp_path / "packs"), TestExecutor(settings))


def served_version(registry: Registry) -> str | None:
    with registry.db.read() as session:
        found = registered_packs.get_pack(session, "hello")
        return found.version if found else None


def runs(registry: Registry) -> list[TestRun]:
    with registry.db.read() as session:
        return list(session.exec(select(TestRun).order_by(col(TestRun.id))).all())


def green_five_times(registry: Registry, make_pack: PackFactory) -> None:
    registry.register(tap_pack(make_pack, "1.0.0"))
    for _ in range(4):
        registry.test_served("hello")


def test_a_case_broken_above_min_pass_rate_blocks_the_upgrade_and_is_named(
    registry: Registry, make_pack: PackFactory
) -> None:
    green_five_times(registry, make_pack)
    candidate = tap_pack(make_pack, "1.1.0", failing={"charlie"})

    with capture_logs() as logs, pytest.raises(TestsRolledBack) as caught:
        registry.register(candidate, replace=True)

    message = str(caught.value)
    assert "passed in the serving version 1.0.0 and fail now: tap::charlie" in message
    assert "testing.regressions: block" in message
    assert "pass rate 0.8 reaches min_pass_rate 0.8" in message  # the rate alone would pass
    assert served_version(registry) == "1.0.0"
    last = runs(registry)[-1]
    assert (last.pack_version, last.outcome, last.regressions) == (
        "1.1.0",
        "rolled_back",
        ["tap::charlie"],
    )
    assert last.result["gate"]["baseline_version"] == "1.0.0"
    regressed = [e for e in logs if e["event"] == "pack.test.regressed"]
    assert [(e["cases"], e["policy"]) for e in regressed] == [(["tap::charlie"], "block")]


def test_force_registers_over_a_regression_and_keeps_the_run(
    registry: Registry, make_pack: PackFactory
) -> None:
    green_five_times(registry, make_pack)

    done = registry.register(
        tap_pack(make_pack, "1.1.0", failing={"charlie"}), replace=True, force=True
    )

    assert done.outcome is Outcome.FORCED
    assert served_version(registry) == "1.1.0"
    assert runs(registry)[-1].regressions == ["tap::charlie"]


def test_warn_in_pack_yaml_registers_with_a_warning(
    registry: Registry, make_pack: PackFactory
) -> None:
    green_five_times(registry, make_pack)
    candidate = tap_pack(make_pack, "1.1.0", failing={"charlie"}, regressions="warn")

    with capture_logs() as logs:
        done = registry.register(candidate, replace=True)

    assert done.outcome is Outcome.WARNED
    assert served_version(registry) == "1.1.0"
    forced = [e for e in logs if e["event"] == "pack.forced"]
    assert forced and "tap::charlie" in forced[0]["reason"]


def test_the_sources_word_overrides_the_packs(registry: Registry, make_pack: PackFactory) -> None:
    green_five_times(registry, make_pack)
    candidate = tap_pack(make_pack, "1.1.0", failing={"charlie"}, regressions="block")

    done = registry.register(candidate, replace=True, regressions="ignore")

    assert done.outcome is Outcome.REGISTERED
    assert done.test_result is not None
    assert done.test_result.gate.regressions == ["tap::charlie"]  # recorded all the same


def test_the_operators_default_applies_when_neither_says(
    database: Database, tmp_path: Path, make_pack: PackFactory
) -> None:
    settings = ExecutorSettings(kill_grace=0.5, regressions="warn")  # type: ignore[arg-type]
    registry = Registry(database, PackStore(tmp_path / "packs"), TestExecutor(settings))
    registry.register(tap_pack(make_pack, "1.0.0"))

    done = registry.register(tap_pack(make_pack, "1.1.0", failing={"bravo"}), replace=True)

    assert done.outcome is Outcome.WARNED


def test_a_case_flipping_within_one_digest_is_flaky_and_does_not_block(
    registry: Registry, make_pack: PackFactory, tmp_path: Path
) -> None:
    flag = tmp_path / "delta-fails"
    registry.register(tap_pack(make_pack, "1.0.0", flag=flag))
    flag.touch()
    registry.test_served("hello")  # same content, delta fails this time
    flag.unlink()
    registry.test_served("hello")  # and passes again: the newest baseline run is green
    flag.touch()

    with capture_logs() as logs:
        done = registry.register(tap_pack(make_pack, "1.1.0", flag=flag), replace=True)

    assert done.outcome is Outcome.REGISTERED  # 4 of 5 reach 0.8, delta is no regression
    assert done.test_result is not None
    gate = done.test_result.gate
    assert (gate.regressions, gate.flaky) == ([], ["tap::delta"])
    assert [e["cases"] for e in logs if e["event"] == "pack.test.flaky"] == [["tap::delta"]]


def test_a_first_install_has_no_baseline_and_no_regressions(
    registry: Registry, make_pack: PackFactory
) -> None:
    done = registry.register(tap_pack(make_pack, "1.0.0", failing={"echo"}))

    assert done.outcome is Outcome.REGISTERED  # 4 of 5
    assert done.test_result is not None
    assert done.test_result.gate.regressions == []
    assert done.test_result.gate.baseline_version is None


def test_every_case_of_every_run_is_stored_with_its_run(
    registry: Registry, make_pack: PackFactory
) -> None:
    registry.register(tap_pack(make_pack, "1.0.0"))
    with pytest.raises(TestsRolledBack):
        registry.register(tap_pack(make_pack, "1.1.0", failing={"bravo"}), replace=True)

    first, second = runs(registry)
    with registry.db.read() as session:
        rows = session.exec(select(TestCaseRecord).order_by(col(TestCaseRecord.id))).all()
    by_run = {r.id: [(c.name, c.status) for c in rows if c.run_id == r.id] for r in (first, second)}
    assert by_run[first.id] == [(name, "passed") for name in CASES]
    assert by_run[second.id] == [
        (name, "failed" if name == "bravo" else "passed") for name in CASES
    ]
    assert {(r.suite, r.runner_type, r.pack_ref) for r in rows} == {("tap", "script", "hello")}
    assert [r.message for r in rows if r.status == "failed"] == ["bravo broke"]
    assert (second.pack_digest, second.source, second.outcome) == (
        second.pack_digest,
        None,
        "rolled_back",
    )


def test_upkeep_keeps_the_newest_runs_and_all_of_the_serving_versions(
    database: Database, tmp_path: Path, make_pack: PackFactory
) -> None:
    settings = ExecutorSettings(kill_grace=0.5, history=HistorySettings(keep_runs=2))
    registry = Registry(database, PackStore(tmp_path / "packs"), TestExecutor(settings))
    registry.register(tap_pack(make_pack, "1.0.0"))
    registry.test_served("hello")
    for n in range(3):  # three rolled-back candidates, each new content
        with pytest.raises(TestsRolledBack):
            registry.register(
                tap_pack(make_pack, "1.1.0", failing={"alpha"}, note=str(n)), replace=True
            )

    all_runs = runs(registry)
    with registry.db.read() as session:
        before_upkeep = {r.run_id for r in session.exec(select(TestCaseRecord)).all()}
    assert before_upkeep == {r.id for r in all_runs}  # a registration never deletes

    assert registry.prune_case_history() == len(CASES)  # the first candidate's cases go
    assert registry.prune_case_history() == 0  # nothing tested since: nothing to do

    with registry.db.read() as session:
        with_cases = {r.run_id for r in session.exec(select(TestCaseRecord)).all()}
    served = [r.id for r in all_runs if r.pack_version == "1.0.0"]
    newest = [r.id for r in all_runs[-2:]]
    assert len(all_runs) == 5
    assert with_cases == set(served) | set(newest)
    # the audit trail itself is whole: every run keeps its summary and its result
    assert all(r.result["test_suites"] for r in all_runs)
    # after the first upkeep (every pack), only the packs tested since are looked at
    with pytest.raises(TestsRolledBack):
        registry.register(tap_pack(make_pack, "1.1.0", failing={"alpha"}, note="3"), replace=True)
    assert registry.prune_case_history() == len(CASES)


def junit_pack(make_pack: PackFactory, version: str, seconds: float) -> Path:
    """One case, `slow`, that reports it took `seconds` (JUnit XML on stdout)."""
    script = (
        "#!/bin/sh\n"
        "cat <<'XML'\n"
        '<testsuite name="t" tests="1">'
        f'<testcase classname="suite" name="slow" time="{seconds}"/></testsuite>\n'
        "XML\n"
    )
    testing = {
        "enabled": True,
        "runners": {
            "junit": {
                "type": "script",
                "entry_point": "tests/run_tests.sh",
                "result_format": "junit",
            }
        },
    }
    return make_pack("hello", version=version, test_script=script, testing=testing)


def test_a_much_slower_case_is_a_warning_never_a_block(
    registry: Registry, make_pack: PackFactory
) -> None:
    registry.register(junit_pack(make_pack, "1.0.0", 0.2))
    registry.test_served("hello")

    with capture_logs() as logs:
        done = registry.register(junit_pack(make_pack, "1.1.0", 0.9), replace=True)

    assert done.outcome is Outcome.REGISTERED
    assert done.test_result is not None
    assert done.test_result.gate.slower == ["junit::suite.slow"]
    slower = [e for e in logs if e["event"] == "pack.test.slower"]
    assert [(e["cases"], e["log_level"]) for e in slower] == [(["junit::suite.slow"], "warning")]
