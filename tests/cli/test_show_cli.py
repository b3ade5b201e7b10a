"""`attuned show REF` says why a pack is not served: a pack whose first registration was
rolled back, or whose content is invalid, shows its last attempt (version, when, outcome,
reason, failing cases) instead of "not registered"; a rolled-back candidate's tests are
named as the candidate's, not shown under the serving version. Real registrations (a TAP
script told what to fail) on SQLite, real status files.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from attuned.report.status import DaemonStatus, PackStatus, SourceStatus, Status, now, write_status
from tests.cli.inprocess import run_attuned
from tests.cli.test_history_cli import registry_of, write_config
from tests.store.test_runs import Scenario, TapPack


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path, f"sqlite:///{tmp_path / 'attuned.db'}")


def scenario_on(config: Path, steps: list[tuple[str, tuple[str, ...]]]) -> list[bool]:
    """Register each (version, failing cases) in turn; whether each was registered."""
    registry = registry_of(config)
    try:
        scenario = Scenario(registry, TapPack(config.parent))
        landed = []
        for version, fail in steps:
            scenario.tell(fail)
            landed.append(scenario.register(version))
        return landed
    finally:
        registry.close()


def show(config: Path, capsys: pytest.CaptureFixture[str], *flags: str) -> tuple[int, str]:
    done = run_attuned(["show", "hello", "--config", config, *flags], capsys)
    return done.returncode, done.stdout + done.stderr


def show_json(config: Path, capsys: pytest.CaptureFixture[str]) -> Any:
    code, out = show(config, capsys, "--json")
    assert code == 0, out
    return json.loads(out)


def test_a_pack_whose_first_registration_failed_shows_its_attempt(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert scenario_on(config, [("1.0.0", ("bravo",))]) == [False]

    code, out = show(config, capsys)

    assert code == 0, out
    lines = out.splitlines()
    assert lines[0] == "hello: not registered, nothing served"
    assert lines[1].startswith("last attempt: 1.0.0, ") and lines[1].endswith(", rolled back")
    assert lines[2].startswith("  reason: ") and "min_pass_rate" in lines[2]
    assert lines[3].startswith("tests of 1.0.0 (candidate, rolled back) (register, rolled_back, ")
    assert "    FAIL bravo: bravo broke" in lines[4:]
    attempt = show_json(config, capsys)["last_attempt"]
    assert (attempt["version"], attempt["outcome"]) == ("1.0.0", "rolled_back")
    assert attempt["at"].endswith("Z")
    assert datetime.fromisoformat(attempt["at"]) <= datetime.now(UTC)
    assert attempt["failing_cases"] == [
        {"case": "tap::bravo", "status": "failed", "message": "bravo broke"}
    ]


def test_a_rolled_back_candidate_is_named_not_shown_under_the_serving_version(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert scenario_on(config, [("1.0.0", ()), ("1.1.0", ("charlie",))]) == [True, False]

    code, out = show(config, capsys)

    assert code == 0, out
    assert out.startswith("hello 1.0.0  Hello\n")
    attempt = next(line for line in out.splitlines() if line.startswith("last attempt:"))
    assert attempt.startswith("last attempt: 1.1.0, ")
    assert attempt.endswith(", rolled back (serving 1.0.0)")
    assert "\ntests of 1.1.0 (candidate, rolled back) (upgrade, rolled_back, " in out
    assert "latest test" not in out
    shown = show_json(config, capsys)
    assert shown["pack"]["version"] == "1.0.0"
    assert shown["last_attempt"]["version"] == "1.1.0"


def test_a_served_pack_tested_last_has_no_attempt(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert scenario_on(config, [("1.0.0", ())]) == [True]

    code, out = show(config, capsys)

    assert code == 0
    assert "last attempt" not in out
    assert "\nlatest test of 1.0.0 (register, registered, " in out
    assert show_json(config, capsys)["last_attempt"] is None


def test_an_invalid_pack_shows_the_daemons_verdict(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Never registered, no test run: what is known is in the daemon's status file."""
    problem = "/srv/packs.d/hello/pack.yaml:4: version: not a semantic version"
    at = now()
    write_status(
        config.parent / "state/status.json",
        Status(
            daemon=DaemonStatus(version="1", pid=1, started_at=at, phase="idle"),
            updated_at=at,
            sources=[
                SourceStatus(
                    name="local",
                    type="directory",
                    location="/srv/packs.d",
                    last_scan=at,
                    invalid=[{"entry": "hello", "problems": [problem]}],
                )
            ],
            packs={"other": PackStatus(state="active", version="1.0.0")},
        ),
    )

    code, out = show(config, capsys)

    assert code == 0, out
    assert out.splitlines()[:3] == [
        "hello: not registered, nothing served",
        f"last attempt: unknown version, {at:%Y-%m-%d %H:%M:%S}, invalid",
        f"  reason: {problem}",
    ]
    assert show_json(config, capsys)["last_attempt"]["reason"] == problem


def test_a_ref_nothing_knows_is_not_registered(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert show(config, capsys) == (2, "error: pack 'hello' is not registered\n")
