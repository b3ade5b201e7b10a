"""cli/fastconfig.py, the reader `status` and `trigger` use instead of the models, gives what
attuned.config.load_config gives for every config it accepts, and leaves every config it is
unsure of to the full loader (whose error the user then sees)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from attuned import config as full
from attuned.cli import fastconfig
from attuned.config import AttunedConfig, DirectorySourceConfig, load_config
from attuned.errors import ValidationFailed
from attuned.pack.versions import REF_PATTERN
from attuned.settings.git import GitSourceConfig
from attuned.yamlfile import MAX_YAML_BYTES

GIT = "    type: git\n    url: https://git.example.com/packs.git\n    ref: {branch: main}\n"
SYSTEMD = ("STATE_DIRECTORY", "RUNTIME_DIRECTORY", "CONFIGURATION_DIRECTORY")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No ambient ATTUNED_* or systemd variable, and an empty working directory."""
    for name in os.environ:
        if name.upper().startswith("ATTUNED_") or name in SYSTEMD:
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def both(explicit: Path | None) -> tuple[tuple[object, ...], tuple[object, ...]]:
    fast = fastconfig.read(explicit)
    assert fast is not None, "the fast reader gave up on a config it should read"
    config = load_config(explicit)
    return (
        (fast.path, fast.state_dir, fast.status_path, fast.triggers_path, fast.sources),
        (
            config.path,
            config.state_dir,
            config.status_path,
            config.triggers_path,
            {s.name: s.type for s in config.sources},
        ),
    )


# (the file's text, None: no file; the environment; whether --config names it)
AGREED: dict[str, tuple[str | None, dict[str, str], bool]] = {
    "no file: the defaults": (None, {}, False),
    "no file, under systemd": (
        None,
        {"STATE_DIRECTORY": "/s:/t", "RUNTIME_DIRECTORY": "/r"},
        False,
    ),
    "no file, state from the environment": (None, {"ATTUNED_STATE_DIR": "elsewhere"}, False),
    "an empty file": ("", {}, True),
    "relative paths": ("state_dir: ./st\nstatus_file: run/status.json\n", {}, True),
    "absolute state": ("state_dir: /srv/attuned\n", {}, True),
    "status file null": ("state_dir: st\nstatus_file: null\n", {}, True),
    "state under systemd, status under RuntimeDirectory": (
        "database: {url: 'sqlite:///x.db'}\n",
        {"STATE_DIRECTORY": "/var/lib/attuned", "RUNTIME_DIRECTORY": "/run/attuned:/run/x"},
        True,
    ),
    "environment overrides win over the file": (
        "state_dir: st\nstatus_file: s.json\n",
        {"ATTUNED_STATE_DIR": "/o/state", "ATTUNED_STATUS_FILE": "/o/status.json"},
        True,
    ),
    "empty values": ("state_dir: ''\n", {"ATTUNED_STATUS_FILE": ""}, True),
    "overrides in any case": ("state_dir: st\n", {"attuned_state_dir": "lower"}, True),
    "other overrides change nothing here": (
        "state_dir: st\n",
        {"ATTUNED_DATABASE__URL": "sqlite:///y.db", "ATTUNED_LOG__LEVEL": "debug"},
        True,
    ),
    "sources of both types": (
        "state_dir: st\nsources:\n  - name: local\n    path: packs.d\n"
        f"  - name: my.repo\n{GIT}  - name: other_one\n    type: directory\n    path: /x\n"
        "    create: true\n    prune: false\n",
        {},
        True,
    ),
    "every section": (
        "state_dir: st\npacks_dir: p\nmetrics_file: m.prom\ndatabase: {busy_timeout: 3}\n"
        "log: {level: debug}\nreconcile: {concurrency: 3}\ntesting: {kill_grace: 1}\n"
        "environments: {no_index: true}\ncluster: {node: a}\nnotify: []\n"
        "outbox: {poll_interval: 2}\nsources: []\n",
        {},
        True,
    ),
}


@pytest.mark.parametrize("case", AGREED)
def test_the_fast_reader_agrees_with_the_models(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text, environment, explicit = AGREED[case]
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    path = tmp_path / "attuned.yaml"
    if text is not None:
        path.write_text(text)

    fast, models = both(path if explicit else None)

    assert fast == models


@pytest.mark.parametrize("where", ["ATTUNED_CONFIG", "./attuned.yaml", "CONFIGURATION_DIRECTORY"])
def test_the_file_is_found_where_find_config_finds_it(
    where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "etc"
    folder.mkdir()
    config = (tmp_path if where == "./attuned.yaml" else folder) / "attuned.yaml"
    config.write_text(f"state_dir: {tmp_path / where.strip('./')}\n")
    if where == "ATTUNED_CONFIG":
        monkeypatch.setenv("ATTUNED_CONFIG", str(config))
    elif where == "CONFIGURATION_DIRECTORY":
        monkeypatch.setenv("CONFIGURATION_DIRECTORY", f"{folder}:/elsewhere")

    fast, models = both(None)

    assert fast == models
    assert fastconfig.find(None) == full.find_config(None) == models[0]


UNSURE: dict[str, tuple[str, dict[str, str]]] = {
    "an unknown key": ("state_dir: st\nstat_dir: typo\n", {}),
    "a key written twice": ("state_dir: a\nstate_dir: b\n", {}),
    "not YAML": ("state_dir: [unclosed\n", {}),
    "a list at the top": ("- state_dir\n", {}),
    "a state_dir of another type": ("state_dir: 5\n", {}),
    "sources not a list": ("sources: {name: local}\n", {}),
    "a source without its path": ("sources:\n  - name: local\n", {}),
    "a git source without its ref": (
        "sources:\n  - name: repo\n    type: git\n    url: https://h/r.git\n",
        {},
    ),
    "a source of an unknown type": ("sources:\n  - {name: s, type: svn, path: x}\n", {}),
    "an unknown source key": ("sources:\n  - {name: s, path: x, pth: y}\n", {}),
    "a source named badly": ("sources:\n  - {name: Bad Name, path: x}\n", {}),
    "two sources of one name": ("sources:\n  - {name: s, path: x}\n  - {name: s, path: y}\n", {}),
}


@pytest.mark.parametrize("case", UNSURE)
def test_what_it_is_unsure_of_goes_to_the_full_loader_which_explains(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text, environment = UNSURE[case]
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    path = tmp_path / "attuned.yaml"
    path.write_text(text)

    assert fastconfig.read(path) is None
    with pytest.raises(ValidationFailed):
        load_config(path)


def test_a_missing_file_and_overrides_it_does_not_parse_go_to_the_full_loader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert fastconfig.read(tmp_path / "nosuch.yaml") is None
    monkeypatch.setenv("ATTUNED_SOURCES", '[{"name": "env", "path": "/e"}]')
    monkeypatch.setenv("ATTUNED_STATE_DIR__X", "y")
    assert fastconfig.read(None) is None
    config = load_config(None)  # which reads them
    assert ([s.name for s in config.sources], config.state_dir) == (["env"], Path("var"))


def test_sections_status_and_trigger_do_not_use_are_left_to_config_check(
    tmp_path: Path,
) -> None:
    """A bad value elsewhere does not hide the daemon's status: `config check` reports it."""
    path = tmp_path / "attuned.yaml"
    path.write_text("state_dir: st\nreconcile: {concurrency: 0}\n")

    settings = fastconfig.read(path)

    assert settings is not None and settings.state_dir == Path("st")
    with pytest.raises(ValidationFailed):
        load_config(path)


def test_its_constants_are_the_models() -> None:
    assert set(AttunedConfig.model_fields) == fastconfig.CONFIG_KEYS
    assert set(DirectorySourceConfig.model_fields) == fastconfig.SOURCE_KEYS["directory"]
    assert set(GitSourceConfig.model_fields) == fastconfig.SOURCE_KEYS["git"]
    required = {
        kind: {n for n, f in model.model_fields.items() if f.is_required()} - {"type"}
        for kind, model in (("directory", DirectorySourceConfig), ("git", GitSourceConfig))
    }
    assert {k: set(v) for k, v in fastconfig.REQUIRED_SOURCE_KEYS.items()} == required
    assert (fastconfig.ENV_CONFIG, fastconfig.DEFAULT_LOCATIONS) == (
        full.ENV_CONFIG,
        full.DEFAULT_LOCATIONS,
    )
    assert fastconfig.MAX_BYTES == MAX_YAML_BYTES
    assert fastconfig._REF.pattern == REF_PATTERN.pattern
    assert full.default_config().sources[0].path == Path(fastconfig.DEFAULT_SOURCE)
