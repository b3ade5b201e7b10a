"""What attuned registers, read back with the SQL Attune itself runs (its repositories'
column lists, its views and function), on SQLite and on a database built by Attune's own
migrations. If these pass, an Attune API server, worker or sensor sees the packs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from attuned.errors import ConflictError, DependencyError
from attuned.registry import Registry, TestsRolledBack
from attuned.settings.testing import ExecutorSettings
from attuned.store import registered_packs, run_records
from attuned.store.database import Database
from attuned.store.packstore import PackStore
from attuned.store.provenance import Provenance
from attuned.testing.executor import TestExecutor
from tests.attune_packs import APP, BASE, write_pack

# Attune's own column lists (crates/common/src/repositories/*.rs at commit 9206d41)
PACK_COLUMNS = (
    "id, ref, label, description, version, conf_schema, config, meta, tags, runtime_deps, "
    "dependencies, is_standard, installers, source_type, source_url, source_ref, checksum, "
    "checksum_verified, installed_at, installed_by, installation_method, storage_path, "
    "created, updated"
)
ACTION_COLUMNS = (
    "id, ref, pack, pack_ref, label, description, entrypoint, runtime, "
    "runtime_version_constraint, required_worker_runtimes, worker_selector, "
    "worker_tolerations, worker_affinity, param_schema, out_schema, workflow_def, is_adhoc, "
    "accesses_mcp, default_execution_permission_set_refs, log_retention_policy, "
    "log_retention_limit, artifact_retention_policy, artifact_retention_limit, "
    "parameter_delivery, parameter_format, output_format, created, updated"
)
SENSOR_COLUMNS = (
    "id, ref, pack, pack_ref, label, description, entrypoint, runtime, runtime_ref, "
    "runtime_version_constraint, enabled, param_schema, config, worker_selector, "
    "worker_tolerations, worker_affinity, log_retention_policy, log_retention_limit, "
    "artifact_retention_policy, artifact_retention_limit, created, updated"
)
RULE_COLUMNS = (
    "id, ref, pack, pack_ref, label, description, action, action_ref, trigger, trigger_ref, "
    "conditions, action_params, trigger_params, permission_set_refs, enabled, is_adhoc, "
    "owner_identity, created, updated"
)
RUNTIME_COLUMNS = (
    "id, ref, pack, pack_ref, description, name, aliases, distributions, installation, "
    "installers, execution_config, auto_detected, detection_config, created, updated"
)


@pytest.fixture
def registry(database: Database, tmp_path: Path) -> Iterator[Registry]:
    settings = ExecutorSettings(kill_grace=0.5, sandbox="none")
    yield Registry(database, PackStore(tmp_path / "packs"), TestExecutor(settings))


class Attune:
    """Runs Attune's queries on the database (schema `attune`, or SQLite's one namespace)."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def query(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        prefix = "" if self.database.is_sqlite else "SET LOCAL search_path TO attune, public; "
        with self.database.engine.begin() as connection:
            if prefix:
                connection.execute(text(prefix))
            rows = connection.execute(text(sql), params)
            return [{k: self._decoded(v) for k, v in row._mapping.items()} for row in rows]

    def _decoded(self, value: Any) -> Any:
        """SQLite hands JSON (and the JSON that stands for TEXT[]) back as its text."""
        if self.database.is_sqlite and isinstance(value, str) and value[:1] in ("{", "["):
            return json.loads(value)
        return value

    def one(self, sql: str, **params: Any) -> dict[str, Any]:
        [row] = self.query(sql, **params)
        return row

    def ids(self, table: str, pack: int) -> dict[str, int]:
        rows = self.query(f"SELECT ref, id FROM {table} WHERE pack = :p", p=pack)
        return {r["ref"]: r["id"] for r in rows}


def app_alone() -> dict[str, str]:
    """APP without its dependency on base (and without the rule that uses base's trigger)."""
    files = {**APP, "pack.yaml": APP["pack.yaml"].replace('dependencies: ["base>=1.0.0,<3"]', "")}
    del files["rules/greet_on_tick.yaml"]
    return files


def register(registry: Registry, files: dict[str, str], root: Path, **kwargs: Any) -> Any:
    options = {k: kwargs.pop(k) for k in ("force", "replace") if k in kwargs}
    return registry.register(
        write_pack(files, root, **kwargs),
        provenance=Provenance(origin=str(root), source_type="local_directory"),
        **options,
    )


def test_a_platform_pack_reads_back_as_attunes_loader_would_write_it(
    registry: Registry, database: Database, tmp_path: Path
) -> None:
    done = register(registry, BASE, tmp_path / "base")
    attune = Attune(database)
    pack = attune.one(f"SELECT {PACK_COLUMNS} FROM pack WHERE ref = :r", r="base")
    assert (pack["label"], pack["version"], pack["is_standard"]) == ("Base Platform", "1.0.0", True)
    assert pack["conf_schema"] == {"max_timeout": {"type": "integer", "default": 300, "minimum": 1}}
    assert pack["config"] == {"max_timeout": 300} and pack["meta"] == {"category": "system"}
    assert list(pack["tags"]) == ["base", "system"]
    assert list(pack["runtime_deps"]) == ["shell", "native"]
    assert pack["checksum"] == done.pack.digest and pack["checksum_verified"]
    assert pack["storage_path"] == str(registry.store.link("base").absolute())
    assert (pack["source_type"], pack["source_url"]) == ("local_directory", str(tmp_path / "base"))
    assert pack["installation_method"] == "attuned"

    runtimes = {
        r["ref"]: r
        for r in attune.query(
            f"SELECT {RUNTIME_COLUMNS} FROM runtime WHERE pack = :p", p=pack["id"]
        )
    }
    assert list(runtimes["base.shell"]["aliases"]) == ["shell", "sh", "bash"]
    assert runtimes["base.native"]["installation"] == {"build_required": False}
    versions = attune.query(
        "SELECT version, version_major, version_minor, is_default, available FROM "
        "runtime_version ORDER BY version"
    )
    assert [tuple(v.values()) for v in versions] == [
        ("1.2.3", 1, 2, True, False),  # a new version waits for a worker to verify it
        ("2", 2, None, False, False),
    ]
    actions = {
        a["ref"]: a
        for a in attune.query(
            f"SELECT {ACTION_COLUMNS} FROM action WHERE pack = :p ORDER BY ref ASC",
            p=pack["id"],
        )
    }
    assert sorted(actions) == ["base.ask", "base.deploy", "base.echo", "base.nightly"]
    echo = actions["base.echo"]
    assert echo["runtime"] == runtimes["base.shell"]["id"] and echo["label"] == "Echo"
    assert (echo["parameter_delivery"], echo["parameter_format"], echo["output_format"]) == (
        "file",
        "dotenv",
        "json",
    )
    assert (echo["log_retention_policy"], echo["log_retention_limit"]) == ("days", 7)
    assert list(echo["default_execution_permission_set_refs"]) == ["base.viewer"]
    assert actions["base.ask"]["runtime"] == runtimes["base.native"]["id"]
    assert actions["base.ask"]["entrypoint"] == "attune-ask"  # a platform binary
    assert actions["base.ask"]["label"] == "Ask"  # generated as Attune does
    workflows = {
        w["ref"]: w
        for w in attune.query("SELECT id, ref, label, version, definition FROM workflow_definition")
    }
    deploy = actions["base.deploy"]
    assert deploy["runtime"] is None and deploy["workflow_def"] == workflows["base.deploy"]["id"]
    assert deploy["entrypoint"] == "workflows/deploy.workflow.yaml"
    assert workflows["base.deploy"]["definition"]["tasks"][0]["next"] == [
        {"when": "{{ succeeded() }}", "do": ["second"]}
    ]
    companion = actions["base.nightly"]  # a standalone workflow's companion action
    assert companion["workflow_def"] == workflows["base.nightly"]["id"]
    assert companion["entrypoint"] == "workflows/nightly.workflow.yaml"
    [sensor] = attune.query(f"SELECT {SENSOR_COLUMNS} FROM sensor WHERE pack = :p", p=pack["id"])
    assert (sensor["runtime"], sensor["runtime_ref"]) == (
        runtimes["base.native"]["id"],
        "base.native",
    )
    triggers = attune.query("SELECT ref, label, sensor, sensor_ref FROM trigger ORDER BY ref")
    assert [(t["ref"], t["label"], t["sensor_ref"]) for t in triggers] == [
        ("base.cron_timer", "Cron Timer", "base.timer"),
        ("base.tick", "Tick", "base.timer"),
    ]
    assert {t["sensor"] for t in triggers} == {sensor["id"]}
    [rule] = attune.query(
        "SELECT r.ref, a.ref AS action, t.ref AS trigger, r.action_params FROM rule r "
        "JOIN action a ON a.id = r.action JOIN trigger t ON t.id = r.trigger"
    )
    assert rule == {
        "ref": "base.every_tick",
        "action": "base.echo",
        "trigger": "base.tick",
        "action_params": {"message": "tick"},
    }
    [permissions] = attune.query("SELECT ref, label, grants FROM permission_set")
    assert permissions["grants"] == [{"resource": "packs", "actions": ["read"]}]


def test_test_results_reach_attunes_views(
    registry: Registry, database: Database, tmp_path: Path
) -> None:
    register(registry, BASE, tmp_path / "v1")
    with pytest.raises(TestsRolledBack):  # a failing upgrade: the old version keeps serving
        register(registry, BASE, tmp_path / "v2", version="2.0.0", passing=False, replace=True)
    attune = Attune(database)
    assert attune.one("SELECT version FROM pack WHERE ref = 'base'")["version"] == "1.0.0"
    latest = attune.one(
        "SELECT pack_ref, pack_version, trigger_reason, total_tests, passed, failed, pass_rate "
        "FROM pack_latest_test"
    )
    assert latest == {
        "pack_ref": "base",
        "pack_version": "2.0.0",  # the latest run, as Attune records it: the candidate's
        "trigger_reason": "update",
        "total_tests": 1,
        "passed": 0,
        "failed": 1,
        "pass_rate": 0,
    }
    summary = attune.query(
        "SELECT pack_version, trigger_reason, rn FROM pack_test_summary ORDER BY rn"
    )
    assert [tuple(s.values()) for s in summary] == [("2.0.0", "update", 1), ("1.0.0", "install", 2)]
    result = attune.one("SELECT result FROM pack_test_execution WHERE pack_version = '1.0.0'")
    assert set(result["result"]) == {
        "packRef",
        "packVersion",
        "executionTime",
        "status",
        "totalTests",
        "passed",
        "failed",
        "skipped",
        "passRate",
        "durationMs",
        "testSuites",
    }
    assert result["result"]["testSuites"][0]["runnerType"] == "script"
    if not database.is_sqlite:  # Attune's function exists where Attune's migrations ran
        pack_id = attune.one("SELECT id FROM pack WHERE ref = 'base'")["id"]
        stats = attune.one("SELECT * FROM get_pack_test_stats(:p)", p=pack_id)
        assert (stats["total_executions"], stats["successful_executions"]) == (2, 1)
        assert (stats["failed_executions"], stats["last_test_passed"]) == (1, False)
    with database.read() as session:  # and attuned's own history says what became of each
        assert [r.outcome for r in run_records.executions(session, "base")] == [
            "rolled_back",
            "registered",
        ]


def test_a_rolled_back_first_registration_is_kept_by_attuned_only(
    registry: Registry, database: Database, tmp_path: Path
) -> None:
    with pytest.raises(TestsRolledBack):
        register(registry, BASE, tmp_path / "base", passing=False)
    attune = Attune(database)
    assert attune.query("SELECT id FROM pack") == []
    assert attune.query("SELECT id FROM pack_test_execution") == []
    with database.read() as session:
        [run] = run_records.executions(session, "base")
    assert (run.outcome, run.attune_execution_id) == ("rolled_back", None)


def test_an_upgrade_keeps_ids_and_deletes_what_vanished(
    registry: Registry, database: Database, tmp_path: Path
) -> None:
    register(registry, BASE, tmp_path / "base")
    register(registry, APP, tmp_path / "app1")
    attune = Attune(database)
    app_id = attune.one("SELECT id FROM pack WHERE ref = 'app'")["id"]
    before = attune.ids("action", app_id)
    rule_before = attune.ids("rule", app_id)
    changed = {
        "actions/greet.yaml": "ref: app.greet\nlabel: Greet!\nrunner_type: SHELL\nentry_point: greet.sh\n"
    }
    register(
        registry,
        APP,
        tmp_path / "app2",
        version="1.1.0",
        drop=("actions/wave.yaml",),
        changes=changed,
        replace=True,
    )
    assert attune.one("SELECT id FROM pack WHERE ref = 'app'")["id"] == app_id
    after = attune.ids("action", app_id)
    assert after == {"app.greet": before["app.greet"]}  # same row, updated in place
    assert attune.ids("rule", app_id) == rule_before
    assert attune.one("SELECT label FROM action WHERE ref = 'app.greet'")["label"] == "Greet!"
    [rule] = attune.query("SELECT action, trigger FROM rule WHERE ref = 'app.greet_on_tick'")
    assert rule["action"] == before["app.greet"]


def test_removing_what_another_pack_uses_is_refused(
    registry: Registry, database: Database, tmp_path: Path
) -> None:
    register(registry, BASE, tmp_path / "base")
    register(registry, APP, tmp_path / "app")
    with pytest.raises(ConflictError, match=r"rules app\.greet_on_tick use trigger base\.tick"):
        register(
            registry,
            BASE,
            tmp_path / "b2",
            version="1.1.0",
            drop=("triggers/tick.yaml",),
            changes={
                "sensors/timer.yaml": "ref: base.timer\nentry_point: t\ntrigger_types: [cron_timer]\n",
                "rules/every_tick.yaml": "ref: every_tick\ntrigger_ref: cron_timer\naction_ref: base.echo\n",
            },
            replace=True,
        )
    with pytest.raises(
        ConflictError, match=r"actions app\.greet, app\.wave run on runtime base\.shell$"
    ):  # no --force advice: it would not help
        register(
            registry,
            BASE,
            tmp_path / "b3",
            version="1.2.0",
            drop=("runtimes/shell.yaml",),
            replace=True,
        )
    attune = Attune(database)
    assert attune.one("SELECT version FROM pack WHERE ref = 'base'")["version"] == "1.0.0"
    assert len(attune.query("SELECT id FROM trigger WHERE ref = 'base.tick'")) == 1
    with database.read() as session:  # refused before the tests ran: no run to show for it
        assert [r.pack_version for r in run_records.executions(session, "base")] == ["1.0.0"]


def test_a_trigger_the_sensor_no_longer_fires_is_unlinked(
    registry: Registry, database: Database, tmp_path: Path
) -> None:
    register(registry, BASE, tmp_path / "v1")
    narrower = {"sensors/timer.yaml": "ref: base.timer\nentry_point: t\ntrigger_types: [tick]\n"}
    register(registry, BASE, tmp_path / "v2", version="1.1.0", changes=narrower, replace=True)
    attune = Attune(database)
    rows = attune.query("SELECT ref, sensor_ref FROM trigger ORDER BY ref")
    assert rows == [
        {"ref": "base.cron_timer", "sensor_ref": None},
        {"ref": "base.tick", "sensor_ref": "base.timer"},
    ]
    register(
        registry, BASE, tmp_path / "v3", version="1.2.0", drop=("sensors/timer.yaml",), replace=True
    )
    rows = attune.query("SELECT ref, sensor, sensor_ref FROM trigger ORDER BY ref")
    assert {(r["sensor"], r["sensor_ref"]) for r in rows} == {(None, None)}


def test_unregister_cascades_and_waits_for_the_packs_on_its_runtimes(
    registry: Registry, database: Database, tmp_path: Path
) -> None:
    register(registry, BASE, tmp_path / "base")
    register(registry, APP, tmp_path / "app")
    with pytest.raises(ConflictError, match="run on runtime base.shell"):
        registry.unregister("base", force=True)
    registry.unregister("app")
    registry.unregister("base")
    attune = Attune(database)
    for table in (
        "pack",
        "action",
        "rule",
        "trigger",
        "sensor",
        "runtime",
        "runtime_version",
        "workflow_definition",
        "permission_set",
        "pack_test_execution",
    ):
        assert attune.query(f"SELECT id FROM {table}") == [], table
    with database.read() as session:  # attuned's audit trail stays
        assert len(run_records.executions(session, "base")) == 1


def test_actions_get_their_runtime_when_the_pack_providing_it_arrives(
    registry: Registry, database: Database, tmp_path: Path
) -> None:
    standalone = app_alone()
    done = register(registry, standalone, tmp_path / "app")
    assert done.pack.managed
    attune = Attune(database)
    assert {a["runtime"] for a in attune.query("SELECT runtime FROM action")} == {None}
    register(registry, BASE, tmp_path / "base")
    shell = attune.one("SELECT id FROM runtime WHERE ref = 'base.shell'")["id"]
    runtimes = attune.query("SELECT ref, runtime FROM action WHERE pack_ref = 'app' ORDER BY ref")
    assert runtimes == [
        {"ref": "app.greet", "runtime": shell},
        {"ref": "app.wave", "runtime": shell},
    ]


def test_a_sensor_without_its_runtime_registers_nothing(
    registry: Registry, database: Database, tmp_path: Path
) -> None:
    files = {
        "pack.yaml": app_alone()["pack.yaml"],
        "triggers/t.yaml": "ref: app.t\n",
        "sensors/s.yaml": "ref: app.s\nentry_point: watcher\ntrigger_types: [t]\n",
    }
    with pytest.raises(DependencyError, match="runner_type 'native' names no registered runtime"):
        register(registry, files, tmp_path / "app")
    assert Attune(database).query("SELECT id FROM pack") == []


def test_config_an_operator_changed_survives_upgrades(
    registry: Registry, database: Database, tmp_path: Path
) -> None:
    v1 = {
        **BASE,
        "pack.yaml": BASE["pack.yaml"].replace(
            "max_timeout: 300\n", "max_timeout: 300\n  level: info\n"
        ),
    }
    register(registry, v1, tmp_path / "v1")
    with database.engine.begin() as connection:  # what Attune's API does on PUT /packs/base
        table = "pack" if database.is_sqlite else "attune.pack"
        connection.execute(
            text(f"UPDATE {table} SET config = :c WHERE ref = 'base'"),
            {"c": '{"max_timeout": 900, "level": "info"}'},
        )
    v2 = {
        **BASE,
        "pack.yaml": BASE["pack.yaml"].replace(
            "max_timeout: 300\n", "max_timeout: 300\n  level: debug\n  color: blue\n"
        ),
    }
    register(registry, v2, tmp_path / "v2", version="1.1.0", replace=True)
    register(registry, v2, tmp_path / "v3", version="1.2.0", replace=True)
    config = Attune(database).one("SELECT config FROM pack WHERE ref = 'base'")["config"]
    # the operator's value stays (twice); an untouched one takes the new default; new keys come
    assert config == {"max_timeout": 900, "level": "debug", "color": "blue"}


def test_a_pack_attune_registered_itself_counts_and_is_left_alone(
    registry: Registry, database: Database, tmp_path: Path
) -> None:
    with database.engine.begin() as connection:  # as Attune's own register route writes it
        table = "pack" if database.is_sqlite else "attune.pack"
        connection.execute(
            text(f"INSERT INTO {table} (ref, label, version) VALUES ('base', 'Base', '1.5.0')")
        )
    standalone = {**APP}
    del standalone["rules/greet_on_tick.yaml"]
    register(registry, standalone, tmp_path / "app")  # base>=1.0.0,<3 is satisfied by it
    with database.read() as session:
        packs = {p.ref: p for p in registered_packs.list_packs(session)}
        heads = {h.ref: h for h in registered_packs.managed_heads(session)}
    assert not packs["base"].managed and packs["base"].source is None
    assert packs["app"].managed and set(heads) == {"app"}
    with pytest.raises(ConflictError, match="already registered"):
        register(registry, BASE, tmp_path / "base")
    # Attune keeps its packs' files in the same folder: unregistering leaves them to Attune
    attunes_copy = registry.store.link("base")
    attunes_copy.mkdir(parents=True)
    (attunes_copy / "pack.yaml").write_text("ref: base\n")
    registry.unregister("base", force=True)
    assert (attunes_copy / "pack.yaml").is_file()
    assert Attune(database).query("SELECT ref FROM pack") == [{"ref": "app"}]


def test_actions_are_linked_to_a_runtime_attune_registered_itself(
    registry: Registry, database: Database, tmp_path: Path
) -> None:
    standalone = app_alone()
    done = register(registry, standalone, tmp_path / "app")
    assert any("names no registered runtime" in str(w) for w in done.warnings)
    assert registry.link_pending_runtimes() == []  # nothing to link to yet, nothing written
    with database.engine.begin() as connection:  # Attune's own loader adds core.shell
        prefix = "" if database.is_sqlite else "attune."
        connection.execute(
            text(f"INSERT INTO {prefix}pack (ref, label, version) VALUES ('core', 'Core', '1.0.0')")
        )
        connection.execute(
            text(
                f"INSERT INTO {prefix}runtime (ref, pack, pack_ref, name, distributions) "
                f"SELECT 'core.shell', id, 'core', 'Shell', '{{}}' FROM {prefix}pack "
                "WHERE ref = 'core'"
            )
        )
    assert sorted(registry.link_pending_runtimes()) == ["app.greet", "app.wave"]
    attune = Attune(database)
    shell = attune.one("SELECT id FROM runtime WHERE ref = 'core.shell'")["id"]
    assert {r["runtime"] for r in attune.query("SELECT runtime FROM action")} == {shell}
    assert registry.link_pending_runtimes() == []
