"""`attuned compare` on real registrations and test runs (TAP and JSON test scripts), on
SQLite and PostgreSQL: what it names, how it agrees with the regression gate, its JSON, and
its exit codes (0 nothing newly failing, 1 regressions, 2 no such pack, run or selector).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from attuned.registry import Registry
from attuned.store import runs
from attuned.store.runs import RunFilter
from tests.cli.test_history_cli import Attuned, registry_of, write_config
from tests.store.test_runs import Scenario, TapPack

THREE = ("alpha", "bravo", "charlie")


@pytest.fixture
def config(tmp_path: Path, db_url: str) -> Path:
    return write_config(tmp_path, db_url)


@pytest.fixture
def cli(config: Path, capsys: pytest.CaptureFixture[str]) -> Attuned:
    return Attuned(config, capsys)


@pytest.fixture
def scenario(config: Path) -> Iterator[Scenario]:
    registry = registry_of(config)
    try:
        yield Scenario(registry, TapPack(config.parent))
    finally:
        registry.close()


def broken_upgrade(scenario: Scenario) -> None:
    """1.0.0: three cases pass, three times. 1.1.0: bravo breaks, charlie is gone, delta is
    new; the gate rolls it back (runs #1-#3, then #4)."""
    scenario.tell()
    assert scenario.register("1.0.0", THREE)
    scenario.test_served()
    scenario.test_served()
    scenario.tell(fail=("bravo",))
    assert not scenario.register("1.1.0", ("alpha", "bravo", "delta"))


def test_a_broken_upgrade_is_named_case_by_case_and_exits_1(
    cli: Attuned, scenario: Scenario
) -> None:
    broken_upgrade(scenario)

    out = cli("compare", "hello", code=1)

    assert out.splitlines() == [
        "hello: 1.0.0 (#3, serving) -> 1.1.0 (#4)",
        "newly failing (1):",
        "  tap::bravo  passed -> failed: bravo broke",
        "new (1):",
        "  tap::delta  passed",
        "removed (1):",
        "  tap::charlie  was passed",
        "1 newly failing, 0 fixed, 1 new, 1 removed, 0 still failing, 0 slower, 0 faster, "
        "0 flaky, 1 unchanged between 1.0.0 (#3) and 1.1.0 (#4)",
    ]
    assert cli("compare", "hello", "1.0.0", "1.1.0", code=1) == out
    assert cli("compare", "hello", "#3", "#4", code=1) == out
    assert cli("compare", "hello", "serving", "latest", code=1) == out


def test_compare_says_what_the_gate_said(cli: Attuned, scenario: Scenario) -> None:
    broken_upgrade(scenario)
    with scenario.registry.db.read() as session:
        [rolled_back] = runs.runs(session, RunFilter("hello", versions=("1.1.0",)))

    shown = cli.json("compare", "hello", code=1)

    assert rolled_back.regressions == ["tap::bravo"]
    assert [c["case"] for c in shown["cases"]["newly_failing"]] == rolled_back.regressions


def test_json_shape(cli: Attuned, scenario: Scenario) -> None:
    broken_upgrade(scenario)

    shown = cli.json("compare", "hello", code=1)

    assert set(shown) == {"pack", "before", "after", "regressions", "counts", "cases"}
    assert shown["pack"] == "hello" and shown["regressions"] is True
    assert set(shown["before"]) == {"run_id", "version", "digest", "execution_time"}
    assert (shown["before"]["run_id"], shown["before"]["version"]) == (3, "1.0.0")
    assert (shown["after"]["run_id"], shown["after"]["version"]) == (4, "1.1.0")
    assert shown["after"]["digest"] == scenario.ran[3].digest
    assert shown["after"]["execution_time"].endswith("Z")
    kinds = ["newly_failing", "fixed", "new", "removed", "still_failing", "slower", "faster"]
    assert list(shown["cases"]) == [*kinds, "flaky"]
    assert shown["counts"] == {
        "newly_failing": 1,
        "fixed": 0,
        "new": 1,
        "removed": 1,
        "still_failing": 0,
        "slower": 0,
        "faster": 0,
        "flaky": 0,
        "unchanged": 1,
    }
    assert shown["cases"]["newly_failing"] == [
        {
            "case": "tap::bravo",
            "before": "passed",
            "after": "failed",
            "before_ms": 0,
            "after_ms": 0,
            "message": "bravo broke",
        }
    ]
    assert shown["cases"]["new"][0] == {
        "case": "tap::delta",
        "before": None,
        "after": "passed",
        "before_ms": None,
        "after_ms": 0,
        "message": None,
    }
    assert shown["cases"]["removed"][0]["after"] is None


def test_the_same_content_exits_0(cli: Attuned, scenario: Scenario) -> None:
    scenario.tell()
    assert scenario.register("1.0.0", THREE)
    scenario.test_served()

    out = cli("compare", "hello", "#1", "#2")

    assert out.splitlines()[-1] == (
        "0 newly failing, 0 fixed, 0 new, 0 removed, 0 still failing, 0 slower, 0 faster, "
        "0 flaky, 3 unchanged between 1.0.0 (#1) and 1.0.0 (#2)"
    )
    # other content, same verdicts: an upgrade that changes nothing the tests see
    assert scenario.register("1.1.0", THREE)
    assert cli.json("compare", "hello", "1.0.0", "serving")["regressions"] is False


def test_fixed_still_failing_and_flaky(cli: Attuned, scenario: Scenario) -> None:
    """charlie fails throughout 1.0.0 and passes in 1.1.0 (fixed); delta always fails; bravo
    flips within 1.0.0's runs, so failing in 1.1.0 is flaky, not a regression."""
    names = ("alpha", "bravo", "charlie", "delta")
    scenario.tell(fail=("charlie", "delta"))
    assert scenario.register("1.0.0", names, min_pass_rate=0.25)
    scenario.tell(fail=("bravo", "charlie", "delta"))
    scenario.test_served()
    scenario.tell(fail=("charlie", "delta"))
    scenario.test_served()
    scenario.tell(fail=("bravo", "delta"))
    assert scenario.register("1.1.0", names, min_pass_rate=0.25)  # flaky bravo does not block

    shown = cli.json("compare", "hello", "1.0.0", "1.1.0")

    assert shown["regressions"] is False
    cases = {kind: [c["case"] for c in found] for kind, found in shown["cases"].items()}
    assert cases["fixed"] == ["tap::charlie"]
    assert cases["still_failing"] == ["tap::delta"]
    assert cases["flaky"] == ["tap::bravo"]
    assert cases["newly_failing"] == []


def json_pack(root: Path, version: str, durations: dict[str, int]) -> Path:
    """A pack whose script reports each case's duration in attuned's JSON format."""
    path = root / f"json-{version}" / "timed"
    report = {
        "test_cases": [
            {"name": n, "status": "passed", "duration_ms": ms} for n, ms in durations.items()
        ]
    }
    script = path / "tests/run.sh"
    script.parent.mkdir(parents=True)
    script.write_text(f"#!/bin/sh\necho '{json.dumps(report)}'\n")
    script.chmod(0o755)
    manifest = {
        "ref": "timed",
        "label": "Timed",
        "description": "cases of known durations",
        "version": version,
        "testing": {
            "enabled": True,
            "runners": {
                "timing": {
                    "type": "script",
                    "entry_point": "tests/run.sh",
                    "result_format": "json",
                }
            },
        },
    }
    (path / "pack.yaml").write_text(yaml.safe_dump(manifest))
    return path


def test_slower_and_faster_against_the_baselines_median(
    cli: Attuned, config: Path, tmp_path: Path
) -> None:
    registry: Registry = registry_of(config)
    try:
        registry.register(json_pack(tmp_path, "1.0.0", {"alpha": 100, "bravo": 500, "c": 50}))
        registry.register(
            json_pack(tmp_path, "1.1.0", {"alpha": 400, "bravo": 100, "c": 60}), replace=True
        )
    finally:
        registry.close()

    out = cli("compare", "timed", "1.0.0", "1.1.0")

    assert "slower (1):\n  timing::alpha  100 ms -> 400 ms\n" in out
    assert "faster (1):\n  timing::bravo  500 ms -> 100 ms\n" in out
    assert "0 newly failing" in out and "1 unchanged" in out


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["nope"], "no test runs recorded for 'nope'"),
        (["hello", "#abc"], "bad run selector '#abc'"),
        (["hello", "#999"], "no test run #999 of 'hello'"),
        (["hello", "7.7.7"], "no test run of 'hello' at version 7.7.7"),
        (["hello", "serving", "9.9.9"], "no test run of 'hello' at version 9.9.9"),
        (["hello"], "no run of 'hello' tested content other than 1.0.0 (#2"),
    ],
)
def test_errors_exit_2(cli: Attuned, scenario: Scenario, args: list[str], complaint: str) -> None:
    scenario.tell()
    assert scenario.register("1.0.0", THREE)
    scenario.test_served()

    code, out, err = cli.run("compare", *args)

    assert (code, out) == (2, "")
    assert complaint in err, err


def test_no_serving_version_means_naming_both_runs(cli: Attuned, scenario: Scenario) -> None:
    scenario.tell(fail=("bravo",))
    assert not scenario.register("1.0.0", THREE)  # a first registration, rolled back

    code, _, err = cli.run("compare", "hello")

    assert code == 2 and "attuned serves no version of 'hello'" in err
    assert cli.json("compare", "hello", "#1", "#1")["regressions"] is False


def test_the_real_command_exits_1_on_regressions(cli: Attuned, scenario: Scenario) -> None:
    broken_upgrade(scenario)

    proc = cli.subprocess("compare", "hello", "--json")

    assert proc.returncode == 1, proc.stderr
    assert json.loads(proc.stdout)["regressions"] is True


def test_a_failing_database_exits_2_as_every_error_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 1 means regressions: a database that cannot be read must not look like one."""
    broken = tmp_path / "broken.db"
    broken.write_bytes(b"not a database at all" * 100)
    cli = Attuned(write_config(tmp_path, f"sqlite:///{broken}"), capsys)

    code, out, err = cli.run("compare", "hello", "--json")

    assert code == 2
    assert err.startswith("error: the database failed: ") and len(err.splitlines()) == 1
    assert json.loads(out) == {"error": err.removeprefix("error: ").strip(), "exit_code": 2}
