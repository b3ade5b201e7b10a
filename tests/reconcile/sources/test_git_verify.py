"""Signed-commit verification of git sources, with real git, real keys and real signatures.

Every key is made in the test (ssh-keygen ed25519, a GnuPG key in a throwaway GNUPGHOME),
commits and tags are signed by the git CLI, and the check is git's own. A commit that is not
trusted is held: the source answers its last verified result again, unchanged, and says why.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pygit2
import pytest
from pydantic import ValidationError

from attuned.config import AttunedConfig, load_config
from attuned.errors import ConfigError
from attuned.reconcile.snapshots import SnapshotStore
from attuned.reconcile.sources.base import ScanResult
from attuned.reconcile.sources.git import GitSource
from attuned.reconcile.sourceset import SourceSet
from attuned.report.log import ConditionLog, Event
from attuned.settings.git import UNSIGNED, GitSourceConfig
from tests.cli.inprocess import run_attuned
from tests.reconcile.sources.git_servers import PackRepo
from tests.reconcile.sources.signing import GpgKey, SshKey, commit, tag
from tests.reconcile.sources.test_git import pack, versions

SourceFactory = Callable[..., GitSource]


@pytest.fixture
def repo(tmp_path: Path) -> PackRepo:
    return PackRepo(tmp_path)


@pytest.fixture
def store(tmp_path: Path) -> SnapshotStore:
    return SnapshotStore(tmp_path / "state" / "snapshots", racy_window_ns=0)


@pytest.fixture
def signers(tmp_path: Path, alice: SshKey) -> Path:
    path = tmp_path / "allowed_signers"
    path.write_text(alice.allowed_line())
    return path


@pytest.fixture
def gpg_keys() -> Iterator[Callable[..., GpgKey]]:
    made: list[GpgKey] = []

    def make(uid: str, **options: Any) -> GpgKey:
        made.append(GpgKey(uid, **options))
        return made[-1]

    yield make
    for key in made:
        key.close()


def git_config(url: str, **fields: Any) -> GitSourceConfig:
    ref = fields.pop("ref", {"branch": "main"})
    return GitSourceConfig.model_validate(
        {"name": "origin", "type": "git", "url": url, "ref": ref, "path": "packs"}
        | {"interval": 1, "jitter": 0, "timeout": 5}
        | fields
    )


@pytest.fixture
def make_source(tmp_path: Path, store: SnapshotStore, repo: PackRepo) -> Iterator[SourceFactory]:
    made: list[GitSource] = []

    def make(**fields: Any) -> GitSource:
        state = tmp_path / "state"
        config = git_config(str(repo.bare), **fields)
        source = GitSource(
            config, store, cache_dir=state / "git", work_dir=state / "work", prune=True
        )
        made.append(source)
        return source

    yield make
    for source in made:
        source.close()


def held_at(result: ScanResult, before: ScanResult, error: str) -> None:
    """The source answers its last verified result, unchanged, with `error` as its error."""
    assert result.state.readable and result.state.error == error
    assert result.candidates == before.candidates and result.revision == before.revision


# --- SSH signatures ----------------------------------------------------------------------


def test_a_commit_signed_by_an_allowed_ssh_key_activates(
    repo: PackRepo, make_source: SourceFactory, alice: SshKey, signers: Path
) -> None:
    sha = commit(repo, "hello", pack("hello"), alice)
    source = make_source(verify={"ssh_allowed_signers": str(signers)})
    result = source.scan()
    assert result.state.readable and result.state.error is None and result.revision == sha
    [hello] = result.candidates
    assert hello.signer == f"ssh {alice.fingerprint} alice@example.com"
    tree = pygit2.Repository(str(repo.bare))[sha].peel(pygit2.Commit).tree_id
    assert hello.source_tree == str(tree)
    assert source.unverified is None


@pytest.mark.parametrize("who", ["unsigned", "mallory", "expired", "not_yet_valid"])
def test_an_untrusted_push_is_held_and_the_last_verified_commit_keeps_serving(
    repo: PackRepo,
    make_source: SourceFactory,
    store: SnapshotStore,
    alice: SshKey,
    mallory: SshKey,
    signers: Path,
    who: str,
) -> None:
    commit(repo, "hello 1", pack("hello"), alice)
    source = make_source(verify={"ssh_allowed_signers": str(signers)})
    before = source.scan()
    snapshots = sorted(p.name for p in store.root.iterdir())
    key = {"unsigned": None, "mallory": mallory}.get(who, alice)
    if who in ("expired", "not_yet_valid"):  # alice's entry is outside its validity
        window = 'valid-before="20200101"' if who == "expired" else 'valid-after="20991231"'
        signers.write_text(alice.allowed_line(window))
        source.reload()
    sha = commit(repo, "hello 2", pack("hello", "2.0.0"), key)
    short = sha[:7]
    expected = {
        "unsigned": f"commit {short} is unsigned",
        "mallory": f"commit {short} is signed by {mallory.fingerprint} not in allowed signers",
        "expired": f"commit {short} is signed by {alice.fingerprint} outside its validity: "
        "key has expired",
        "not_yet_valid": f"commit {short} is signed by {alice.fingerprint} outside its "
        "validity: not yet valid",
    }[who]
    result = source.scan()
    assert result.state.error is not None
    assert result.state.error.startswith(f"source unverified: {expected}")
    held_at(result, before, result.state.error)
    assert versions(result) == {"hello": "1.0.0"} and source.last_revision == before.revision
    assert source.unverified is not None and source.unverified.commit == sha
    # verified before any file of it was read: no snapshot of 2.0.0 was made
    assert sorted(p.name for p in store.root.iterdir()) == snapshots


def test_a_forced_push_to_an_unsigned_commit_is_refused(
    repo: PackRepo, make_source: SourceFactory, alice: SshKey, signers: Path
) -> None:
    first = commit(repo, "hello 1", pack("hello"), alice)
    source = make_source(verify={"ssh_allowed_signers": str(signers)})
    before = source.scan()
    subprocess.run(["git", "reset", "-q", "--hard", "HEAD~0"], cwd=repo.work, check=True)
    subprocess.run(
        ["git", "-c", "user.name=x", "-c", "user.email=x@x", "commit", "-q", "--amend", "-m", "x"],
        cwd=repo.work,
        check=True,
    )
    repo.push("main", force=True)
    result = source.scan()
    assert result.state.error == f"source unverified: commit {repo.head()[:7]} is unsigned"
    held_at(result, before, result.state.error)
    assert before.revision == first


def test_with_no_verified_commit_yet_the_source_is_unreadable(
    repo: PackRepo, make_source: SourceFactory, signers: Path
) -> None:
    sha = commit(repo, "hello", pack("hello"), None)
    result = make_source(verify={"ssh_allowed_signers": str(signers)}).scan()
    assert not result.state.readable and result.candidates == ()
    assert result.state.error == f"source unverified: commit {sha[:7]} is unsigned"


def test_a_known_commit_is_not_checked_again(
    repo: PackRepo, make_source: SourceFactory, alice: SshKey, signers: Path
) -> None:
    commit(repo, "hello", pack("hello"), alice)
    source = make_source(verify={"ssh_allowed_signers": str(signers)})
    source.scan()
    assert source.verifier is not None and source.verifier.runs == 1
    source.retry_now()
    source.scan()
    assert source.verifier.runs == 1


def test_an_allowed_signers_file_changed_at_reload_takes_effect(
    repo: PackRepo,
    make_source: SourceFactory,
    alice: SshKey,
    mallory: SshKey,
    signers: Path,
    tmp_path: Path,
) -> None:
    """Through SourceSet.configure with the same configuration, as SIGHUP does."""
    commit(repo, "hello 1", pack("hello"), alice)
    config = AttunedConfig.model_validate(
        {
            "state_dir": str(tmp_path / "state"),
            "sources": [
                git_config(str(repo.bare), verify={"ssh_allowed_signers": str(signers)}).model_dump(
                    mode="json"
                )
            ],
        }
    )
    announced: list[tuple[Event, dict[str, Any]]] = []
    sources = SourceSet(
        SnapshotStore(tmp_path / "snapshots"),
        ConditionLog(lambda event, fields, _stable: announced.append((event, fields))),
    )
    sources.configure(config)
    [first] = sources.scan_all({"origin"})
    sha = commit(repo, "hello 2 by mallory", pack("hello", "2.0.0"), mallory)
    for _ in range(2):  # the same commit held twice: one event
        [held] = sources.scan_all({"origin"})
        sources.trigger("origin")
    reason = f"commit {sha[:7]} is signed by {mallory.fingerprint} not in allowed signers"
    status = sources.status["origin"]
    assert status.error == f"source unverified: {reason}" and status.revision == first.revision
    assert versions(held) == {"hello": "1.0.0"}
    failed = [f for e, f in announced if e == Event.SOURCE_VERIFICATION_FAILED]
    assert failed == [
        {
            "source": "origin",
            "revision": sha,
            "reason": reason,
            "signer": f"ssh {mallory.fingerprint}",
        }
    ]
    assert Event.SOURCE_ERROR not in [e for e, _ in announced]

    signers.write_text(alice.allowed_line() + mallory.allowed_line())
    sources.configure(config)  # unchanged configuration: the same source, reloaded
    [now] = sources.scan_all({"origin"})
    assert now.state.error is None and now.revision == sha
    assert versions(now) == {"hello": "2.0.0"} and sources.status["origin"].error is None
    assert {c.signer for c in now.candidates} == {f"ssh {mallory.fingerprint} mallory@example.com"}


# --- OpenPGP signatures --------------------------------------------------------------------


def test_gpg_signatures_count_for_listed_fingerprints_only(
    repo: PackRepo,
    make_source: SourceFactory,
    tmp_path: Path,
    gpg_keys: Callable[..., GpgKey],
) -> None:
    listed, other = gpg_keys("Alice <alice@example.com>"), gpg_keys("Bob <bob@example.com>")
    keyring = tmp_path / "keyring.gpg"
    keyring.write_bytes(
        listed.export(tmp_path / "a").read_bytes() + other.export(tmp_path / "b").read_bytes()
    )
    sha = commit(repo, "hello", pack("hello"), listed)
    verify = {"gpg_keyring": str(keyring), "gpg_fingerprints": [listed.fingerprint.lower()]}
    source = make_source(verify=verify)
    result = source.scan()
    assert result.revision == sha and result.state.error is None
    assert {c.signer for c in result.candidates} == {
        f"gpg {listed.fingerprint} Alice <alice@example.com>"
    }
    second = commit(repo, "hello 2", pack("hello", "2.0.0"), other)
    held = source.scan()
    assert held.state.error == (
        f"source unverified: commit {second[:7]} is signed by GPG key {other.fingerprint} "
        "not in gpg_fingerprints"
    )
    held_at(held, result, held.state.error)


@pytest.mark.parametrize("trouble", ["expired", "revoked", "not_in_keyring"])
def test_an_expired_revoked_or_unknown_gpg_key_is_held(
    repo: PackRepo,
    make_source: SourceFactory,
    tmp_path: Path,
    alice: SshKey,
    signers: Path,
    gpg_keys: Callable[..., GpgKey],
    trouble: str,
) -> None:
    if trouble == "expired":  # made and used in 2020, valid for one day
        key = gpg_keys("Old <old@example.com>", faked="20200101T000000")
    else:
        key = gpg_keys("Rev <rev@example.com>")
    keyring = tmp_path / "keyring.gpg"
    commit(repo, "hello 1", pack("hello"), alice)
    sha = commit(repo, "hello 2", pack("hello", "2.0.0"), key)
    if trouble == "revoked":
        key.revoke()
    if trouble == "not_in_keyring":
        keyring.write_bytes(gpg_keys("Someone <x@example.com>").export(tmp_path / "x").read_bytes())
    else:
        key.export(keyring)
    verify = {
        "ssh_allowed_signers": str(signers),
        "gpg_keyring": str(keyring),
        "gpg_fingerprints": [key.fingerprint],
    }
    source = make_source(verify=verify, ref={"commit": sha[:12]})
    result = source.scan()
    assert not result.state.readable and result.state.error is not None
    keyid = key.fingerprint[-16:]
    expected = {
        "expired": f"is signed with an expired GPG key {keyid} Old <old@example.com>",
        "revoked": f"is signed with a revoked GPG key {keyid} Rev <rev@example.com>",
        "not_in_keyring": f"is signed by GPG key {keyid} not in the gpg_keyring",
    }[trouble]
    assert result.state.error == f"source unverified: commit {sha[:7]} {expected}"


# --- tags ----------------------------------------------------------------------------------


def test_tag_mode_needs_a_signed_tag_not_only_a_signed_head(
    repo: PackRepo, make_source: SourceFactory, alice: SshKey, signers: Path
) -> None:
    first = commit(repo, "hello 1", pack("hello"), alice)
    tag(repo, "v1.0.0", alice)
    verify = {"ssh_allowed_signers": str(signers), "mode": "tag_and_head"}
    source = make_source(verify=verify, ref={"semver": ">=1"})
    before = source.scan()
    assert before.revision == first and before.state.error is None
    second = commit(repo, "hello 2", pack("hello", "2.0.0"), alice)
    tag(repo, "v2.0.0", None)  # annotated, unsigned: only the head is signed
    held = source.scan()
    assert held.state.error == (f"source unverified: tag v2.0.0 (commit {second[:7]}) is unsigned")
    held_at(held, before, held.state.error)
    commit(repo, "hello 3", pack("hello", "3.0.0"), alice)
    tag(repo, "v3.0.0", None, annotated=False)
    source.retry_now()
    light = source.scan()
    assert light.state.error is not None and "v3.0.0" in light.state.error
    assert "is a lightweight tag: it cannot be signed" in light.state.error
    held_at(light, before, light.state.error)


def test_tag_mode_accepts_a_signed_tag_on_an_unsigned_commit(
    repo: PackRepo, make_source: SourceFactory, alice: SshKey, signers: Path
) -> None:
    sha = commit(repo, "hello 1", pack("hello"), None)
    tag(repo, "v1", alice)
    source = make_source(
        verify={"ssh_allowed_signers": str(signers), "mode": "tag"}, ref={"tag": "v1"}
    )
    result = source.scan()
    assert result.revision == sha and result.state.error is None
    assert {c.signer for c in result.candidates} == {f"ssh {alice.fingerprint} alice@example.com"}


def test_without_verify_candidates_say_unsigned(repo: PackRepo, make_source: SourceFactory) -> None:
    commit(repo, "hello", pack("hello"), None)
    result = make_source().scan()
    assert {c.signer for c in result.candidates} == {UNSIGNED}
    assert all(c.source_tree for c in result.candidates)


# --- configuration -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("verify", "ref", "message"),
    [
        ({}, None, "verify needs ssh_allowed_signers or gpg_keyring (or both)"),
        (
            {"ssh_allowed_signers": "/nonexistent/signers"},
            None,
            "/nonexistent/signers does not exist",
        ),
        ({"gpg_keyring": "SIGNERS"}, None, "verify.gpg_keyring needs verify.gpg_fingerprints"),
        ({"gpg_keyring": "SIGNERS", "gpg_fingerprints": ["ABCD"]}, None, "'ABCD' is not a full"),
        ({"ssh_allowed_signers": "SIGNERS", "mode": "tag"}, None, "verify.mode tag checks a tag's"),
        ({"ssh_allowed_signers": "SIGNERS", "mode": "sometimes"}, None, "'head', 'tag' or"),
    ],
)
def test_verify_settings_are_validated(
    signers: Path, verify: dict[str, Any], ref: dict[str, str] | None, message: str
) -> None:
    fixed = {k: (str(signers) if v == "SIGNERS" else v) for k, v in verify.items()}
    with pytest.raises(ValidationError) as caught:
        git_config("/srv/packs.git", verify=fixed, **({"ref": ref} if ref else {}))
    assert message in str(caught.value)


def test_a_missing_allowed_signers_file_is_named_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "attuned.yaml"
    path.write_text(
        "sources:\n"
        "  - name: origin\n"
        "    type: git\n"
        "    url: /srv/packs.git\n"
        "    ref: {branch: main}\n"
        "    verify:\n"
        "      ssh_allowed_signers: /nonexistent/allowed_signers\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    text = str(caught.value)
    assert f"{path}:7" in text and "ssh_allowed_signers" in text
    assert "/nonexistent/allowed_signers does not exist" in text


# --- attuned verify ------------------------------------------------------------------------


def test_attuned_verify_exits_0_1_or_2(
    repo: PackRepo,
    alice: SshKey,
    signers: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    signed = commit(repo, "hello", pack("hello"), alice)
    unsigned = commit(repo, "hello 2", pack("hello", "2.0.0"), None)
    config = tmp_path / "attuned.yaml"
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\nsources:\n"
        f"  - {{name: origin, type: git, url: {repo.bare}, ref: {{branch: main}}, "
        f"verify: {{ssh_allowed_signers: {signers}}}}}\n"
        f"  - {{name: plain, type: git, url: {repo.bare}, ref: {{branch: main}}}}\n"
    )
    head = run_attuned(["verify", "origin", "--config", config], capsys)
    assert head.returncode == 1
    assert head.stdout == f"not verified: origin commit {unsigned[:7]} is unsigned\n"
    ok = run_attuned(["verify", "origin", "--revision", signed[:10], "--config", config], capsys)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == (
        f"verified: origin commit {signed} signed by ssh {alice.fingerprint} alice@example.com\n"
    )
    for name in ("plain", "nosuch"):
        usage = run_attuned(["verify", name, "--config", config], capsys)
        assert usage.returncode == 2 and name in usage.stderr
    assert not (tmp_path / "state" / "git").exists()  # the daemon's cache is not touched
