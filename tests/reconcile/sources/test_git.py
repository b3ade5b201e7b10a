"""Git sources against real repositories, pushed to with the git CLI and served on 127.0.0.1.

Servers: `git daemon` (git://), `git http-backend` behind a CGI server (smart HTTP, with and
without basic auth), sshd when installed, and plain paths / file:// URLs. "No network call"
is asserted from the server's side: its count of requests does not move.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pygit2
import pytest
import yaml
from pydantic import ValidationError

from attuned.pack.loader import load_pack
from attuned.reconcile.snapshots import SnapshotStore
from attuned.reconcile.sources.base import ScanResult
from attuned.reconcile.sources.git import GitSource, backoff
from attuned.reconcile.sources.git_remote import raise_socket_timeouts
from attuned.settings.git import GitSourceConfig, redact
from tests.reconcile.sources.git_servers import (
    SSHD,
    GitDaemon,
    PackRepo,
    SilentServer,
    SmartHttpServer,
    SshServer,
    git,
)

SECRET = "pa55-w0rd-never-shown"
SourceFactory = Callable[..., GitSource]


def manifest(ref: str, version: str = "1.0.0", **extra: Any) -> str:
    data = {"ref": ref, "label": ref.title(), "description": f"The {ref} pack", "version": version}
    return yaml.safe_dump(data | extra, sort_keys=False)


def pack(ref: str, version: str = "1.0.0", under: str = "packs") -> dict[str, str | None]:
    """The files of one pack folder, `<under>/<ref>/`."""
    prefix = f"{under}/{ref}" if under else ref
    return {
        f"{prefix}/pack.yaml": manifest(ref, version),
        f"{prefix}/actions/run.sh": f"echo {ref} {version}\n",
    }


def publish(repo: PackRepo, message: str, files: dict[str, str | None] | None = None) -> str:
    """Commit on main and push it: what a pack author does."""
    sha = repo.commit(message, files)
    repo.push("main")
    return sha


def wait_for_next_poll(source: GitSource) -> None:
    assert source.next_poll_at is not None
    time.sleep(max(0.0, (source.next_poll_at - datetime.now(UTC)).total_seconds()) + 0.05)


def versions(result: ScanResult) -> dict[str, str]:
    return {c.ref: c.version for c in result.candidates}


def objects_in(cache: Path) -> int:
    return sum(1 for _ in pygit2.Repository(str(cache)).odb)


@pytest.fixture
def repo(tmp_path: Path) -> PackRepo:
    return PackRepo(tmp_path)


@pytest.fixture
def store(tmp_path: Path) -> SnapshotStore:
    return SnapshotStore(tmp_path / "state" / "snapshots", racy_window_ns=0)


@pytest.fixture
def make_source(tmp_path: Path, store: SnapshotStore) -> Iterator[SourceFactory]:
    """`make_source(url, branch="main", path="packs", ...)`: short intervals and timeouts."""
    made: list[GitSource] = []

    def make(url: str, *, prune: bool = True, **fields: Any) -> GitSource:
        ref = {k: fields.pop(k) for k in ("branch", "tag", "semver", "commit") if k in fields}
        if "prerelease" in fields:
            ref["prerelease"] = fields.pop("prerelease")
        config = GitSourceConfig.model_validate(
            {
                "name": "origin",
                "type": "git",
                "url": url,
                "ref": ref or {"branch": "main"},
                "path": "packs",
                "interval": 1,
                "jitter": 0,
                "timeout": 5,
                **fields,
            }
        )
        state = tmp_path / "state"
        source = GitSource(
            config, store, cache_dir=state / "git", work_dir=state / "work", prune=prune
        )
        made.append(source)
        return source

    yield make
    for source in made:
        source.close()


# the git:// and http:// cases start a server: end to end (the fast lane skips them)
SERVED = pytest.mark.e2e


@pytest.fixture(
    params=["path", "file", pytest.param("git", marks=SERVED), pytest.param("http", marks=SERVED)]
)
def url(request: pytest.FixtureRequest, repo: PackRepo) -> str:
    """The same repository reached over each transport."""
    if request.param == "path":
        return str(repo.bare)
    if request.param == "file":
        return repo.bare.as_uri()
    server = request.getfixturevalue("git_daemon" if request.param == "git" else "git_http")
    return str(server.url(repo.name))


# --- following a ref ---------------------------------------------------------------------


def test_a_branch_is_followed_over_every_transport(
    repo: PackRepo, url: str, make_source: SourceFactory, store: SnapshotStore
) -> None:
    first = publish(repo, "hello 1.0.0", pack("hello") | pack("world"))
    source = make_source(url)
    result = source.scan()
    assert result.state.readable and result.state.error is None and result.state.prune
    assert result.revision == first == source.last_revision
    assert versions(result) == {"hello": "1.0.0", "world": "1.0.0"}
    hello = {c.ref: c for c in result.candidates}["hello"]
    assert hello.source == "origin" and hello.entry == "packs/hello"
    assert hello.source_revision == first
    assert hello.snapshot.parent == store.root and hello.snapshot.name == hello.digest
    assert (hello.snapshot / "actions" / "run.sh").read_text() == "echo hello 1.0.0\n"
    assert load_pack(hello.snapshot).digest == hello.digest

    second = publish(repo, "hello 1.1.0", pack("hello", "1.1.0"))
    moved = source.scan()
    assert moved.revision == second and moved.stats["fetched"] == 1
    assert versions(moved) == {"hello": "1.1.0", "world": "1.0.0"}
    assert {c.source_revision for c in moved.candidates} == {second}


def test_an_unchanged_commit_is_not_fetched_or_exported_again(
    repo: PackRepo, git_daemon: GitDaemon, make_source: SourceFactory, tmp_path: Path
) -> None:
    publish(repo, "packs", pack("hello") | pack("world"))
    source = make_source(git_daemon.url(repo.name))
    first = source.scan()
    cache = tmp_path / "state" / "git" / "origin.git"
    objects, requests = objects_in(cache), git_daemon.requests
    started = time.perf_counter()
    again = source.scan()
    took = time.perf_counter() - started
    print(f"no-op poll over git://: {took * 1000:.1f} ms")
    assert again.candidates == first.candidates and again.revision == first.revision
    assert again.stats["fetched"] == 0 and again.stats["exported"] == 0
    assert again.stats["unchanged"] == 2
    assert git_daemon.requests == requests + 1  # the listing of refs, and nothing else
    assert objects_in(cache) == objects and source.fetches == 1


def test_only_the_packs_a_commit_changed_are_exported(
    repo: PackRepo, git_http: SmartHttpServer, make_source: SourceFactory, store: SnapshotStore
) -> None:
    publish(repo, "three packs", pack("alpha") | pack("bravo") | pack("charlie"))
    source = make_source(git_http.url(repo.name))
    first = {c.ref: c for c in source.scan().candidates}
    hashed = store.bytes_hashed
    publish(repo, "bravo 2.0.0", pack("bravo", "2.0.0"))
    result = source.scan()
    assert result.stats["exported"] == 1 and result.stats["unchanged"] == 2
    assert result.stats["snapshots_made"] == 1
    after = {c.ref: c for c in result.candidates}
    assert (
        after["alpha"].digest == first["alpha"].digest
        and after["alpha"].snapshot == first["alpha"].snapshot
    )
    assert after["alpha"].source_revision == result.revision != first["alpha"].source_revision
    assert after["bravo"].version == "2.0.0"
    assert store.bytes_hashed > hashed  # only b was read: its copy is verified too


def test_a_tag_and_a_moved_tag(
    repo: PackRepo, git_daemon: GitDaemon, make_source: SourceFactory
) -> None:
    tagged = repo.commit("1.0.0", pack("hello"))
    repo.tag("stable", annotated=True)
    repo.commit("1.1.0", pack("hello", "1.1.0"))
    repo.push("main", "--tags")
    source = make_source(git_daemon.url(repo.name), tag="stable")
    result = source.scan()
    assert result.revision == tagged  # the commit, not the annotated tag object
    assert versions(result) == {"hello": "1.0.0"}
    repo.tag("stable", annotated=True, force=True)  # moved to 1.1.0
    repo.push("--tags", force=True)
    moved = source.scan()
    assert moved.revision == repo.head() and versions(moved) == {"hello": "1.1.0"}


def test_a_missing_tag_is_an_error(
    repo: PackRepo, git_daemon: GitDaemon, make_source: SourceFactory
) -> None:
    publish(repo, "1.0.0", pack("hello"))
    result = make_source(git_daemon.url(repo.name), tag="v9").scan()
    assert not result.state.readable and result.candidates == ()
    assert result.state.error == f"{git_daemon.url(repo.name)}: tag 'v9' not found"


def tag_versions(repo: PackRepo, *names: str) -> dict[str, str]:
    """One commit per tag, carrying the tag's version; returns tag -> commit."""
    commits = {}
    for name in names:
        version = name.removeprefix("v") if name[0] in "v0123456789" else "0.0.1"
        commits[name] = repo.commit(name, pack("hello", version))
        repo.tag(name, annotated=name.endswith("0"))
    repo.push("main", "--tags")
    return commits


def test_semver_picks_the_highest_matching_tag(
    repo: PackRepo, git_http: SmartHttpServer, make_source: SourceFactory
) -> None:
    commits = tag_versions(repo, "v1.0.0", "v1.2.0", "1.5.1", "v1.9.0-rc.1", "v2.0.0", "latest")
    source = make_source(git_http.url(repo.name), semver=">=1.2 <2")
    result = source.scan()
    assert result.revision == commits["1.5.1"] and versions(result) == {"hello": "1.5.1"}
    assert source.last_ref == "refs/tags/1.5.1"
    more = tag_versions(repo, "v1.6.0", "v2.1.0", "v1.7.0-beta.1")
    assert source.scan().revision == more["v1.6.0"]  # a new tag in range is followed
    # the comma spelling is the same range
    comma = make_source(git_http.url(repo.name), semver=">=1.2,<2").scan()
    assert comma.revision == more["v1.6.0"]


def test_semver_pre_releases_only_when_asked(
    repo: PackRepo, git_daemon: GitDaemon, make_source: SourceFactory
) -> None:
    commits = tag_versions(repo, "v1.2.0", "v1.9.0-rc.1", "v2.0.0-rc.1")
    url = git_daemon.url(repo.name)
    assert make_source(url, semver=">=1.2 <2").scan().revision == commits["v1.2.0"]
    for spelling in (">=1.2 <2", ">=1.2,<2"):
        chosen = make_source(url, semver=spelling, prerelease=True).scan()
        assert chosen.revision == commits["v1.9.0-rc.1"], spelling  # 2.0.0-rc.1 is not < 2
    assert make_source(url, semver="*", prerelease=True).scan().revision == commits["v2.0.0-rc.1"]


def test_no_tag_in_range_is_an_error(
    repo: PackRepo, git_daemon: GitDaemon, make_source: SourceFactory
) -> None:
    tag_versions(repo, "v1.0.0", "v3.0.0-rc.1")
    result = make_source(git_daemon.url(repo.name), semver="^3").scan()
    assert not result.state.readable and result.candidates == ()
    assert result.state.error == (
        f"{git_daemon.url(repo.name)}: no tag matches '^3' (pre-releases excluded)"
    )


@pytest.mark.parametrize("digits", [40, 7])
def test_a_commit_pin_needs_the_network_once(
    repo: PackRepo, git_daemon: GitDaemon, make_source: SourceFactory, digits: int
) -> None:
    pinned = repo.commit("1.0.0", pack("hello"))
    publish(repo, "1.1.0", pack("hello", "1.1.0"))
    git("checkout", "-q", "-b", "side", pinned, cwd=repo.work)
    repo.commit("on a side branch", pack("side"))
    repo.push("side")
    source = make_source(git_daemon.url(repo.name), commit=pinned[:digits].upper())
    result = source.scan()
    assert result.revision == pinned and versions(result) == {"hello": "1.0.0"}
    requests = git_daemon.requests
    repo.commit("more", pack("hello", "2.0.0"))
    repo.push("side")
    again = source.scan()
    assert again.revision == pinned and again.stats["fetched"] == 0
    assert git_daemon.requests == requests  # a commit never changes: nothing to ask


def test_a_pin_to_history_a_shallow_cache_lacks(
    repo: PackRepo, git_daemon: GitDaemon, make_source: SourceFactory, tmp_path: Path
) -> None:
    """The source switched from a branch to an older commit: the shallow cache deepens."""
    old = publish(repo, "1.0.0", pack("hello"))
    publish(repo, "1.1.0", pack("hello", "1.1.0"))
    make_source(git_daemon.url(repo.name)).scan()
    assert pygit2.Repository(str(tmp_path / "state" / "git" / "origin.git")).is_shallow
    pinned = make_source(git_daemon.url(repo.name), commit=old[:10]).scan()
    assert pinned.revision == old and versions(pinned) == {"hello": "1.0.0"}


def test_a_server_refusing_shallow_fetches_is_fetched_whole(
    repo: PackRepo, make_source: SourceFactory
) -> None:
    publish(repo, "1.0.0", pack("hello"))
    source = make_source(repo.bare.as_uri())
    source._remote.depth = 1  # libgit2's local transport refuses shallow, as some servers do
    assert versions(source.scan()) == {"hello": "1.0.0"}
    assert source._remote.depth == 0  # and it is not asked for again
    publish(repo, "1.1.0", pack("hello", "1.1.0"))
    assert versions(source.scan()) == {"hello": "1.1.0"}


def test_a_commit_on_no_branch_or_tag_is_an_error(
    repo: PackRepo, make_source: SourceFactory
) -> None:
    publish(repo, "1.0.0", pack("hello"))
    result = make_source(str(repo.bare), commit="0123456789abcdef").scan()
    assert not result.state.readable
    assert result.state.error == f"{repo.bare}: commit 0123456789abcdef is on no branch or tag"


# --- what the path holds -----------------------------------------------------------------


def test_path_may_be_one_pack(repo: PackRepo, make_source: SourceFactory) -> None:
    publish(repo, "packs", pack("hello") | pack("world"))
    result = make_source(str(repo.bare), path="/packs/world/").scan()
    assert [(c.ref, c.entry) for c in result.candidates] == [("world", "packs/world")]


def test_the_repository_root_may_be_one_pack(repo: PackRepo, make_source: SourceFactory) -> None:
    repo.commit("a pack repo", pack("hello", under=""))
    publish(repo, "a root pack", {"pack.yaml": manifest("root"), "README.md": "hi\n"})
    result = make_source(str(repo.bare), path="").scan()
    assert [(c.ref, c.entry) for c in result.candidates] == [("root", ".")]
    folder = make_source(str(repo.bare), path="hello").scan()
    assert [(c.ref, c.entry) for c in folder.candidates] == [("hello", "hello")]


@pytest.mark.parametrize(
    ("path", "error"),
    [
        ("nowhere", "'nowhere' does not exist at commit"),
        ("README.md", "'README.md' is a file, not a folder, at commit"),
        ("docs", "no pack in 'docs' at commit"),
    ],
)
def test_a_path_without_packs_is_an_error_not_an_empty_source(
    repo: PackRepo, make_source: SourceFactory, path: str, error: str
) -> None:
    publish(repo, "packs", pack("hello") | {"README.md": "x\n", "docs/guide/intro.md": "x\n"})
    result = make_source(str(repo.bare), path=path).scan()
    assert not result.state.readable and result.candidates == () and result.invalid == ()
    assert result.state.error is not None and error in result.state.error
    assert repo.head() in result.state.error


def test_one_broken_pack_among_several(
    repo: PackRepo, git_daemon: GitDaemon, make_source: SourceFactory
) -> None:
    publish(repo, "three packs", pack("alpha") | pack("bravo") | pack("charlie"))
    source = make_source(git_daemon.url(repo.name))
    assert versions(source.scan()) == {"alpha": "1.0.0", "bravo": "1.0.0", "charlie": "1.0.0"}
    repo.commit("break bravo", {"packs/bravo/pack.yaml": "ref: bravo\nversion: 1.1\nlabel: [\n"})
    publish(repo, "alpha 1.1.0", pack("alpha", "1.1.0"))
    result = source.scan()
    assert result.state.readable
    assert versions(result) == {"alpha": "1.1.0", "charlie": "1.0.0"}
    [broken] = result.invalid
    assert broken.entry == "packs/bravo" and broken.source == "origin"
    assert broken.ref_hint == "bravo"
    assert broken.problems and all(p.startswith("packs/bravo/pack.yaml") for p in broken.problems)
    publish(repo, "fix bravo", pack("bravo", "1.1.0"))
    fixed = source.scan()
    assert fixed.invalid == () and versions(fixed) == {
        "alpha": "1.1.0",
        "bravo": "1.1.0",
        "charlie": "1.0.0",
    }


# --- history rewrites and failures -------------------------------------------------------


def test_a_force_push_is_followed(
    repo: PackRepo, git_http: SmartHttpServer, make_source: SourceFactory
) -> None:
    base = repo.commit("1.0.0", pack("hello"))
    publish(repo, "1.1.0", pack("hello", "1.1.0"))
    source = make_source(git_http.url(repo.name))
    assert versions(source.scan()) == {"hello": "1.1.0"}
    git("reset", "-q", "--hard", base, cwd=repo.work)
    rewritten = repo.commit("1.0.1 instead", pack("hello", "1.0.1"))
    repo.push("main", force=True)
    result = source.scan()
    assert result.revision == rewritten and versions(result) == {"hello": "1.0.1"}


def test_a_deleted_branch_is_an_error_and_backs_off(
    repo: PackRepo, git_daemon: GitDaemon, make_source: SourceFactory
) -> None:
    repo.commit("1.0.0", pack("hello"))
    good = repo.commit("1.0.0", pack("world"))
    repo.push("main", "main:release")
    source = make_source(git_daemon.url(repo.name), branch="release")
    assert source.scan().revision == good
    repo.push(":release")
    before = datetime.now(UTC)
    result = source.scan()
    assert not result.state.readable and result.candidates == () and result.invalid == ()
    assert result.state.prune is True  # unreadable: the planner prunes nothing anyway
    assert result.state.error == (
        f"{git_daemon.url(repo.name)}: branch 'release' not found (deleted or renamed?)"
    )
    since = source.error_since
    assert since is not None and since >= before
    assert source.last_revision == good and source.failures == 1

    requests = git_daemon.requests
    assert source.scan() is result  # inside the backoff: the same answer, no network
    assert git_daemon.requests == requests
    wait_for_next_poll(source)
    second = source.scan()
    assert git_daemon.requests == requests + 1 and source.failures == 2
    wait = (source.next_poll_at - datetime.now(UTC)).total_seconds()
    assert 1.5 < wait <= 2.0  # twice the interval
    assert source.error_since == since  # when the run of failures began

    revived = repo.commit("release again", pack("hello", "1.2.0"))
    repo.push("main:release")
    source.retry_now()  # what `attuned trigger` does
    back = source.scan()
    assert back.state.readable and back.revision == revived and second.state.error
    assert source.error_since is None and source.failures == 0


def test_backoff_grows_and_is_capped() -> None:
    assert [backoff(60, n) for n in (1, 2, 3, 4, 5, 6)] == [60, 120, 240, 480, 600, 600]
    assert backoff(600, 9) == 3600  # an hour at most
    assert backoff(7200, 3) == 7200  # never sooner than the interval itself


def test_a_stopped_server_then_a_restarted_one(
    repo: PackRepo, git_daemon: GitDaemon, make_source: SourceFactory
) -> None:
    publish(repo, "1.0.0", pack("hello"))
    source = make_source(git_daemon.url(repo.name))
    served = source.scan()
    git_daemon.stop()
    pushed = publish(repo, "1.1.0", pack("hello", "1.1.0"))
    down = source.scan()
    assert not down.state.readable and down.candidates == ()
    assert down.state.error is not None and "refused" in down.state.error
    assert source.last_revision == served.revision
    git_daemon.start()
    requests = git_daemon.requests
    assert source.scan().state.error == down.state.error  # still inside the backoff
    assert git_daemon.requests == requests
    wait_for_next_poll(source)
    up = source.scan()
    assert up.state.readable and up.revision == pushed and versions(up) == {"hello": "1.1.0"}
    assert source.error_since is None


def test_a_server_that_dies_between_listing_and_fetching(
    repo: PackRepo, git_http: SmartHttpServer, make_source: SourceFactory
) -> None:
    first = publish(repo, "1.0.0", pack("hello"))
    source = make_source(git_http.url(repo.name))
    assert source.scan().revision == first
    pushed = publish(repo, "1.1.0", pack("hello", "1.1.0"))
    git_http.drop_fetches = True
    result = source.scan()
    assert not result.state.readable and result.candidates == ()
    assert result.state.error is not None
    assert result.state.error.startswith(git_http.url(repo.name) + ": ")
    assert git_http.log[-1].startswith("POST") and source.last_revision == first
    git_http.drop_fetches = False
    source.retry_now()
    assert source.scan().revision == pushed


@pytest.mark.parametrize("scheme", ["git", "http"])
def test_a_silent_server_times_out(make_source: SourceFactory, scheme: str) -> None:
    raise_socket_timeouts(5)  # as another source with a longer timeout would
    silent = SilentServer()
    url = silent.url(scheme, "packs.git")
    try:
        source = make_source(url, timeout=0.5)
        started = time.monotonic()
        result = source.scan()
        took = time.monotonic() - started
        assert result.state.error == f"{url}: timed out after 0.5 s" and result.candidates == ()
        assert 0.45 < took < 1.0
        source.retry_now()
        # the abandoned poll still waits on its socket: no second fetch into the same cache
        busy = source.scan().state.error
        assert busy == f"{url}: the previous poll timed out and is still running"
    finally:
        silent.close()  # resets the waiting connection: the abandoned poll ends
    deadline = time.monotonic() + 5
    while "still running" in (source.scan().state.error or "") and time.monotonic() < deadline:
        time.sleep(0.05)
        source.retry_now()
    assert "still running" not in (source.scan().state.error or "")


# --- credentials and redaction -----------------------------------------------------------


@pytest.fixture
def private(repo: PackRepo) -> Iterator[SmartHttpServer]:
    server = SmartHttpServer(repo.bare.parent, auth=("bob", SECRET))
    server.start()
    yield server
    server.stop()


def secret_file(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / "secrets" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


def test_basic_auth_with_a_password_file(
    repo: PackRepo, private: SmartHttpServer, make_source: SourceFactory, tmp_path: Path
) -> None:
    publish(repo, "1.0.0", pack("hello"))
    url = private.url(repo.name)
    right = secret_file(tmp_path, "right", SECRET)
    good = make_source(url, credentials={"username": "bob", "password_file": str(right)})
    assert versions(good.scan()) == {"hello": "1.0.0"}

    wrong = secret_file(tmp_path, "wrong", "not-" + SECRET)
    refused = make_source(url, credentials={"username": "bob", "password_file": str(wrong)})
    error = refused.scan().state.error
    assert error == f"{url}: authentication failed as 'bob': check the credentials"

    anonymous = make_source(url).scan().state.error
    assert anonymous == f"{url}: the server asks for credentials and none are configured"

    missing = make_source(
        url, credentials={"username": "bob", "password_file": str(tmp_path / "gone")}
    )
    assert missing.scan().state.error == (
        f"{url}: cannot read {tmp_path / 'gone'}: No such file or directory"
    )


def test_a_token_file_and_a_rotated_secret(
    repo: PackRepo, tmp_path: Path, make_source: SourceFactory
) -> None:
    publish(repo, "1.0.0", pack("hello"))
    server = SmartHttpServer(repo.bare.parent, auth=("x-access-token", SECRET))
    server.start()
    try:
        token = secret_file(tmp_path, "token", "old-token")
        source = make_source(server.url(repo.name), credentials={"token_file": str(token)})
        assert "authentication failed" in (source.scan().state.error or "")
        token.write_text(SECRET + "\n")  # rotated on disk: read again at the next poll
        source.retry_now()
        assert versions(source.scan()) == {"hello": "1.0.0"}
    finally:
        server.stop()


def test_no_secret_reaches_an_error(
    repo: PackRepo, private: SmartHttpServer, make_source: SourceFactory, tmp_path: Path
) -> None:
    publish(repo, "1.0.0", pack("hello"))
    wrong = secret_file(tmp_path, "wrong", SECRET + "-typo")
    url = private.url(repo.name, user="bob")
    source = make_source(url, credentials={"username": "bob", "password_file": str(wrong)})
    result = source.scan()
    assert result.state.error is not None and SECRET not in result.state.error
    assert SECRET not in repr(result) and SECRET not in repr(source.config)


def test_redact_hides_passwords_in_urls_and_messages() -> None:
    assert redact("https://user:secret@host/x") == "https://user:***@host/x"
    assert redact("https://user@host/x") == "https://user@host/x"
    assert redact("git@github.com:org/packs.git") == "git@github.com:org/packs.git"
    assert redact("ssh://git:pw@h:22/x and http://a:b@c/d failed") == (
        "ssh://git:***@h:22/x and http://a:***@c/d failed"
    )


@pytest.mark.skipif(not SSHD.exists(), reason="needs sshd (apt-get install openssh-server)")
def test_ssh_with_a_key_and_known_hosts(
    repo: PackRepo, make_source: SourceFactory, tmp_path: Path
) -> None:
    publish(repo, "1.0.0", pack("hello"))
    server = SshServer(tmp_path / "sshd")
    server.start()
    try:
        known = secret_file(tmp_path, "known_hosts", server.known_hosts_line)
        creds = {"ssh_key_file": str(server.client_key), "known_hosts_file": str(known)}
        source = make_source(server.url(repo.bare), credentials=creds)
        result = source.scan()
        assert result.state.error is None and versions(result) == {"hello": "1.0.0"}
        source.close()  # its host key is no longer trusted
        impostor = tmp_path / "impostor"
        git_keygen = ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(impostor)]
        subprocess.run(git_keygen, check=True)
        kind, key = impostor.with_suffix(".pub").read_text().split()[:2]
        known.write_text(f"[127.0.0.1]:{server.port} {kind} {key}\n")
        stranger = make_source(server.url(repo.bare), credentials=creds).scan()
        assert stranger.state.error is not None
        assert "could not be verified" in stranger.state.error
    finally:
        server.stop()


# --- refresh=False, restarts, garbage ----------------------------------------------------


def test_refresh_false_answers_without_the_network(
    repo: PackRepo, git_daemon: GitDaemon, make_source: SourceFactory
) -> None:
    first = publish(repo, "1.0.0", pack("hello"))
    source = make_source(git_daemon.url(repo.name))
    assert source.scan(refresh=False).revision == first  # nothing yet: the first poll
    requests = git_daemon.requests
    publish(repo, "1.1.0", pack("hello", "1.1.0"))
    cached = source.scan(refresh=False)
    assert cached.revision == first and cached.stats["fetched"] == 0
    assert git_daemon.requests == requests
    assert source.scan().revision == repo.head()


def test_a_restarted_daemon_reuses_its_cache(
    repo: PackRepo, git_daemon: GitDaemon, make_source: SourceFactory
) -> None:
    publish(repo, "1.0.0", pack("hello"))
    assert make_source(git_daemon.url(repo.name)).scan().stats["fetched"] == 1
    again = make_source(git_daemon.url(repo.name)).scan()
    assert again.stats["fetched"] == 0 and versions(again) == {"hello": "1.0.0"}


def test_another_url_starts_a_fresh_cache(
    repo: PackRepo, tmp_path: Path, make_source: SourceFactory
) -> None:
    publish(repo, "1.0.0", pack("hello"))
    make_source(str(repo.bare)).scan()
    other = PackRepo(tmp_path / "other")
    other.commit("other", pack("world"))
    other.push("main")
    result = make_source(str(other.bare)).scan()
    assert versions(result) == {"world": "1.0.0"} and result.stats["fetched"] == 1


@pytest.mark.parametrize("transport", ["path", pytest.param("git", marks=SERVED)])
def test_garbage_collection_keeps_the_current_commit_only(
    repo: PackRepo,
    make_source: SourceFactory,
    tmp_path: Path,
    transport: str,
    request: pytest.FixtureRequest,
) -> None:
    daemon = request.getfixturevalue("git_daemon") if transport == "git" else None
    url = daemon.url(repo.name) if daemon else str(repo.bare)
    source = make_source(url)
    for minor in range(4):
        publish(repo, f"1.{minor}.0", pack("hello", f"1.{minor}.0") | pack(f"p{minor}"))
        source.scan()
    cache = tmp_path / "state" / "git" / "origin.git"
    (tmp_path / "state" / "work" / "origin" / "left-by-a-crash").mkdir(parents=True)
    collected = source.collect_garbage()
    assert collected is not None and collected.objects_after < collected.objects_before
    assert collected.objects_after == objects_in(cache)
    assert len(list((cache / "objects" / "pack").glob("*.pack"))) == 1
    assert not (tmp_path / "state" / "work" / "origin").exists()
    assert source.collect_garbage() == type(collected)(0, objects_in(cache), objects_in(cache))
    kept = source.scan()
    assert kept.stats["fetched"] == 0 and versions(kept)["hello"] == "1.3.0"
    publish(repo, "1.4.0", pack("hello", "1.4.0"))
    assert versions(source.scan())["hello"] == "1.4.0"  # the collected cache fetches on


# --- configuration -----------------------------------------------------------------------


def config(**fields: Any) -> GitSourceConfig:
    data = {"name": "origin", "type": "git", "url": "https://git.example.com/packs.git"}
    return GitSourceConfig.model_validate(data | {"ref": {"branch": "main"}} | fields)


def refused(**fields: Any) -> str:
    with pytest.raises(ValidationError) as caught:
        config(**fields)
    return "\n".join(e["msg"] for e in caught.value.errors())


def test_config_defaults() -> None:
    made = config(interval=30)
    assert (made.interval, made.jitter, made.timeout) == (30, 3, 60)
    assert made.path == "" and made.prune is None and made.credentials is None
    assert not made.skip_tests and not made.force
    assert str(config(ref={"semver": ">=1.2 <2", "prerelease": True}).ref) == (
        "semver >=1.2 <2 (with pre-releases)"
    )
    assert config(path="./packs/").path == "packs"
    assert config(ref={"commit": "ABCDEF0"}).ref.commit == "abcdef0"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"ref": {}}, "exactly one of branch, tag, semver, commit (got none)"),
        ({"ref": {"branch": "a", "tag": "b"}}, "(got branch, tag)"),
        ({"ref": {"branch": "a", "prerelease": True}}, "prerelease only applies to a semver"),
        ({"ref": {"semver": ">>1"}}, "'>>1' is not a version constraint"),
        ({"ref": {"commit": "abc"}}, "not a commit sha (7 to 40 hexadecimal digits)"),
        ({"ref": {"branch": "a..b"}}, "not a valid git branch or tag name"),
        ({"ref": {"tag": "refs/tags/v1"}}, "without refs/heads/ or refs/tags/"),
        ({"path": "../elsewhere"}, "must stay inside the repository"),
        ({"url": "ftp://example.com/x.git"}, "unsupported URL scheme 'ftp'"),
        ({"url": "git@github.com:org/packs.git"}, "an ssh URL needs credentials.ssh_key_file"),
        ({"interval": 0}, "greater than 0"),
        ({"name": "Bad Name"}, "is not a valid ref"),
    ],
)
def test_config_refusals(fields: dict[str, Any], message: str) -> None:
    assert message in refused(**fields)


def test_secrets_are_refused_inline_and_in_urls() -> None:
    message = refused(credentials={"username": "bob", "password": SECRET})
    assert "credentials.password: secrets are not accepted inline" in message
    assert "set credentials.password_file" in message and SECRET not in message
    assert "credentials.token_file" in refused(credentials={"token": SECRET})
    in_url = refused(url=f"https://bob:{SECRET}@git.example.com/x.git")
    assert "https://bob:***@git.example.com/x.git: a password in the URL is refused" in in_url
    assert SECRET not in in_url
    assert "needs credentials.known_hosts_file" in refused(
        url="ssh://git@h/x.git", credentials={"ssh_key_file": "/k"}
    )
    assert "needs credentials.username" in refused(credentials={"password_file": "/p"})
    assert "only applies to an http(s)" in refused(
        url="git://h/x.git", credentials={"token_file": "/t"}
    )
    ssh = config(
        url="git@github.com:org/packs.git",
        credentials={"ssh_key_file": "/k", "known_hosts_file": "/kh"},
    )
    assert ssh.transport == "ssh" and ssh.credentials is not None
    assert ssh.credentials.kind == "ssh"
