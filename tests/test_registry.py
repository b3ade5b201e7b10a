"""Registration end to end on real databases, real pack directories and real test scripts.

Each numbered rule of the registration (see attuned/registry.py) has its tests here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import select
from structlog.testing import capture_logs

from attuned.errors import ConflictError, DependencyError, ValidationFailed
from attuned.registry import Outcome, Registry, TestsRolledBack, Trigger
from attuned.settings.testing import ExecutorSettings
from attuned.store import outbox_admin, registered_packs, revisions, run_records
from attuned.store.database import Database
from attuned.store.models import TestRun
from attuned.store.outbox import Outbox, StoredEvent
from attuned.store.packstore import PackStore
from attuned.testing.executor import TestExecutor
from tests.conftest import EXAMPLES, PackFactory

FAILING_TEST = """\
#!/bin/sh
echo "Total Tests: 4"
echo "Passed: 3"
echo "Failed: 1"
exit 1
"""
PARTIAL_TEST = """\
#!/bin/sh
echo "Total Tests: 4"
echo "Passed: 3"
echo "Failed: 0"
echo "Skipped: 1"
"""
ACTION = {
    "actions/greet.yaml": "ref: hello.greet\nrunner_type: shell\nentry_point: greet.sh\n",
    "actions/greet.sh": "echo hi\n",
}


@pytest.fixture
def registry(database: Database, tmp_path: Path) -> Iterator[Registry]:
    settings = ExecutorSettings(kill_grace=0.5)
    yield Registry(database, PackStore(tmp_path / "packs"), TestExecutor(settings))


def packs_in(registry: Registry) -> dict[str, str]:
    with registry.db.read() as session:
        return {p.ref: p.version for p in registered_packs.list_packs(session)}


def components_in(registry: Registry) -> list[str]:
    """Every component row in Attune's tables, whatever pack it belongs to."""
    with registry.db.read() as session:
        return sorted(
            c.ref
            for p in registered_packs.list_packs(session)
            for c in registered_packs.components_of(session, p.id)
        )


def executions_in(registry: Registry) -> list[tuple[str, str, str, str]]:
    with registry.db.read() as session:
        rows = session.exec(select(TestRun).order_by(TestRun.id)).all()
        return [(r.pack_ref, r.trigger_type, r.status, r.outcome) for r in rows]


def events_in(registry: Registry) -> list[StoredEvent]:
    """The outbox, oldest first."""
    with registry.db.read() as session:
        return [row.event for row in reversed(outbox_admin.listing(session, limit=1000))]


def served(registry: Registry) -> dict[str, str]:
    root = registry.store.root
    if not root.is_dir():
        return {}
    return {
        p.name: (p / "pack.yaml").read_text().split("version: ")[1].split()[0]
        for p in root.iterdir()
        if p.is_symlink()
    }


# 1. validation ------------------------------------------------------------------------------


def test_missing_directory_is_a_validation_error(registry: Registry, tmp_path: Path) -> None:
    with pytest.raises(ValidationFailed, match="pack directory not found"):
        registry.register(tmp_path / "nowhere")
    assert packs_in(registry) == {} and served(registry) == {}


def test_invalid_component_registers_nothing(registry: Registry, make_pack: PackFactory) -> None:
    path = make_pack(
        files={"actions/greet.yaml": "ref: hello.greet\nrunner_type: shell\nentry_point: no.sh\n"}
    )
    with pytest.raises(ValidationFailed, match="entry_point: 'no.sh' does not exist"):
        registry.register(path)
    assert packs_in(registry) == {} and executions_in(registry) == []


# 2. testing section -------------------------------------------------------------------------


def test_pack_without_testing_needs_skip_tests(registry: Registry, make_pack: PackFactory) -> None:
    path = make_pack(test_script=None)
    with pytest.raises(
        ValidationFailed, match="has no testing section; add tests or use --skip-tests"
    ):
        registry.register(path)
    done = registry.register(path, skip_tests=True)
    assert done.tests_skipped and done.outcome is Outcome.REGISTERED
    assert packs_in(registry) == {"hello": "1.0.0"} and executions_in(registry) == []


def test_testing_disabled_needs_skip_tests(registry: Registry, make_pack: PackFactory) -> None:
    path = make_pack(testing={"enabled": False})
    with pytest.raises(ValidationFailed, match=r"testing.enabled: false"):
        registry.register(path)
    assert packs_in(registry) == {}


# 3. conflicts and forced re-registration ----------------------------------------------------


def test_second_registration_conflicts_unless_forced(
    registry: Registry, make_pack: PackFactory
) -> None:
    path = make_pack(files=ACTION)
    assert registry.register(path).trigger is Trigger.REGISTER
    with pytest.raises(ConflictError, match="already registered .*--upgrade.*--force"):
        registry.register(path)
    done = registry.register(path, force=True)
    assert done.trigger is Trigger.REINSTALL
    assert components_in(registry) == ["hello.greet"]


def test_forced_upgrade_replaces_version_and_components(
    registry: Registry, make_pack: PackFactory
) -> None:
    registry.register(make_pack(files=ACTION))
    newer = make_pack(
        version="1.1.0",
        files={
            "triggers/tick.yaml": "ref: hello.tick\n",
        },
    )
    (newer / "actions/greet.yaml").unlink()
    done = registry.register(newer, force=True)
    assert done.trigger is Trigger.UPGRADE
    assert packs_in(registry) == {"hello": "1.1.0"}
    assert components_in(registry) == ["hello.tick"]
    assert served(registry) == {"hello": "1.1.0"}
    assert [e[1] for e in executions_in(registry)] == ["register", "upgrade"]


# 4. dependencies ----------------------------------------------------------------------------


def test_missing_dependency_is_named(registry: Registry, make_pack: PackFactory) -> None:
    with pytest.raises(DependencyError, match=r"depends on core >=1\.0, which is not registered"):
        registry.register(make_pack("app", dependencies=["core>=1.0"]))
    assert packs_in(registry) == {}


def test_unsatisfied_dependency_version(registry: Registry, make_pack: PackFactory) -> None:
    registry.register(make_pack("core", version="0.9.0"))
    with pytest.raises(
        DependencyError, match=r"depends on core \^1\.0, but core 0\.9\.0 is registered"
    ):
        registry.register(make_pack("app", dependencies=["core@^1.0"]))


def test_examples_register_in_dependency_order(registry: Registry) -> None:
    with pytest.raises(DependencyError, match="hello"):
        registry.register(EXAMPLES / "welcome")
    registry.register(EXAMPLES / "hello")
    done = registry.register(EXAMPLES / "welcome")
    assert done.test_result is not None and done.test_result.passed == 2
    assert served(registry) == {"hello": "1.0.0", "welcome": "1.2.0"}


def test_rule_using_undefined_component_of_dependency(
    registry: Registry, make_pack: PackFactory
) -> None:
    registry.register(make_pack("core"))
    path = make_pack(
        "app",
        dependencies=["core"],
        files={"rules/r.yaml": "ref: app.r\ntrigger_ref: core.tick\naction_ref: core.echo\n"},
    )
    with pytest.raises(
        DependencyError, match="use action 'core.echo', which pack 'core' does not define"
    ):
        registry.register(path)


# 5-7. tests, store, rollback ----------------------------------------------------------------


def test_passing_tests_register_and_are_stored(registry: Registry, make_pack: PackFactory) -> None:
    done = registry.register(make_pack(files=ACTION))
    assert done.test_result is not None
    assert (
        done.test_result.status.value,
        done.test_result.passed,
        done.test_result.total_tests,
    ) == ("passed", 2, 2)
    assert executions_in(registry) == [("hello", "register", "passed", "registered")]
    assert served(registry) == {"hello": "1.0.0"}
    with registry.db.read() as session:
        [row] = session.exec(select(TestRun)).all()
        assert row.result["test_suites"][0]["name"] == "shell" and row.pass_rate == 1.0


def test_failing_tests_roll_back_everything_but_the_audit(
    registry: Registry, make_pack: PackFactory
) -> None:
    path = make_pack(test_script=FAILING_TEST, files=ACTION)
    with capture_logs() as logs, pytest.raises(TestsRolledBack, match="use --force") as caught:
        registry.register(path)
    assert caught.value.result.status.value == "failed" and caught.value.exit_code == 4
    assert packs_in(registry) == {} and components_in(registry) == []
    assert served(registry) == {}
    assert list((registry.store.versions).iterdir()) == []  # nothing left behind on disk
    assert executions_in(registry) == [("hello", "register", "failed", "rolled_back")]
    assert any(e["event"] == "pack.rolled_back" for e in logs)


def test_forced_failing_tests_register_with_warning(
    registry: Registry, make_pack: PackFactory
) -> None:
    path = make_pack(test_script=FAILING_TEST)
    with capture_logs() as logs:
        done = registry.register(path, force=True)
    assert done.outcome is Outcome.FORCED and packs_in(registry) == {"hello": "1.0.0"}
    assert executions_in(registry) == [("hello", "register", "failed", "forced")]
    assert any(e["event"] == "pack.forced" and e["log_level"] == "warning" for e in logs)


def test_partial_result_is_partial_and_blocked_at_default_gate(
    registry: Registry, make_pack: PackFactory
) -> None:
    with pytest.raises(TestsRolledBack) as caught:
        registry.register(make_pack(test_script=PARTIAL_TEST))
    result = caught.value.result
    assert (result.status.value, result.pass_rate) == ("partial", 0.75)
    # the pack's own threshold makes the same result acceptable
    path = make_pack(
        "lenient",
        test_script=PARTIAL_TEST,
        testing={
            "runners": {"shell": {"type": "script", "entry_point": "tests/run_tests.sh"}},
            "min_pass_rate": 0.75,
        },
    )
    assert registry.register(path).outcome is Outcome.REGISTERED


def test_on_failure_warn_registers(registry: Registry, make_pack: PackFactory) -> None:
    path = make_pack(
        test_script=FAILING_TEST,
        testing={
            "runners": {"shell": {"type": "script", "entry_point": "tests/run_tests.sh"}},
            "on_failure": "warn",
        },
    )
    assert registry.register(path).outcome is Outcome.WARNED
    assert executions_in(registry) == [("hello", "register", "failed", "warned")]


def test_timing_out_test_fails_and_rolls_back(registry: Registry, make_pack: PackFactory) -> None:
    path = make_pack(
        test_script="#!/bin/sh\nsleep 30\n",
        testing={
            "runners": {
                "shell": {"type": "script", "entry_point": "tests/run_tests.sh", "timeout": 1}
            }
        },
    )
    with pytest.raises(TestsRolledBack) as caught:
        registry.register(path)
    [suite] = caught.value.result.test_suites
    assert suite.failed == 1 and "timed out" in (suite.test_cases[0].error_message or "")
    assert packs_in(registry) == {}


def test_failed_upgrade_keeps_the_working_version(
    registry: Registry, make_pack: PackFactory
) -> None:
    registry.register(make_pack(files=ACTION))
    broken = make_pack(version="2.0.0", test_script=FAILING_TEST)
    with pytest.raises(ConflictError):
        registry.register(broken)
    # replace=True upgrades only when the tests pass the gate (unlike force)
    with pytest.raises(TestsRolledBack):
        registry.register(broken, replace=True)
    assert packs_in(registry) == {"hello": "1.0.0"}
    assert served(registry) == {"hello": "1.0.0"}
    assert components_in(registry) == ["hello.greet"]
    assert executions_in(registry)[-1] == ("hello", "upgrade", "failed", "rolled_back")
    good = make_pack(version="2.0.1")
    for leftover in ("actions/greet.yaml", "actions/greet.sh"):
        (good / leftover).unlink()
    assert registry.register(good, replace=True).trigger is Trigger.UPGRADE
    assert served(registry) == {"hello": "2.0.1"} and components_in(registry) == []


def test_registration_failing_midway_leaves_nothing(
    registry: Registry, make_pack: PackFactory
) -> None:
    """A real database error while components are inserted: all or nothing, audit kept."""
    with registry.db.engine.begin() as conn:
        if registry.db.is_sqlite:
            conn.execute(
                text(
                    "CREATE TRIGGER boom BEFORE INSERT ON \"trigger\" WHEN NEW.ref = 'hello.boom' "
                    "BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
                )
            )
        else:
            conn.execute(
                text(
                    "CREATE FUNCTION boom() RETURNS trigger AS $$ BEGIN "
                    "RAISE EXCEPTION 'injected failure'; END $$ LANGUAGE plpgsql"
                )
            )
            conn.execute(
                text(
                    "CREATE TRIGGER boom BEFORE INSERT ON attune.trigger FOR EACH ROW "
                    "WHEN (NEW.ref = 'hello.boom') EXECUTE FUNCTION boom()"
                )
            )
    files = {
        **ACTION,
        "triggers/boom.yaml": "ref: hello.boom\n",
        "triggers/zzz.yaml": "ref: hello.zzz\n",
    }
    with pytest.raises(Exception, match="injected failure"):
        registry.register(make_pack(files=files))
    assert packs_in(registry) == {} and components_in(registry) == []
    assert served(registry) == {} and list(registry.store.versions.iterdir()) == []
    assert executions_in(registry) == [("hello", "register", "passed", "aborted")]
    # the events of the failed transaction went with it; the aborted run says what happened
    assert [e.name for e in events_in(registry)] == ["pack.test.finished", "pack.register.failed"]
    failed = events_in(registry)[1].data
    assert "injected failure" in failed["error"] and failed["test_run_id"] is not None


# unregister ---------------------------------------------------------------------------------


def test_unregister_refuses_while_depended_on(registry: Registry, make_pack: PackFactory) -> None:
    core_action = {
        "actions/greet.yaml": "ref: core.greet\nrunner_type: shell\nentry_point: greet.sh\n",
        "actions/greet.sh": "echo hi\n",
    }
    registry.register(make_pack("core", files=core_action))
    registry.register(make_pack("app", dependencies=["core"]))
    with pytest.raises(ConflictError, match="needed by app"):
        registry.unregister("core")
    registry.unregister("core", force=True)
    assert packs_in(registry) == {"app": "1.0.0"} and components_in(registry) == []
    assert "core" not in served(registry)
    # the audit trail survives removal
    assert [e[0] for e in executions_in(registry)] == ["core", "app"]


def test_a_new_pack_row_inherits_nothing_from_a_removed_one(
    registry: Registry, make_pack: PackFactory
) -> None:
    """A new pack skips the search for vanished components (its id is new, and every
    component table's `pack` cascades); on SQLite the new row even takes the id of the
    one just removed, whose components went with it."""
    gone = {
        "actions/greet.yaml": "ref: old.greet\nrunner_type: shell\nentry_point: greet.sh\n",
        "actions/greet.sh": "echo hi\n",
        "triggers/t.yaml": "ref: old.t\n",
    }
    old = registry.register(make_pack("old", files=gone))
    assert components_in(registry) == ["old.greet", "old.t"]
    registry.unregister("old")
    fresh = {
        "actions/wave.yaml": "ref: new.wave\nrunner_type: shell\nentry_point: wave.sh\n",
        "actions/wave.sh": "echo wave\n",
    }
    new = registry.register(make_pack("new", files=fresh))
    if registry.db.is_sqlite:
        assert new.pack.id == old.pack.id
    assert components_in(registry) == ["new.wave"]
    with registry.db.read() as session:
        assert [c.ref for c in registered_packs.components_of(session, new.pack.id)] == ["new.wave"]


def test_unregister_unknown_pack(registry: Registry) -> None:
    with pytest.raises(ValidationFailed, match="'ghost' is not registered"):
        registry.unregister("ghost")


def test_repair_after_crash_between_commit_and_swap(
    registry: Registry, make_pack: PackFactory
) -> None:
    registry.register(make_pack(files=ACTION))
    link = registry.store.link("hello")
    target = link.readlink()
    link.unlink()  # the swap never happened
    assert registry.repair_store(min_age=0) == ["relinked:hello"]
    assert link.readlink() == target


def test_latest_statuses(registry: Registry, make_pack: PackFactory) -> None:
    registry.register(make_pack(files=ACTION))
    registry.register(make_pack(test_script=FAILING_TEST), force=True)
    with registry.db.read() as session:
        assert run_records.latest_statuses(session) == {"hello": "failed"}


def test_revisions_record_each_activation(registry: Registry, make_pack: PackFactory) -> None:
    registry.register(make_pack())
    registry.register(make_pack(version="1.1.0"), replace=True)
    registry.unregister("hello")
    with registry.db.read() as session:
        rows = revisions.revisions(session, "hello")
    assert [(r.version, r.reason, r.deactivation_reason) for r in rows] == [
        ("1.1.0", "upgrade", "unregistered"),
        ("1.0.0", "register", "replaced"),
    ]
    assert all(r.deactivated_at is not None for r in rows)


def test_old_versions_are_kept_up_to_the_limit(
    database: Database, tmp_path: Path, make_pack: PackFactory
) -> None:
    registry = Registry(
        database, PackStore(tmp_path / "packs"), TestExecutor(ExecutorSettings()), keep_versions=2
    )
    for minor in range(4):
        registry.register(make_pack(version=f"1.{minor}.0"), replace=True)
    kept = sorted(p.name.split("-")[1] for p in registry.store.versions.iterdir())
    assert kept == ["1.2.0", "1.3.0"]
    assert served(registry) == {"hello": "1.3.0"}


# events: written in the transaction of the change they tell of ---------------------------


def test_a_registration_writes_its_events_with_it(
    registry: Registry, make_pack: PackFactory
) -> None:
    registry.register(make_pack(files=ACTION))
    with registry.db.read() as session:
        [run] = session.exec(select(TestRun)).all()
        pack_id = registered_packs.get_pack(session, "hello").id  # type: ignore[union-attr]
    finished, registered = events_in(registry)
    assert (finished.name, registered.name) == ("pack.test.finished", "pack.registered")
    assert finished.data["tests"]["test_run_id"] == run.id
    assert finished.data["tests"]["status"] == "passed" and finished.data["tests"]["total"] == 2
    assert registered.data == {
        "pack": "hello",
        "version": "1.0.0",
        "digest": run.pack_digest,
        "source": None,
        "revision": None,
        "pack_id": pack_id,
        "previous_version": None,
        "trigger": "register",
        "outcome": "registered",
        "test_status": "passed",
        "test_run_id": run.id,
        "runtime_names": [],
    }
    assert (registered.subject, registered.ref, registered.severity) == (
        "pack:hello",
        "hello",
        "info",
    )


def test_a_rollback_tells_which_cases_failed_and_registers_nothing(
    registry: Registry, make_pack: PackFactory
) -> None:
    with pytest.raises(TestsRolledBack):
        registry.register(make_pack(test_script=FAILING_TEST))
    assert [e.name for e in events_in(registry)] == [
        "pack.test.finished",
        "pack.test.failed",
        "pack.rolled_back",
    ]
    rolled_back = events_in(registry)[-1]
    assert rolled_back.severity == "warning"
    assert rolled_back.data["outcome"] == "rolled_back"
    assert rolled_back.data["reason"].startswith("pass rate 0.75 is below")
    tests = rolled_back.data["tests"]
    assert (tests["passed"], tests["failed"], tests["gate_passed"]) == (3, 1, False)
    assert tests["failed_cases"] == [  # the `simple` format: the script is the case
        {
            "suite": "shell",
            "case": "shell",
            "status": "failed",
            "message": "1 failed, 3 passed, 0 skipped",
        }
    ]


def test_an_upgrade_and_an_unregistration_are_told(
    registry: Registry, make_pack: PackFactory
) -> None:
    registry.register(make_pack(), skip_tests=True)
    registry.register(make_pack(version="1.1.0"), replace=True, skip_tests=True)
    with registry.db.read() as session:
        pack_id = registered_packs.get_pack(session, "hello").id  # type: ignore[union-attr]
    registry.unregister("hello", pruned="no source offers it")
    names = [(e.name, e.data.get("version")) for e in events_in(registry)]
    assert names == [
        ("pack.registered", "1.0.0"),
        ("pack.upgraded", "1.1.0"),
        ("pack.unregistered", "1.1.0"),
        ("pack.removed", "1.1.0"),
    ]
    upgraded, unregistered, removed = events_in(registry)[1:]
    assert (
        upgraded.data["previous_version"] == "1.0.0" and upgraded.data["test_status"] == "skipped"
    )
    assert unregistered.data["pack_id"] == pack_id and unregistered.data["files_removed"]
    assert removed.data["reason"] == "no source offers it"


def test_events_get_deliveries_only_for_sinks_whose_filter_takes_them(
    database: Database, tmp_path: Path, make_pack: PackFactory
) -> None:
    from attuned.notify.events import routes
    from attuned.settings.notify import ExecSinkConfig

    sinks = [
        ExecSinkConfig(name="all", command=["true"]),
        ExecSinkConfig(name="warnings", command=["true"], severities=["warning", "error"]),
        ExecSinkConfig(name="others", command=["true"], packs=["other*"]),
    ]
    registry = Registry(
        database,
        PackStore(tmp_path / "packs"),
        TestExecutor(ExecutorSettings(kill_grace=0.5)),
        outbox=Outbox(routes(sinks), node="n1"),
    )
    with pytest.raises(TestsRolledBack):
        registry.register(make_pack(test_script=FAILING_TEST))
    with registry.db.read() as session:
        rows = outbox_admin.listing(session, limit=100)
    by_sink: dict[str | None, list[str]] = {}
    for row in reversed(rows):
        by_sink.setdefault(row.sink, []).append(row.event.name)
    assert by_sink == {
        "all": ["pack.test.finished", "pack.test.failed", "pack.rolled_back"],
        "warnings": ["pack.test.failed", "pack.rolled_back"],
    }
