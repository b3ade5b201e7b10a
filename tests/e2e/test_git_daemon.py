"""Pushing to a pack repository deploys: the real daemon following real git servers.

These run on SQLite only: the database layer is covered on both backends elsewhere, and each
test here starts a daemon and a git server.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import EXAMPLES, REPO
from tests.e2e.conftest import DaemonProcess
from tests.reconcile.sources.git_servers import GitDaemon, PackRepo, git

FAILING = "#!/bin/sh\necho 'Total Tests: 2'\necho 'Passed: 1'\necho 'Failed: 1'\nexit 1\n"


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'attuned.db'}"


@pytest.fixture
def repo(tmp_path: Path) -> PackRepo:
    repo = PackRepo(tmp_path / "git")
    for name in ("hello", "welcome"):
        shutil.copytree(EXAMPLES / name, repo.work / "packs" / name)
    repo.commit("two packs")
    repo.push("main")
    return repo


def daemon_on_git(factory: Callable[..., DaemonProcess], url: str, **source: Any) -> DaemonProcess:
    daemon = factory()
    daemon.config["sources"] = [
        {
            "name": "repo",
            "type": "git",
            "url": url,
            "ref": {"branch": "main"},
            "path": "packs",
            "interval": 1,
            "jitter": 0,
            "timeout": 10,
            **source,
        }
    ]
    return daemon.start()


def set_version(repo: PackRepo, pack: str, version: str, test_script: str | None = None) -> None:
    manifest_path = repo.work / "packs" / pack / "pack.yaml"
    manifest = yaml.safe_load(manifest_path.read_text())
    manifest["version"] = version
    manifest_path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    if test_script is not None:
        (repo.work / "packs" / pack / "tests/run_tests.sh").write_text(test_script)


def test_push_deploys_and_failing_push_keeps_serving(
    daemon_factory: Callable[..., DaemonProcess], repo: PackRepo, git_daemon: GitDaemon
) -> None:
    daemon = daemon_on_git(daemon_factory, git_daemon.url("packs.git"))
    first = repo.head()
    daemon.wait_pack("hello", "active", "1.0.0")
    daemon.wait_pack("welcome", "active", "1.2.0")
    source = daemon.status()["sources"][0]
    assert (
        source["revision"] == first and source["location"] == git_daemon.url("packs.git") + "#packs"
    )
    shown = daemon.cli("show", "hello", "--json").stdout
    assert '"origin": "repo:packs/hello"' in shown

    set_version(repo, "hello", "1.1.0")
    second = repo.commit("hello 1.1.0")
    repo.push("main")
    daemon.wait_pack("hello", "active", "1.1.0")
    fetched = daemon.events("source.fetched")
    assert (fetched[-1]["old"], fetched[-1]["new"]) == (first, second)

    set_version(repo, "hello", "1.2.0", FAILING)
    repo.commit("hello 1.2.0, broken tests")
    repo.push("main")
    pack = daemon.wait_pack("hello", "failed")
    assert (pack["version"], pack["desired_version"]) == ("1.1.0", "1.2.0")
    assert daemon.pack("welcome")["state"] == "active"  # type: ignore[index]


def test_broken_pack_in_the_repo_leaves_the_others_alone(
    daemon_factory: Callable[..., DaemonProcess], repo: PackRepo, git_daemon: GitDaemon
) -> None:
    shutil.copytree(EXAMPLES / "failing", repo.work / "packs/broken")
    (repo.work / "packs/broken/pack.yaml").write_text("ref: broken\nversion: [\n")
    repo.commit("a broken pack")
    repo.push("main")
    daemon = daemon_on_git(daemon_factory, git_daemon.url("packs.git"))
    daemon.wait_pack("hello", "active")
    daemon.wait_pack("welcome", "active")
    [invalid] = daemon.status()["sources"][0]["invalid"]
    assert invalid["entry"] == "packs/broken" and "packs/broken/pack.yaml" in invalid["problems"][0]


def test_force_push_is_followed_and_deleted_branch_prunes_nothing(
    daemon_factory: Callable[..., DaemonProcess], repo: PackRepo, git_daemon: GitDaemon
) -> None:
    base = repo.head()
    set_version(repo, "hello", "2.0.0")
    repo.commit("hello 2.0.0")
    repo.push("main")
    daemon = daemon_on_git(daemon_factory, git_daemon.url("packs.git"))
    daemon.wait_pack("hello", "active", "2.0.0")
    # rewrite history: main goes back to the first commit plus another change
    git("reset", "-q", "--hard", base, cwd=repo.work)
    set_version(repo, "hello", "1.5.0")
    rewritten = repo.commit("hello 1.5.0 instead")
    repo.push("main", force=True)
    daemon.wait_pack("hello", "active", "1.5.0")
    assert daemon.status()["sources"][0]["revision"] == rewritten
    # the branch disappears: a source error, not an empty source
    git("config", "receive.denyDeleteCurrent", "ignore", cwd=repo.bare)
    git("push", "-q", "origin", "--delete", "main", cwd=repo.work)
    status = daemon.wait_for(lambda s: s["sources"][0]["error"] is not None, what="error")
    assert status["sources"][0]["error_since"] is not None
    time.sleep(1.5)  # another poll or two: still nothing pruned
    assert {r: p["state"] for r, p in daemon.status()["packs"].items()} == {
        "hello": "kept",
        "welcome": "kept",
    }
    assert [p["ref"] for p in json.loads(daemon.cli("packs", "--json").stdout)] == [
        "hello",
        "welcome",
    ]


def test_post_receive_hook_deploys_a_push_at_once(
    daemon_factory: Callable[..., DaemonProcess], repo: PackRepo
) -> None:
    # a local bare repository on the attuned host, polled only once an hour: the hook decides
    daemon = daemon_on_git(daemon_factory, str(repo.bare), interval=3600)
    daemon.wait_pack("hello", "active", "1.0.0")
    hook = repo.bare / "hooks/post-receive"
    shutil.copy(REPO / "deploy/git-hooks/post-receive", hook)
    hook.chmod(0o755)
    attuned_bin = Path(sys.executable).parent / "attuned"
    git("config", "attuned.source", "repo", cwd=repo.bare)
    git("config", "attuned.config", str(daemon.config_path), cwd=repo.bare)
    git("config", "attuned.bin", str(attuned_bin), cwd=repo.bare)
    set_version(repo, "hello", "1.0.1")
    repo.commit("hello 1.0.1")
    pushed = time.monotonic()
    pushed_out = subprocess.run(
        ["git", "push", "origin", "main"], cwd=repo.work, capture_output=True, text=True, check=True
    )
    assert "asked attuned to poll repo now" in pushed_out.stderr
    daemon.wait_pack("hello", "active", "1.0.1", timeout=15)
    latency = time.monotonic() - pushed
    print(f"\npush -> active through the post-receive hook: {latency:.2f} s")
    assert daemon.events("source.triggered")[0]["source"] == "repo"
