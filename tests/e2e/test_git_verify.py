"""The daemon activates only signed pushes: real daemon, `git daemon`, real keys.

A push signed by an allowed key deploys; an unsigned one and one by a key not (yet) allowed
are held while the served version stays active, with the reason in the status file, the log
and the outbox; an allowed-signers file changed and reloaded with SIGHUP takes effect.
"""

from __future__ import annotations

import json
import shutil
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES
from tests.e2e.conftest import DaemonProcess
from tests.e2e.test_git_daemon import daemon_on_git, set_version
from tests.reconcile.sources.git_servers import GitDaemon, PackRepo
from tests.reconcile.sources.signing import SshKey, commit


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'attuned.db'}"


@pytest.fixture
def repo(tmp_path: Path, alice: SshKey) -> PackRepo:
    repo = PackRepo(tmp_path / "git")
    shutil.copytree(EXAMPLES / "hello", repo.work / "packs" / "hello")
    commit(repo, "hello, signed", {}, alice)
    return repo


def source_error(daemon: DaemonProcess, text: str) -> dict[str, object]:
    status = daemon.wait_for(
        lambda s: text in (s["sources"][0].get("error") or ""), what=f"source error {text!r}"
    )
    return dict(status["sources"][0])


def test_only_allowed_signed_pushes_activate_and_sighup_rereads_the_signers(
    daemon_factory: Callable[..., DaemonProcess],
    repo: PackRepo,
    git_daemon: GitDaemon,
    alice: SshKey,
    mallory: SshKey,
    tmp_path: Path,
) -> None:
    signers = tmp_path / "allowed_signers"
    signers.write_text(alice.allowed_line())
    daemon = daemon_on_git(
        daemon_factory, git_daemon.url("packs.git"), verify={"ssh_allowed_signers": str(signers)}
    )
    first = repo.head()
    daemon.wait_pack("hello", "active", "1.0.0")

    set_version(repo, "hello", "1.1.0")
    unsigned = commit(repo, "hello 1.1.0, unsigned", {}, None)
    held = source_error(daemon, f"source unverified: commit {unsigned[:7]} is unsigned")
    assert held["revision"] == first and held["readable"] is True
    assert daemon.pack("hello")["version"] == "1.0.0"  # type: ignore[index]

    set_version(repo, "hello", "1.2.0")
    by_mallory = commit(repo, "hello 1.2.0 by mallory", {}, mallory)
    reason = f"commit {by_mallory[:7]} is signed by {mallory.fingerprint} not in allowed signers"
    held = source_error(daemon, reason)
    assert held["revision"] == first
    pack = daemon.wait_pack("hello", "active", "1.0.0")
    assert pack["state"] == "active"
    logged = daemon.events("source.verification.failed")
    assert [(e["revision"], e["reason"]) for e in logged] == [
        (unsigned, f"commit {unsigned[:7]} is unsigned"),
        (by_mallory, reason),
    ]
    assert logged[-1]["signer"] == f"ssh {mallory.fingerprint}"
    outbox = json.loads(daemon.cli("events", "--json").stdout)  # newest first
    failed = [e["data"] for e in outbox if e["event"] == "source.verification.failed"]
    assert [(e["revision"], e["source"]) for e in failed] == [
        (by_mallory, "repo"),
        (unsigned, "repo"),
    ]

    signers.write_text(alice.allowed_line() + mallory.allowed_line())
    daemon.signal(signal.SIGHUP)
    daemon.wait_pack("hello", "active", "1.2.0")
    source = daemon.wait_for(lambda s: s["sources"][0]["error"] is None, what="no error")
    assert source["sources"][0]["revision"] == by_mallory
