"""`attuned history` as an operator runs it: its filters, --case, --cases and --flaky, in
text and JSON, over a history made by real test runs (a TAP script told what to do by a
control file), on SQLite and PostgreSQL. The verb runs in-process through `main()`, exactly
as the console script calls it; one test runs the real subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog

from attuned.cli.history import DEFAULT_LIMIT
from attuned.cli.main import main
from attuned.config import load_config
from attuned.errors import AttunedError
from attuned.registry import Registry
from tests.store.test_runs import (
    BACKENDS,
    V1_CASES,
    Ran,
    Scenario,
    TapPack,
    scratch_database,
)


def write_config(root: Path, db_url: str) -> Path:
    """attuned.yaml for the command and the registry that makes the history (no sandbox:
    the test scripts read a control file under the test's temporary directory)."""
    config = root / "attuned.yaml"
    config.write_text(
        f"state_dir: {root / 'state'}\ndatabase:\n  url: {db_url}\n"
        "testing:\n  kill_grace: 0.5\n  sandbox: none\n"
    )
    return config


def registry_of(config: Path) -> Registry:
    return Registry.from_config(load_config(config))


class Attuned:
    """The `attuned` command on one config, its output captured."""

    def __init__(self, config: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.config = config
        self.capsys = capsys

    def run(self, *args: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        logging = structlog.get_config()  # main() logs to this test's captured stderr
        try:
            code = main([*args, "--config", str(self.config)])
        except SystemExit as exc:  # argparse refusing a flag
            code = int(exc.code or 0)
        finally:
            structlog.configure(**logging)
        out, err = self.capsys.readouterr()
        return code, out, err

    def __call__(self, *args: str, code: int = 0) -> str:
        got, out, err = self.run(*args)
        assert got == code, (got, out, err)
        return out

    def json(self, *args: str, code: int = 0) -> Any:
        return json.loads(self(*args, "--json", code=code))

    def subprocess(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "ATTUNED_CONFIG"}
        return subprocess.run(
            [sys.executable, "-m", "attuned", *args, "--config", str(self.config)],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )


@dataclass
class Made:
    """What the module's scenario ran, and each run's id (the i-th run made is the i-th
    stored: ids are handed out in order)."""

    config: Path
    ran: list[Ran]

    def ids(self, keep: Callable[[Ran], bool] = lambda r: True) -> list[int]:
        return [i + 1 for i in reversed(range(len(self.ran))) if keep(self.ran[i])]


def make_history(config: Path) -> list[Ran]:
    """14 runs: 1.0.0 registered and re-tested six times (passed, failed, partial,
    skipped), 1.1.0 rolled back for a regression, then registered and re-tested."""
    registry = registry_of(config)
    try:
        scenario = Scenario(registry, TapPack(config.parent))
        scenario.tell()
        scenario.register("1.0.0")
        for fail, skip in [
            ((), ()),
            (("bravo",), ()),
            ((), ()),
            ((), ("delta",)),
            (("bravo",), ()),
            ((), V1_CASES),
        ]:
            scenario.tell(fail, skip)
            scenario.test_served()
        scenario.tell(fail=("bravo",))
        assert not scenario.register("1.1.0")
        scenario.tell()
        assert scenario.register("1.1.0")
        for fail in [(), ("charlie",), (), ()]:
            scenario.tell(fail)
            scenario.test_served()
        return scenario.ran
    finally:
        registry.close()


@pytest.fixture(scope="module", params=BACKENDS)
def made(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Made]:
    with scratch_database(request.param, request, tmp_path_factory) as url:
        config = write_config(tmp_path_factory.mktemp("history-cli"), url)
        yield Made(config, make_history(config))


@pytest.fixture
def cli(made: Made, capsys: pytest.CaptureFixture[str]) -> Attuned:
    return Attuned(made.config, capsys)


def run_ids(text: str) -> list[int]:
    """The RUN column of a history table."""
    lines = text.splitlines()
    assert lines[0].startswith("RUN ")
    return [int(line.split()[0].removeprefix("#")) for line in lines[1:]]


# -- the run list and its filters ---------------------------------------------------------


def test_the_table_shows_run_ids_newest_first(cli: Attuned, made: Made) -> None:
    out = cli("history", "hello")
    assert out.splitlines()[0].split() == [
        "RUN",
        "TIME",
        "VERSION",
        "TRIGGER",
        "STATUS",
        "PASSED",
        "RATE",
        "OUTCOME",
        "GATE",
    ]
    assert run_ids(out) == made.ids()
    assert [e["id"] for e in cli.json("history", "hello", "--limit", "3")] == made.ids()[:3]


def test_a_listed_run_is_shown_as_show_shows_it(cli: Attuned) -> None:
    """history lists runs without the ORM; the JSON of a run stays the same as elsewhere."""
    [newest] = cli.json("history", "hello", "--limit", "1", "--full")
    assert newest == cli.json("show", "hello")["latest_test"]
    [brief] = cli.json("history", "hello", "--limit", "1")
    assert brief == {k: v for k, v in newest.items() if k != "result"}


def test_json_times_are_utc_with_a_z(cli: Attuned, made: Made) -> None:
    """As every time attuned prints in JSON (the status file's, the events')."""
    shown = [
        *(r["execution_time"] for r in cli.json("history", "hello", "--limit", "2")),
        *(r["execution_time"] for r in cli.json("history", "hello", "--case", "bravo")),
        cli.json("history", "hello", "--cases")["run"]["execution_time"],
    ]
    assert all(t.endswith("Z") and "+" not in t for t in shown), shown
    newest = datetime.fromisoformat(shown[0])
    assert newest.utcoffset() == timedelta(0) and newest >= made.ran[-1].mark


@pytest.mark.parametrize(
    ("flags", "keep"),
    [
        (["--version", "1.1.0"], lambda r: r.version == "1.1.0"),
        (["--status", "failed"], lambda r: r.status == "failed"),
        (
            ["--status", "partial,skipped", "--status", "error"],
            lambda r: r.status in ("partial", "skipped", "error"),
        ),
        (["--trigger", "install"], lambda r: r.trigger == "register"),
        (["--trigger", "update"], lambda r: r.trigger in ("upgrade", "reinstall")),
        (["--trigger", "upgrade,manual"], lambda r: r.trigger in ("upgrade", "manual")),
        (
            ["--version", "1.0.0", "--status", "failed", "--trigger", "manual"],
            lambda r: r.version == "1.0.0" and r.status == "failed" and r.trigger == "manual",
        ),
        (["--since", "1h"], lambda r: True),
        (["--since", "2000-01-01", "--until", "2999-12-31"], lambda r: True),
    ],
)
def test_filters(cli: Attuned, made: Made, flags: list[str], keep: Callable[[Ran], bool]) -> None:
    expected = made.ids(keep)
    assert expected
    assert run_ids(cli("history", "hello", *flags)) == expected
    assert [e["id"] for e in cli.json("history", "hello", *flags)] == expected


def test_since_and_until_take_iso_times(cli: Attuned, made: Made) -> None:
    middle = made.ran[7].mark  # the rolled-back 1.1.0 started just after it
    assert run_ids(cli("history", "hello", "--since", middle.isoformat())) == made.ids(
        lambda r: r.mark >= middle
    )
    before = made.ids(lambda r: r.mark < middle)
    got = [e["id"] for e in cli.json("history", "hello", "--until", middle.isoformat())]
    assert got == before
    naive = middle.replace(tzinfo=None).isoformat(sep=" ")  # no zone: UTC
    assert [e["id"] for e in cli.json("history", "hello", "--until", naive)] == before
    local = middle.astimezone().isoformat()  # any zone: the same instant
    assert [e["id"] for e in cli.json("history", "hello", "--until", local)] == before


def test_nothing_matching_says_so(cli: Attuned) -> None:
    assert (
        cli("history", "hello", "--until", "1h")
        == "no test executions of 'hello' match the filters\n"
    )
    assert cli.json("history", "hello", "--version", "9.9.9") == []
    # a ref never registered nor tested is a usage error, as `show nope` is
    assert cli.run("history", "nope") == (
        2,
        "",
        "error: pack 'nope' is not registered and has no test runs\n",
    )


@pytest.mark.parametrize(
    ("flags", "complaint"),
    [
        (["--status", "green"], "unknown status green"),
        (["--trigger", "deploy"], "unknown trigger 'deploy'"),
        (["--since", "yesterday"], "neither an ISO 8601 date or time nor a duration"),
        (["--until", "2026-13-01"], "neither an ISO 8601"),
        (["--cases", "abc"], "is not a run id"),
        (["--case", "x", "--flaky"], "not allowed with argument"),
    ],
)
def test_bad_flags_are_usage_errors(cli: Attuned, flags: list[str], complaint: str) -> None:
    code, _, err = cli.run("history", "hello", *flags)
    assert code == 2 and complaint in err, err


# -- --case ---------------------------------------------------------------------------------


def test_case_lists_each_run_of_a_case(cli: Attuned, made: Made) -> None:
    rows = cli.json("history", "hello", "--case", "tap::b*")
    expected = [(i, made.ran[i - 1].cases["bravo"]) for i in made.ids()]
    assert [(r["run_id"], r["status"]) for r in rows] == expected
    assert set(rows[0]) == {
        "run_id",
        "pack_version",
        "pack_digest",
        "trigger_type",
        "execution_time",
        "case",
        "suite",
        "name",
        "status",
        "duration_ms",
        "message",
    }
    failing = next(r for r in rows if r["status"] == "failed")
    assert (failing["case"], failing["message"]) == ("tap::bravo", "bravo broke")
    out = cli("history", "hello", "--case", "bravo", "--trigger", "manual", "--status", "failed")
    assert out.splitlines()[0].split() == [
        "RUN",
        "TIME",
        "VERSION",
        "TRIGGER",
        "CASE",
        "STATUS",
        "MS",
        "MESSAGE",
    ]
    manual_failed = made.ids(lambda r: r.trigger == "manual" and r.status == "failed")
    assert run_ids(out) == manual_failed
    assert "bravo broke" in out


def test_case_matching_nothing(cli: Attuned) -> None:
    assert "no runs of a case matching 'zulu'" in cli("history", "hello", "--case", "zulu")


# -- --cases --------------------------------------------------------------------------------


def test_cases_of_the_newest_matching_run(cli: Attuned, made: Made) -> None:
    newest_failed = made.ids(lambda r: r.status == "failed")[0]
    out = cli("history", "hello", "--status", "failed", "--cases")
    cases_table, _, failures = out.partition("\n\n")  # then each failing case's message
    first, header, *rows = cases_table.splitlines()
    assert first.startswith(f"run #{newest_failed}: hello ")
    assert header.split() == ["SUITE", "CASE", "STATUS", "MS", "MESSAGE"]
    expected = made.ran[newest_failed - 1].cases
    assert {r.split()[1]: r.split()[2] for r in rows} == expected
    failing = sorted(n for n, status in expected.items() if status == "failed")
    assert [line for line in failures.splitlines() if not line.startswith(" ")] == [
        f"FAILED tap::{name}:" for name in failing
    ]


def test_cases_of_a_named_run(cli: Attuned, made: Made) -> None:
    for wanted in ("#3", "3"):
        shown = cli.json("history", "hello", "--cases", wanted)
        assert shown["run"]["id"] == 3
        assert {c["name"]: c["status"] for c in shown["cases"]} == made.ran[2].cases
        assert set(shown["cases"][0]) == {
            "case",
            "suite",
            "name",
            "status",
            "duration_ms",
            "message",
        }


def test_cases_of_no_such_run(cli: Attuned) -> None:
    code, _, err = cli.run("history", "hello", "--cases", "999")
    assert code == 2 and "no test run #999 of 'hello'" in err
    code, _, err = cli.run("history", "hello", "--cases", "--version", "9")
    assert code == 2 and "no test run of 'hello' matches" in err


# -- --flaky ----------------------------------------------------------------------------------


def test_flaky_names_the_cases_that_flipped_per_digest(cli: Attuned, made: Made) -> None:
    shown = cli.json("history", "hello", "--flaky")
    v1 = [i for i in made.ids() if made.ran[i - 1].version == "1.0.0"][:5]
    v1_cases = [made.ran[i - 1].cases for i in v1]
    flips = sorted(
        n
        for n in V1_CASES
        if {c[n] for c in v1_cases} >= {"passed", "failed"}  # both sides, in 1.0.0's window
    )
    assert flips == ["bravo"]
    by_version = {tuple(r["versions"]): r for r in shown}
    one = by_version[("1.0.0",)]
    assert one["run_ids"] == v1
    assert [c["case"] for c in one["cases"]] == ["tap::bravo"]
    bravo = one["cases"][0]
    statuses = [c["bravo"] for c in v1_cases]
    assert (bravo["passed"], bravo["failed"], bravo["skipped"]) == (
        statuses.count("passed"),
        statuses.count("failed"),
        statuses.count("skipped"),
    )
    assert [c["case"] for c in by_version[("1.1.0",)]["cases"]] == ["tap::charlie"]
    out = cli("history", "hello", "--flaky")
    assert out.splitlines()[0].split() == [
        "VERSION",
        "DIGEST",
        "CASE",
        "PASSED",
        "FAILED",
        "SKIPPED",
        "RUNS",
    ]
    assert "tap::bravo" in out and "tap::charlie" in out
    assert "no flaky cases" in cli("history", "hello", "--flaky", "--status", "passed")


def test_the_real_command_prints_the_same(cli: Attuned, made: Made) -> None:
    proc = cli.subprocess("history", "hello", "--trigger", "update", "--json")
    assert proc.returncode == 0, proc.stderr
    assert [e["id"] for e in json.loads(proc.stdout)] == made.ids(
        lambda r: r.trigger in ("upgrade", "reinstall")
    )


def test_relative_durations_are_that_long_ago() -> None:
    from attuned.cli.history import moment

    for text, delta in [("90s", timedelta(seconds=90)), ("30m", timedelta(minutes=30))]:
        assert abs((moment("0s") - moment(text)) - delta) < timedelta(seconds=5)
    assert abs(moment("7d") - moment("1w")) < timedelta(seconds=5)


def test_a_long_history_shows_the_newest_hundred_and_says_how_to_see_more(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'attuned.db'}")
    registry = registry_of(config)
    try:
        scenario = Scenario(registry, TapPack(tmp_path))
        scenario.tell()
        scenario.register("1.0.0")
        for _ in range(DEFAULT_LIMIT + 2):
            scenario.test_served()
    finally:
        registry.close()
    cli = Attuned(config, capsys)

    out = cli("history", "hello")

    ids = run_ids(out.split("\n(")[0])
    assert len(ids) == DEFAULT_LIMIT and ids[0] == DEFAULT_LIMIT + 3
    assert out.rstrip().endswith("(3 older runs: --limit N or --all to see them)")
    assert len(run_ids(cli("history", "hello", "--all"))) == DEFAULT_LIMIT + 3
    assert len(cli.json("history", "hello")) == DEFAULT_LIMIT
    assert len(cli.json("history", "hello", "--limit", "150")) == DEFAULT_LIMIT + 3


LONG_DIAGNOSTIC = (
    "got 4 after a wait far longer than the seventy-two columns of a table allow a message"
)


def test_cases_in_text_show_each_failing_cases_whole_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The table cuts a message to its first line; what follows it says why, in full."""
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'attuned.db'}")
    pack = tmp_path / "hello"
    (pack / "tests").mkdir(parents=True)
    (pack / "pack.yaml").write_text(
        "ref: hello\nlabel: Hello\nversion: 1.0.0\ntesting:\n  enabled: true\n  runners:\n"
        "    tap: {type: script, entry_point: tests/run.sh, result_format: tap}\n"
    )
    script = pack / "tests/run.sh"
    script.write_text(
        "#!/bin/sh\necho 1..2\necho 'ok 1 - alpha'\necho 'not ok 2 - bravo'\n"
        f"echo '  # {LONG_DIAGNOSTIC}'\n"
    )
    script.chmod(0o755)
    registry = registry_of(config)
    try:
        with pytest.raises(AttunedError):  # rolled back: the run is in the history anyway
            registry.register(pack)
    finally:
        registry.close()
    cli = Attuned(config, capsys)

    out = cli("history", "hello", "--cases")

    messages = {c["name"]: c["message"] for c in cli.json("history", "hello", "--cases")["cases"]}
    assert messages == {"alpha": None, "bravo": LONG_DIAGNOSTIC}
    table_part, _, failures = out.partition("\n\n")
    assert LONG_DIAGNOSTIC not in table_part  # cut there
    assert failures.splitlines() == ["FAILED tap::bravo:", f"  {LONG_DIAGNOSTIC}"]
