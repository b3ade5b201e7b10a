"""The run filters of `attuned history` and `compare` on a real history: hundreds of runs of
a real TAP test script (its outcome set by a control file the test writes), registered and
re-tested through the Registry, on SQLite and PostgreSQL. Each expectation is computed from
what the test ran, never read back from the database.
"""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlmodel import col, select

from attuned.errors import AttunedError
from attuned.pack.loader import load_pack
from attuned.registry import Registry
from attuned.settings.testing import ExecutorSettings, HistorySettings, SandboxMode
from attuned.store import comparisons, runs
from attuned.store.database import Database
from attuned.store.models import TestRun
from attuned.store.packstore import PackStore
from attuned.store.runs import RunFilter
from attuned.testing.executor import TestExecutor
from attuned.testing.regressions import FAILING, PASSING, Thresholds, flaky_cases
from tests import attune_db
from tests.conftest import POSTGRES_ENV

V1_CASES = ("alpha", "bravo", "charlie", "delta", "50%_done", "weird[1]")
V2_CASES = ("alpha", "bravo", "charlie", "echo", "50%_done", "weird[1]")
WINDOW = 5  # testing.history.flaky_window's default

SCRIPT = """\
#!/bin/sh
fail=""; skip=""
[ -f "{control}" ] && . "{control}"
echo "1..{count}"
n=0
for c in {names}; do
  n=$((n + 1))
  case " $fail " in *" $c "*) echo "not ok $n - $c"; echo "  # $c broke"; continue;; esac
  case " $skip " in *" $c "*) echo "ok $n - $c # SKIP not today"; continue;; esac
  echo "ok $n - $c"
done
"""


@dataclass(frozen=True)
class Ran:
    """One run the test made, as the test knows it: no database involved."""

    version: str
    trigger: str  # the stored trigger_type
    status: str
    digest: str
    cases: dict[str, str]  # case name -> passed | failed | skipped (empty: it could not run)
    mark: datetime  # taken just before the run started


def expected_status(cases: dict[str, str]) -> str:
    """Attune's rule, applied to what the script was told to do."""
    if not cases:
        return "error"
    if "failed" in cases.values():
        return "failed"
    if all(s == "skipped" for s in cases.values()):
        return "skipped"
    return "partial" if "skipped" in cases.values() else "passed"


@dataclass
class TapPack:
    """The `hello` pack: a TAP script whose cases fail or skip as a control file says
    (sourced by the script, so no process per case), written per version and content."""

    root: Path
    control: Path = field(init=False)
    contents: int = 0

    def __post_init__(self) -> None:
        self.control = self.root / "control.sh"

    def tell(self, fail: Sequence[str] = (), skip: Sequence[str] = ()) -> None:
        self.control.write_text(f'fail="{" ".join(fail)}"\nskip="{" ".join(skip)}"\n')

    def write(
        self,
        version: str,
        names: Sequence[str] = V1_CASES,
        *,
        runtime_deps: Sequence[str] = (),
        min_pass_rate: float = 1.0,
    ) -> Path:
        """A new directory (so a new digest) each call, even for the same version."""
        self.contents += 1
        path = self.root / "src" / f"content{self.contents}" / "hello"
        manifest = {
            "ref": "hello",
            "label": "Hello",
            "description": "a pack whose tests do what they are told",
            "version": version,
            "runtime_deps": list(runtime_deps),
            "testing": {
                "enabled": True,
                "runners": {
                    "tap": {
                        "type": "script",
                        "entry_point": "tests/run.sh",
                        "timeout": 20,
                        "result_format": "tap",
                    }
                },
                "min_pass_rate": min_pass_rate,
            },
        }
        script = path / "tests/run.sh"
        script.parent.mkdir(parents=True)
        (path / "pack.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
        (path / "README.md").write_text(f"content {self.contents}\n")
        script.write_text(
            SCRIPT.format(
                control=self.control,
                count=len(names),
                names=" ".join(f"'{n}'" for n in names),
            )
        )
        script.chmod(0o755)
        return path


def outcome_of(names: Sequence[str], fail: Sequence[str], skip: Sequence[str]) -> dict[str, str]:
    return {n: "failed" if n in fail else "skipped" if n in skip else "passed" for n in names}


class Scenario:
    """Drives the registry and remembers every run it caused, in order."""

    def __init__(self, registry: Registry, pack: TapPack) -> None:
        self.registry = registry
        self.pack = pack
        self.ran: list[Ran] = []
        self.serving: tuple[str, str, tuple[str, ...]] | None = None  # version, digest, cases
        self.fail: tuple[str, ...] = ()
        self.skip: tuple[str, ...] = ()

    def tell(self, fail: Sequence[str] = (), skip: Sequence[str] = ()) -> None:
        self.fail, self.skip = tuple(fail), tuple(skip)
        self.pack.tell(fail, skip)

    def test_served(self) -> None:
        assert self.serving is not None
        version, digest, names = self.serving
        mark = datetime.now(UTC)
        self.registry.test_served("hello")
        cases = outcome_of(names, self.fail, self.skip)
        self.ran.append(Ran(version, "manual", expected_status(cases), digest, cases, mark))

    def register(
        self,
        version: str,
        names: Sequence[str] = V1_CASES,
        *,
        runtime_deps: Sequence[str] = (),
        min_pass_rate: float = 1.0,
    ) -> bool:
        """Register (replacing); whether it was registered."""
        path = self.pack.write(
            version, names, runtime_deps=runtime_deps, min_pass_rate=min_pass_rate
        )
        digest = load_pack(path).digest
        if self.serving is None:
            trigger = "register"
        else:
            trigger = "reinstall" if self.serving[0] == version else "upgrade"
        cases = {} if runtime_deps else outcome_of(names, self.fail, self.skip)
        mark = datetime.now(UTC)
        try:
            self.registry.register(path, replace=True)
            registered = True
        except AttunedError:  # rolled back: the gate, a regression, the environment
            registered = False
        self.ran.append(Ran(version, trigger, expected_status(cases), digest, cases, mark))
        if registered:
            self.serving = (version, digest, tuple(names))
        return registered


def registry_on(database: Database, root: Path, keep_runs: int) -> Registry:
    # no sandbox: the script reads its control file under the test's temporary directory
    settings = ExecutorSettings(
        kill_grace=0.5,
        sandbox=SandboxMode.NONE,
        history=HistorySettings(keep_runs=keep_runs),
    )
    return Registry(database, PackStore(root / "packs"), TestExecutor(settings))


CHOICES: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    ((), ()),  # passed
    ((), ()),
    (("bravo",), ()),  # failed
    (("charlie", "alpha"), ("delta",)),  # failed
    ((), ("delta", "echo")),  # partial
    ((), (*V1_CASES, "echo")),  # skipped
)


def generate(scenario: Scenario, rng: random.Random, served_runs: int) -> list[int]:
    """About 5 x `served_runs` runs over four versions: registrations that pass, are
    rolled back, reinstall, or cannot prepare their environment, and manual runs between
    them with outcomes drawn from CHOICES. Returns the index of each phase's first run."""
    phases = []

    def manual_runs() -> None:
        for _ in range(served_runs):
            scenario.tell(*rng.choice(CHOICES))
            scenario.test_served()

    scenario.tell()
    phases.append(len(scenario.ran))
    assert scenario.register("1.0.0")
    manual_runs()
    phases.append(len(scenario.ran))
    scenario.tell(fail=("bravo",))
    assert not scenario.register("1.1.0")  # bravo regressed: rolled back
    scenario.tell()
    assert scenario.register("1.1.0")
    manual_runs()
    phases.append(len(scenario.ran))
    scenario.tell()
    assert scenario.register("1.1.0")  # other content, same version: a reinstall
    scenario.tell(skip=V1_CASES)
    assert not scenario.register("1.2.0")  # all skipped: pass rate 0
    assert not scenario.register("2.0.0", V2_CASES, runtime_deps=["attuned-no-such-tool"])
    scenario.tell()
    assert scenario.register("2.0.0", V2_CASES, min_pass_rate=0.5)
    manual_runs()
    phases.append(len(scenario.ran))
    scenario.tell(fail=("echo",))
    scenario.register("2.0.0", V2_CASES, min_pass_rate=0.5)  # a reinstall, regressed
    manual_runs()
    return phases


@dataclass
class History:
    registry: Registry
    scenario: Scenario
    ids: list[int]  # the run id of scenario.ran[i]
    phases: list[int]

    @property
    def ran(self) -> list[Ran]:
        return self.scenario.ran

    def expect(self, keep: Callable[[Ran], bool]) -> list[int]:
        """The ids of the runs `keep(ran)` accepts, newest first."""
        return [self.ids[i] for i in reversed(range(len(self.ran))) if keep(self.ran[i])]

    def select(self, **where: Any) -> list[int]:
        with self.registry.db.read() as session:
            found = runs.runs(session, RunFilter("hello", **where))
        return [r.id for r in found if r.id is not None]


_PG = pytest.param(
    "postgresql",
    marks=[
        pytest.mark.postgres,
        pytest.mark.skipif(not os.environ.get(POSTGRES_ENV), reason=f"needs {POSTGRES_ENV}"),
    ],
)


@contextmanager
def scratch_database(
    backend: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A database URL on `backend` that outlives one test (module fixtures build a history
    once): a SQLite file, or a PostgreSQL database with Attune's schema, dropped after."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'attuned.db'}"
        return
    base = os.environ[POSTGRES_ENV]
    template = request.getfixturevalue("attune_template")
    name = f"attuned_test_{uuid.uuid4().hex[:12]}"
    url = attune_db.create_database(base, name, template=template)
    if template is None:
        attune_db.with_attune_schema(url)
    try:
        yield url
    finally:
        attune_db.drop_database(base, name)


BACKENDS = ["sqlite", _PG]


@pytest.fixture(scope="module", params=BACKENDS)
def history_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    with scratch_database(request.param, request, tmp_path_factory) as url:
        yield url


@pytest.fixture(scope="module")
def history(history_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[History]:
    database = Database(history_url)
    database.migrate()
    root = tmp_path_factory.mktemp("history")
    registry = registry_on(database, root, keep_runs=10_000)  # every run keeps its cases
    scenario = Scenario(registry, TapPack(root))
    phases = generate(scenario, random.Random(20261205), served_runs=60)
    with database.read() as session:
        stored = session.exec(select(TestRun).order_by(col(TestRun.id))).all()
    # the i-th run made is the i-th stored; the rows' own fields are checked by the tests
    assert len(stored) == len(scenario.ran)
    ids = [r.id for r in stored if r.id is not None]
    try:
        yield History(registry, scenario, ids, phases)
    finally:
        registry.close()


# -- the history is what it should be ------------------------------------------------------


@pytest.mark.slow
def test_the_history_holds_every_run_made_with_its_version_trigger_and_status(
    history: History,
) -> None:
    assert len(history.ran) >= 200
    with history.registry.db.read() as session:
        stored = runs.runs(session, RunFilter("hello"))
    assert [(r.pack_version, r.trigger_type, r.status, r.pack_digest) for r in stored] == [
        (ran.version, ran.trigger, ran.status, ran.digest) for ran in reversed(history.ran)
    ]
    # every kind of run is there, so that each filter below has something to tell apart
    assert {r.status for r in history.ran} == set(runs.STATUSES)
    assert {r.trigger for r in history.ran} == {"register", "upgrade", "reinstall", "manual"}


# -- filters ------------------------------------------------------------------------------


def test_no_filter_is_every_run_newest_first(history: History) -> None:
    assert history.select() == history.expect(lambda r: True)
    assert history.select(limit=7) == history.expect(lambda r: True)[:7]


@pytest.mark.parametrize("versions", [("1.1.0",), ("1.0.0", "2.0.0"), ("1.2.0",), ("9.9.9",)])
def test_version(history: History, versions: tuple[str, ...]) -> None:
    assert history.select(versions=versions) == history.expect(lambda r: r.version in versions)


@pytest.mark.parametrize(
    "statuses", [("failed",), ("failed", "partial"), ("skipped",), ("error",), ("passed",)]
)
def test_status(history: History, statuses: tuple[str, ...]) -> None:
    expected = history.expect(lambda r: r.status in statuses)
    assert expected, statuses
    assert history.select(statuses=statuses) == expected


@pytest.mark.parametrize(
    ("names", "stored"),
    [
        (["install"], {"register"}),
        (["update"], {"upgrade", "reinstall"}),
        (["manual"], {"manual"}),
        (["reinstall"], {"reinstall"}),
        (["install", "update"], {"register", "upgrade", "reinstall"}),
    ],
)
def test_trigger_and_its_aliases(history: History, names: list[str], stored: set[str]) -> None:
    triggers = runs.stored_triggers(names)
    assert set(triggers) == stored
    expected = history.expect(lambda r: r.trigger in stored)
    assert expected
    assert history.select(triggers=triggers) == expected


def test_unknown_trigger_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown trigger 'deploy'"):
        runs.stored_triggers(["deploy"])


def test_since_and_until_bound_by_time(history: History) -> None:
    marks = [r.mark for r in history.ran]
    first, second, third = history.phases[1:4]
    assert history.select(since=marks[second]) == history.expect(lambda r: r.mark >= marks[second])
    assert history.select(until=marks[first]) == history.expect(lambda r: r.mark < marks[first])
    window = history.select(since=marks[first], until=marks[third])
    assert window == history.expect(lambda r: marks[first] <= r.mark < marks[third])
    assert len(window) == third - first


def test_a_bound_in_another_zone_means_the_same_instant(history: History) -> None:
    mark = history.ran[history.phases[2]].mark
    elsewhere = mark.astimezone(timezone(timedelta(hours=5, minutes=30)))
    assert history.select(since=elsewhere) == history.select(since=mark)
    naive_utc = mark.replace(tzinfo=None)  # naive: UTC, as attuned writes times
    assert history.select(since=naive_utc) == history.select(since=mark)


def test_filters_combine(history: History) -> None:
    expected = history.expect(
        lambda r: r.version == "1.0.0" and r.status == "failed" and r.trigger == "manual"
    )
    assert expected
    got = history.select(versions=("1.0.0",), statuses=("failed",), triggers=("manual",))
    assert got == expected
    since = history.ran[history.phases[2]].mark
    expected = history.expect(lambda r: r.mark >= since and r.status in ("passed", "partial"))
    assert history.select(since=since, statuses=("passed", "partial"), limit=5) == expected[:5]


def test_digest_and_other_than(history: History) -> None:
    digest = history.ran[history.phases[1] + 1].digest  # 1.1.0's first registered content
    assert history.select(digest=digest) == history.expect(lambda r: r.digest == digest)
    assert history.select(other_than=digest) == history.expect(lambda r: r.digest != digest)


# -- one case across runs -----------------------------------------------------------------


def case_rows(history: History, glob: str, **where: Any) -> list[tuple[int, str, str]]:
    with history.registry.db.read() as session:
        found = runs.case_runs(session, RunFilter("hello", **where), glob)
    return [(r.run_id, r.case, r.status) for r in found]


def expect_cases(history: History, matches: Callable[[str], bool]) -> list[tuple[int, str, str]]:
    """(run id, tap::name, status) of every case `matches(name)` accepts, newest run first,
    cases in name order."""
    rows = []
    for i in reversed(range(len(history.ran))):
        ran = history.ran[i]
        for name in sorted(ran.cases):
            if matches(name):
                rows.append((history.ids[i], f"tap::{name}", ran.cases[name]))
    return rows


@pytest.mark.parametrize(
    ("glob", "names"),
    [
        ("bravo", {"bravo"}),
        ("tap::bravo", {"bravo"}),
        ("tap::?cho", {"echo"}),
        ("*o", {"bravo", "echo"}),
        ("*a*", {"alpha", "bravo", "charlie", "delta"}),  # the name alone, not tap::
        ("*::bravo", {"bravo"}),
        ("t?p::*cho", {"echo"}),
        ("tap::*", {*V1_CASES, "echo"}),
        ("other::bravo", set()),
        ("*_*", {"50%_done"}),  # an underscore is no wildcard
        ("*%*", {"50%_done"}),  # nor a percent sign
        ("5_%", set()),
        ("weird[1]", {"weird[1]"}),  # nor a bracket
        ("BRAVO", set()),  # case-sensitive, on SQLite too
        ("ta*::*ie", {"charlie"}),
        ("*", {*V1_CASES, "echo"}),
    ],
)
def test_case_glob(history: History, glob: str, names: set[str]) -> None:
    expected = expect_cases(history, lambda n: n in names)
    assert case_rows(history, glob) == expected
    assert bool(expected) == bool(names)


def test_case_glob_with_filters(history: History) -> None:
    expected = [
        row
        for row in expect_cases(history, lambda n: n == "bravo")
        if history.ran[history.ids.index(row[0])].trigger != "manual"
    ]
    triggers = runs.stored_triggers(["install", "update"])
    assert case_rows(history, "bravo", triggers=triggers) == expected
    assert case_rows(history, "bravo", triggers=triggers, limit=3) == expected[:3]


# -- flaky cases --------------------------------------------------------------------------


def expect_flaky(history: History) -> list[tuple[str, tuple[int, ...], dict[str, tuple[int, int]]]]:
    """Per digest (newest first): its newest WINDOW runs that ran tests, and the cases that
    both passed and failed among them, with (passed, failed) counts."""
    windows: dict[str, list[int]] = {}
    for i in reversed(range(len(history.ran))):
        ran = history.ran[i]
        if ran.cases and len(windows.setdefault(ran.digest, [])) < WINDOW:
            windows[ran.digest].append(i)
    found = []
    for digest, members in windows.items():
        statuses = [{("tap", n): s for n, s in history.ran[i].cases.items()} for i in members]
        flipped = sorted(flaky_cases(statuses))
        counts = {
            f"{suite}::{name}": (
                sum(s.get((suite, name)) in PASSING for s in statuses),
                sum(s.get((suite, name)) in FAILING for s in statuses),
            )
            for suite, name in flipped
        }
        if counts:
            found.append((digest, tuple(history.ids[i] for i in members), counts))
    return found


def test_flaky_cases_per_digest(history: History) -> None:
    expected = expect_flaky(history)
    assert expected  # the manual runs flip bravo, alpha and charlie on one content
    with history.registry.db.read() as session:
        found = runs.flaky(session, RunFilter("hello"), WINDOW)
    assert [
        (f.digest, f.run_ids, {c.case: (c.passed, c.failed) for c in f.cases}) for f in found
    ] == expected
    with history.registry.db.read() as session:
        assert len(runs.flaky(session, RunFilter("hello", limit=1), WINDOW)) == 1


# -- picking runs for compare ---------------------------------------------------------------


def test_selectors_pick_the_runs_they_name(history: History) -> None:
    assert history.scenario.serving is not None
    serving = history.scenario.serving[1]
    newest_serving = history.expect(lambda r: r.digest == serving and bool(r.cases))[0]
    newest_110 = history.expect(lambda r: r.version == "1.1.0" and bool(r.cases))[0]
    with history.registry.db.read() as session:
        assert comparisons.serving_digest(session, "hello") == serving
        assert comparisons.pick(session, "hello", "serving", serving).id == newest_serving
        assert comparisons.pick(session, "hello", "latest", serving).id == history.ids[-1]
        assert comparisons.pick(session, "hello", "1.1.0", serving).id == newest_110
        assert (
            comparisons.pick(session, "hello", f"#{history.ids[3]}", serving).id == history.ids[3]
        )
        for bad in ("#0", "#x", "9.9.9"):
            with pytest.raises(runs.RunNotFound):
                comparisons.pick(session, "hello", bad, serving)


def test_a_version_whose_only_run_could_not_test_is_still_picked(history: History) -> None:
    """2.0.0's first run had no tests (its environment failed); `#ID` names it exactly."""
    index = next(i for i, r in enumerate(history.ran) if r.status == "error")
    with history.registry.db.read() as session:
        run = comparisons.pick(session, "hello", f"#{history.ids[index]}", None)
    assert (run.status, run.total_tests) == ("error", 0)


def test_compare_defaults_to_serving_against_the_latest_candidate(history: History) -> None:
    assert history.scenario.serving is not None
    serving = history.scenario.serving[1]
    before = history.expect(lambda r: r.digest == serving and bool(r.cases))[0]
    # the newest run of other content, preferring one that ran tests (as a baseline would)
    after = (history.expect(lambda r: r.digest != serving and bool(r.cases)) or [None])[0]
    with history.registry.db.read() as session:
        found = comparisons.compare_runs(
            session, "hello", None, None, window=WINDOW, thresholds=Thresholds()
        )
    assert (found.before.id, found.after.id) == (before, after)


# -- pruned case rows ---------------------------------------------------------------------


def test_pruned_runs_leave_case_queries_but_not_their_cases(
    database: Database, tmp_path: Path
) -> None:
    """With keep_runs 3, 1.0.0's runs lose their case rows once 2.0.0 serves: `case_runs`
    (SQL only) sees the kept runs alone; a pruned run's cases and the flaky report still
    come from its stored result."""
    registry = registry_on(database, tmp_path, keep_runs=3)
    scenario = Scenario(registry, TapPack(tmp_path))
    scenario.tell()
    scenario.register("1.0.0")
    for fail in (("bravo",), (), ("bravo",)):
        scenario.tell(fail=fail)
        scenario.test_served()
    scenario.tell()
    scenario.register("2.0.0", V2_CASES)
    for _ in range(3):
        scenario.test_served()
    registry.prune_case_history()  # the daemon's upkeep
    with database.read() as session:
        ids = [r.id for r in reversed(runs.runs(session, RunFilter("hello")))]
        kept = [r.run_id for r in runs.case_runs(session, RunFilter("hello"), "bravo")]
        pruned = runs.statuses_of_runs(session, [ids[1]])[ids[1]]
        flaky = runs.flaky(session, RunFilter("hello"), WINDOW)
    assert len(ids) == 8
    assert kept == list(reversed(ids[4:]))  # 2.0.0 serves: all of its runs are kept
    assert pruned[("tap", "bravo")] == "failed"  # from the stored result
    assert [(f.versions, [c.case for c in f.cases]) for f in flaky] == [
        (("1.0.0",), ["tap::bravo"])
    ]
