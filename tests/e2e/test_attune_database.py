"""The daemon keeps Attune's own tables equal to the declared packs: drop, upgrade with a
vanished action, a failing upgrade that keeps the old version, prune, and a pack registered
and unregistered by hand, read back with Attune's SQL (on PostgreSQL, in a database built by
Attune's own migrations)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from tests.attune_db import MISSING_REASON, run_migrations, schema_dir
from tests.attune_packs import APP, BASE, write_pack
from tests.conftest import POSTGRES_ENV
from tests.e2e.conftest import DaemonProcess


def attune(db_url: str, sql: str) -> list[dict[str, Any]]:
    engine = create_engine(db_url)
    try:
        with engine.begin() as connection:
            if engine.dialect.name == "postgresql":
                connection.execute(text("SET LOCAL search_path TO attune, public"))
            rows = [dict(r._mapping) for r in connection.execute(text(sql))]
    finally:
        engine.dispose()
    return [
        {k: json.loads(v) if isinstance(v, str) and v[:1] in "[{" else v for k, v in r.items()}
        for r in rows
    ]


def drop(daemon: DaemonProcess, name: str, files: dict[str, str], **kwargs: Any) -> None:
    staging = daemon.folder / f".{name}"
    shutil.rmtree(staging, ignore_errors=True)
    write_pack(files, staging, **kwargs)
    target = daemon.folder / name
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)


def test_the_daemon_keeps_attunes_tables_equal_to_the_folder(
    daemon_factory: Callable[..., DaemonProcess], db_url: str, tmp_path: Path
) -> None:
    daemon = daemon_factory()
    daemon.config["testing"]["sandbox"] = "none"
    daemon.start()
    drop(daemon, "base", BASE)
    drop(daemon, "app", APP)
    daemon.wait_pack("base", "active")
    daemon.wait_pack("app", "active")
    rules = attune(
        db_url,
        "SELECT r.ref, a.ref AS action, t.ref AS trigger, p.ref AS pack FROM rule r "
        "JOIN action a ON a.id = r.action JOIN trigger t ON t.id = r.trigger "
        "JOIN pack p ON p.id = r.pack ORDER BY r.ref",
    )
    assert [tuple(r.values()) for r in rules] == [
        ("app.greet_on_tick", "app.greet", "base.tick", "app"),
        ("base.every_tick", "base.echo", "base.tick", "base"),
    ]
    [app] = attune(
        db_url, "SELECT id, source_type, source_url, storage_path FROM pack WHERE ref = 'app'"
    )
    assert (app["source_type"], app["source_url"]) == (
        "local_directory",
        str(daemon.folder / "app"),
    )
    assert Path(app["storage_path"]).resolve() == (daemon.root / "state/packs/app").resolve()
    assert (Path(app["storage_path"]) / "actions/greet.yaml").is_file()  # where workers look
    greet = attune(db_url, "SELECT id, runtime FROM action WHERE ref = 'app.greet'")[0]
    assert greet["runtime"] is not None

    # an upgrade whose action vanished: gone from Attune, the others keep their ids
    drop(daemon, "app", APP, version="1.1.0", drop=("actions/wave.yaml",))
    daemon.wait_for(lambda s: s["packs"]["app"].get("version") == "1.1.0", what="app 1.1.0")
    actions = attune(db_url, f"SELECT id, ref FROM action WHERE pack = {app['id']}")
    assert actions == [{"id": greet["id"], "ref": "app.greet"}]

    # a failing upgrade: Attune's rows stay those of 1.1.0; its test run is recorded
    drop(daemon, "app", APP, version="1.2.0", passing=False)
    daemon.wait_pack("app", "failed")
    [row] = attune(db_url, "SELECT version FROM pack WHERE ref = 'app'")
    assert row["version"] == "1.1.0"
    latest = attune(
        db_url,
        "SELECT pack_version, trigger_reason, failed FROM pack_latest_test WHERE pack_ref = 'app'",
    )
    assert latest == [{"pack_version": "1.2.0", "trigger_reason": "update", "failed": 1}]

    # pruned: the pack and everything it brought leave Attune's tables, base stays
    shutil.rmtree(daemon.folder / "app")
    daemon.wait_pack("app", "removed")
    assert attune(db_url, "SELECT ref FROM pack ORDER BY ref") == [{"ref": "base"}]
    assert attune(db_url, "SELECT ref FROM action WHERE pack_ref = 'app'") == []
    assert (
        attune(db_url, "SELECT pack_id FROM pack_test_execution WHERE pack_id = " + str(app["id"]))
        == []
    )

    # by hand, beside the daemon: register and unregister
    tools = write_pack(
        {
            "pack.yaml": APP["pack.yaml"]
            .replace("ref: app", "ref: tools")
            .replace('dependencies: ["base>=1.0.0,<3"]', ""),
            "triggers/t.yaml": "ref: tools.t\n",
        },
        tmp_path / "tools",
    )
    assert daemon.cli("register", str(tools)).returncode == 0
    assert attune(db_url, "SELECT ref FROM trigger WHERE pack_ref = 'tools'") == [
        {"ref": "tools.t"}
    ]
    done = daemon.cli("unregister", "tools")
    assert done.returncode == 0, done.stderr
    assert attune(db_url, "SELECT ref FROM pack ORDER BY ref") == [{"ref": "base"}]
    daemon.stop()


@pytest.mark.skipif(not os.environ.get(POSTGRES_ENV), reason=f"needs {POSTGRES_ENV}")
@pytest.mark.skipif(schema_dir() is None, reason=MISSING_REASON)
def test_a_daemon_started_before_attunes_migrations_waits_for_them(
    tmp_path: Path, empty_postgres_url: str
) -> None:
    """Degraded with the fix in its status, then registering once Attune's schema exists."""
    daemon = DaemonProcess(tmp_path / "d", empty_postgres_url)
    daemon.config["testing"]["sandbox"] = "none"
    try:
        daemon.start(first_pass=False)
        status = daemon.wait_for(
            lambda s: s["daemon"]["phase"] == "degraded", what="degraded on the missing schema"
        )
        assert "has no Attune schema" in status["daemon"]["error"]
        run_migrations(empty_postgres_url)  # Attune's migrations run now
        drop(daemon, "base", BASE)
        daemon.wait_pack("base", "active", timeout=60)
        assert attune(empty_postgres_url, "SELECT ref FROM pack") == [{"ref": "base"}]
    finally:
        daemon.stop()
