"""`attuned envs list|gc`, `attuned test` of a pack whose environment cannot be had, and the
`environments:` section as `attuned config` reads and shows it."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from attuned.envs.python.layout import MARKER
from tests.cli.inprocess import run_attuned, subprocess_attuned
from tests.envs.conftest import write_pack


class Attuned:
    """`attuned ARGS --config CONFIG` in-process (`real=True`: a subprocess); asserts the
    exit code."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def __call__(
        self, config: Path, *args: str, code: int = 0, real: bool = False
    ) -> subprocess.CompletedProcess[str]:
        argv = [*args, "--config", config]
        if real:
            proc = subprocess_attuned(argv, cwd=config.parent)
        else:
            proc = run_attuned(argv, self.capsys)
        assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
        return proc


@pytest.fixture
def attuned(capsys: pytest.CaptureFixture[str]) -> Attuned:
    return Attuned(capsys)


def write_config(tmp_path: Path, **extra: Any) -> Path:
    config = tmp_path / "attuned.yaml"
    data = {
        "state_dir": str(tmp_path / "state"),
        "testing": {"kill_grace": 0.5},
        "environments": {"find_links": [str(tmp_path / "wheels")], "no_index": True},
        **extra,
    }
    config.write_text(yaml.safe_dump(data))
    return config


def test_envs_list_and_gc(tmp_path: Path, attuned: Attuned) -> None:
    config = write_config(tmp_path)
    assert attuned(config, "envs", "list", "--json").stdout.strip() == "[]"
    old = tmp_path / "state/envs" / ("a" * 16)
    old.mkdir(parents=True)
    (old / MARKER).write_text(json.dumps({"key": "a" * 64, "requirements": ["x==1"]}))
    then = time.time() - 7200
    os.utime(old / MARKER, (then, then))

    [listed] = json.loads(attuned(config, "envs", "list", "--json").stdout)
    assert (listed["key"], listed["complete"], listed["requirements"]) == ("a" * 64, True, ["x==1"])
    assert listed["used_by"] == []
    assert "aaaaaaaaaaaaaaaa" in attuned(config, "envs", "list", real=True).stdout

    kept = json.loads(attuned(config, "envs", "gc", "--grace", "86400", "--json").stdout)
    assert kept == {"removed": []}
    removed = json.loads(attuned(config, "envs", "gc", "--json").stdout)  # grace: 1 h
    assert removed == {"removed": [str(old)]}


def test_attuned_test_of_a_pack_whose_runtime_is_missing(tmp_path: Path, attuned: Attuned) -> None:
    config = write_config(tmp_path, environments={"runtimes": {"nodejs": "/nonexistent/node"}})
    pack = write_pack(tmp_path / "src", runtime_deps=["nodejs"])
    out = json.loads(attuned(config, "test", str(pack.path), "--json", code=4).stdout)
    assert (out["status"], out["total_tests"], out["gate"]["passed"]) == ("error", 0, False)
    assert "runtime 'nodejs' (command '/nonexistent/node'" in out["gate"]["reason"]
    human = attuned(config, "test", str(pack.path), code=4)
    assert "tests: error, 0/0 passed" in human.stdout
    assert "environment [environment]" in human.stdout


def test_config_shows_index_urls_without_their_credentials(
    tmp_path: Path, attuned: Attuned
) -> None:
    config = write_config(
        tmp_path,
        environments={
            "index_url": "https://__token__:pypi-s3cret@pypi.example/simple",
            "extra_index_urls": ["https://s3cret-user-token@extra.example/simple"],
        },
    )
    shown = attuned(config, "config", "show", "--json").stdout
    assert "s3cret" not in shown
    environments = json.loads(shown)["environments"]
    assert environments["index_url"] == "https://***@pypi.example/simple"
    assert environments["extra_index_urls"] == ["https://***@extra.example/simple"]
    assert environments["create_timeout"] == 600 and environments["unused_grace"] == 3600


def test_index_urls_with_whitespace_are_refused(tmp_path: Path, attuned: Attuned) -> None:
    config = write_config(tmp_path, environments={"find_links": ["/srv/my wheels"]})
    refused = attuned(config, "config", "check", code=2, real=True)
    assert "environments.find_links" in refused.stderr
    assert "without whitespace" in refused.stderr
