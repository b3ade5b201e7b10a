"""attuned.yaml: strict keys with lines, defaults, systemd directories, environment overrides."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from attuned.config import load_config
from attuned.errors import ConfigError
from tests.conftest import REPO


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("ATTUNED_") or key.endswith("_DIRECTORY"):
            monkeypatch.delenv(key)


def test_example_config_loads() -> None:
    config = load_config(REPO / "config/attuned.yaml")
    assert [s.name for s in config.sources] == ["local"] and config.sources[0].create


def test_no_file_means_defaults_with_a_watched_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config()
    assert config.path is None and config.state_dir == Path("var")
    assert [(s.name, str(s.path)) for s in config.sources] == [("packs.d", "packs.d")]
    assert config.status_path == Path("var/status.json")


def test_unknown_and_invalid_keys_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text("reconcile:\n  concurrency: 0\nsources:\n  - name: x\n    type: ftp\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    found = [str(p) for p in caught.value.problems]
    assert any(p.startswith(f"{path}:2: reconcile.concurrency:") for p in found)
    assert any(f"{path}:4: sources[0]" in p and "'ftp'" in p for p in found)


def test_duplicate_source_names(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text("sources:\n- {name: a, path: /x}\n- {name: a, path: /y}\n")
    with pytest.raises(ConfigError, match="source names must be unique: a"):
        load_config(path)


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "a.yaml"
    path.write_text("database:\n  url: sqlite:///from-file.db\nreconcile:\n  concurrency: 2\n")
    monkeypatch.setenv("ATTUNED_DATABASE__URL", "postgresql+psycopg://u@db/attuned")
    monkeypatch.setenv("ATTUNED_RECONCILE__CONCURRENCY", "5")
    config = load_config(path)
    assert config.database.url == "postgresql+psycopg://u@db/attuned"
    assert config.reconcile.concurrency == 5


def test_bad_environment_value_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ATTUNED_RECONCILE__CONCURRENCY", "0")
    with pytest.raises(ConfigError, match="reconcile.concurrency"):
        load_config()


def test_systemd_directories_are_the_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/attuned")
    monkeypatch.setenv("RUNTIME_DIRECTORY", "/run/attuned")
    monkeypatch.setenv("CONFIGURATION_DIRECTORY", str(tmp_path / "etc"))
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/attuned.yaml").write_text("reconcile:\n  concurrency: 3\n")
    config = load_config()
    assert config.path == tmp_path / "etc/attuned.yaml" and config.reconcile.concurrency == 3
    assert config.state_dir == Path("/var/lib/attuned")
    assert config.status_path == Path("/run/attuned/status.json")
    assert config.database_url == "sqlite:////var/lib/attuned/attuned.db"


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "attuned", *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
    )


def test_config_check_and_show(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("database:\n  url: postgresql+psycopg://u:hunter2@db/a\n")
    checked = run_cli("config", "check", "--config", str(good))
    assert checked.returncode == 0 and f"configuration OK: {good}" in checked.stdout
    shown = run_cli("config", "show", "--config", str(good), "--json")
    assert shown.returncode == 0 and "hunter2" not in shown.stdout
    assert '"url": "postgresql+psycopg://u:***@db/a"' in shown.stdout
    assert '"concurrency": 2' in shown.stdout  # defaults are filled in
    bad = tmp_path / "bad.yaml"
    bad.write_text("state_dir: ./x\nlog:\n  levle: debug\n")
    refused = run_cli("config", "check", "--config", str(bad))
    assert refused.returncode == 2 and f"{bad}:3: log.levle: unknown field" in refused.stderr
