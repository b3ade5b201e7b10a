"""Talking to a git server: list its refs, fetch the wanted commit, within a deadline.

libgit2 has no per-call timeout, so a poll runs on its own thread and the caller stops waiting
at `timeout`; the thread is told to stop (every libgit2 callback checks the deadline) and the
socket timeouts (process-wide in libgit2, raised to the largest `timeout` of any source) end
it if the server sends nothing at all. Until that thread is gone, no new poll starts, so two
fetches never write the same cache at once.

Secrets are read from their files when a server asks for them, never kept. Host keys: libgit2
checks ssh servers against `<home>/.ssh/known_hosts`, and its home is process-wide too; every
ssh source's `known_hosts_file` is merged into one file there (see `git_hostkeys`).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pygit2
import semantic_version
from pygit2.enums import CredentialType

from attuned.pack.versions import Constraint
from attuned.reconcile.sources import git_hostkeys
from attuned.settings.git import (
    DEFAULT_TOKEN_USER,
    GitCredentials,
    GitRef,
    GitSourceConfig,
    redact,
)

UNSHALLOW = 2_147_483_647  # libgit2's GIT_FETCH_DEPTH_UNSHALLOW
_PEELED = "^{}"
_socket_lock = threading.Lock()
T = TypeVar("T")


class RemoteError(Exception):
    """Why a poll failed, in one line fit for the status file (no secret, URL redacted)."""


@dataclass(frozen=True)
class Polled:
    """What one poll found: the ref that names the wanted commit, and whether it was fetched."""

    refname: str  # e.g. refs/heads/main, refs/tags/v1.2.0; "" for a commit pin
    commit: pygit2.Oid
    fetched: bool
    received_objects: int = 0
    tag: pygit2.Oid | None = None  # an annotated tag's own object, when `refname` is one


def raise_socket_timeouts(seconds: float) -> None:
    """Make libgit2's socket timeouts at least `seconds` (0, its default, waits forever)."""
    ms = max(1, int(seconds * 1000))
    with _socket_lock:
        if pygit2.settings.server_connect_timeout < ms:
            pygit2.settings.server_connect_timeout = ms
        if pygit2.settings.server_timeout < ms:
            pygit2.settings.server_timeout = ms


class Deadline:
    """When a poll must give up; `cancel()` makes every later check fail at once."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds
        self._cancelled = threading.Event()

    def cancel(self) -> None:
        self._cancelled.set()

    def check(self) -> None:
        if self._cancelled.is_set() or time.monotonic() > self.at:
            raise RemoteError(f"timed out after {self.seconds:g} s")


class _Callbacks(pygit2.RemoteCallbacks):
    """Credentials from files, strict host key checks, and the deadline at every step."""

    def __init__(self, credentials: GitCredentials | None, deadline: Deadline) -> None:
        super().__init__()
        self._creds = credentials
        self._deadline = deadline
        self._offered = False

    def credentials(
        self, url: str, username_from_url: str | None, allowed_types: CredentialType
    ) -> pygit2.Username | pygit2.UserPass | pygit2.Keypair:
        self._deadline.check()
        creds = self._creds
        if creds is None:
            raise RemoteError("the server asks for credentials and none are configured")
        user = username_from_url or creds.username
        if allowed_types == CredentialType.USERNAME:  # ssh asks for the user name first
            return pygit2.Username(user or "git")
        if self._offered:  # libgit2 asks again when the server refused the first answer
            raise RemoteError(f"authentication failed as {user or 'git'!r}: check the credentials")
        self._offered = True
        if creds.ssh_key_file is not None and allowed_types & CredentialType.SSH_KEY:
            return pygit2.Keypair(user or "git", None, str(creds.ssh_key_file), "")
        secret_file = creds.password_file or creds.token_file
        if secret_file is not None and allowed_types & CredentialType.USERPASS_PLAINTEXT:
            name = creds.username or DEFAULT_TOKEN_USER
            return pygit2.UserPass(name, read_secret(secret_file))
        raise RemoteError(f"the server wants credentials of another kind ({allowed_types!r})")

    def certificate_check(self, certificate: None, valid: bool, host: bytes) -> bool:
        self._deadline.check()
        if not valid:
            raise RemoteError(
                f"the identity of {host.decode(errors='replace')} could not be verified "
                "(TLS certificate, or ssh host key not in known_hosts_file)"
            )
        return True

    def transfer_progress(self, stats: pygit2.remotes.TransferProgress) -> None:
        self._deadline.check()

    def sideband_progress(self, string: str) -> None:
        self._deadline.check()


def read_secret(path: Path) -> str:
    """The first line of a secret file, read now so a rotated secret is used at once."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RemoteError(f"cannot read {path}: {exc.strerror or exc}") from None
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise RemoteError(f"{path} is empty")
    return lines[0].strip()


def advertised(heads: Iterable[Any]) -> dict[str, pygit2.Oid]:
    """Ref name → the commit it names; an annotated tag is peeled (its `^{}` entry)."""
    refs: dict[str, pygit2.Oid] = {}
    peeled: dict[str, pygit2.Oid] = {}
    for head in heads:
        name = head.name or ""
        if name.endswith(_PEELED):
            peeled[name.removesuffix(_PEELED)] = head.oid
        elif name.startswith("refs/"):
            refs[name] = head.oid
    return {name: peeled.get(name, oid) for name, oid in refs.items()}


def tag_version(refname: str) -> semantic_version.Version | None:
    """`refs/tags/v1.2.3` or `refs/tags/1.2.3` → 1.2.3; None for other tags."""
    name = refname.removeprefix("refs/tags/").removeprefix("v")
    try:
        return semantic_version.Version(name)
    except ValueError:
        return None


def semver_matches(text: str, version: semantic_version.Version, prerelease: bool) -> bool:
    """Whether a tag's version is in the range; pre-releases only when asked for.

    npm-style ranges (`>=1.2 <2`) never match pre-releases of other versions, so with
    `prerelease` the range is read as its comma form (`>=1.2,<2`), which does.
    """
    if version.prerelease and not prerelease:
        return False
    constraint = Constraint(text)
    if version.prerelease and " " in text.strip() and "," not in text:
        with contextlib.suppress(ValueError):  # not a plain list of comparators: npm's reading
            constraint = Constraint(",".join(text.split()))
    return constraint.allows(str(version))


def resolve(ref: GitRef, refs: dict[str, pygit2.Oid]) -> tuple[str, pygit2.Oid]:
    """The ref name and commit a branch/tag/semver ref points to on the server."""
    if ref.branch is not None:
        name = f"refs/heads/{ref.branch}"
        if name not in refs:
            raise RemoteError(f"branch {ref.branch!r} not found (deleted or renamed?)")
        return name, refs[name]
    if ref.tag is not None:
        name = f"refs/tags/{ref.tag}"
        if name not in refs:
            raise RemoteError(f"tag {ref.tag!r} not found")
        return name, refs[name]
    assert ref.semver is not None
    found = []
    for name in refs:
        version = tag_version(name) if name.startswith("refs/tags/") else None
        if version is not None and semver_matches(ref.semver, version, ref.prerelease):
            found.append((version, name))
    if not found:
        scope = "" if ref.prerelease else " (pre-releases excluded)"
        raise RemoteError(f"no tag matches {ref.semver!r}{scope}")
    _, name = max(found)
    return name, refs[name]


class GitRemote:
    """One source's server, fetched into its bare cache repository."""

    def __init__(self, config: GitSourceConfig, cache: Path) -> None:
        self.config = config
        self.cache = cache
        self.url = os.path.abspath(config.url) if _local_path(config) else config.url
        # libgit2's local transport cannot fetch shallow; a server may refuse it too
        self.depth = 0 if config.transport == "local" else 1
        self.calls = 0  # polls that talked to the server (connect or fetch)
        self.fetches = 0
        self._straggler: threading.Thread | None = None
        raise_socket_timeouts(config.timeout)

    @property
    def busy(self) -> bool:
        """A poll that timed out is still running: the cache must be left alone."""
        return self._straggler is not None and self._straggler.is_alive()

    def poll(self) -> Polled:
        """Ask the server where the ref points; fetch only a commit the cache lacks."""
        return self._within_deadline(self._poll)

    def fetch_everything(self) -> int:
        """Fetch every branch and tag with full history: a short commit sha is looked up in it."""
        return self._within_deadline(self._fetch_everything)

    def _within_deadline(self, work: Callable[[Deadline], T]) -> T:
        if self.busy:
            raise RemoteError(
                f"{self.config.shown_url}: the previous poll timed out and is still running"
            )
        if self.config.transport == "ssh":
            git_hostkeys.refresh()
        deadline = Deadline(self.config.timeout)
        outcome: list[T | BaseException] = []

        def run() -> None:
            try:
                outcome.append(work(deadline))
            except BaseException as exc:  # handed to the caller's thread
                outcome.append(exc)

        self.calls += 1
        thread = threading.Thread(target=run, name=f"git-poll-{self.config.name}", daemon=True)
        thread.start()
        thread.join(self.config.timeout)
        if thread.is_alive():
            deadline.cancel()
            self._straggler = thread
            raise RemoteError(f"{self.config.shown_url}: timed out after {self.config.timeout:g} s")
        [result] = outcome
        if isinstance(result, BaseException):
            raise RemoteError(f"{self.config.shown_url}: {describe(result)}") from None
        return result

    def _poll(self, deadline: Deadline) -> Polled:
        repo = pygit2.Repository(str(self.cache))
        remote = repo.remotes.create_anonymous(self.url)
        callbacks = _Callbacks(self.config.credentials, deadline)
        remote.connect(callbacks=callbacks)
        heads = list(remote.list_heads(connect=False))
        refname, commit = resolve(self.config.ref, advertised(heads))
        tag = _tag_object(heads, refname, commit)
        if _has_commit(repo, commit) and (tag is None or tag in repo):
            return Polled(refname, commit, fetched=False, tag=tag)
        received = self._fetch(remote, [f"+{refname}:{refname}"], callbacks, deadline)
        # a push between the listing and the fetch: the ref as fetched is the newer truth
        ref = repo.references[refname]
        fetched = ref.peel(pygit2.Commit).id
        tagged = repo.get(ref.target)
        tag = tagged.id if isinstance(tagged, pygit2.Tag) else None
        return Polled(refname, fetched, fetched=True, received_objects=received, tag=tag)

    def _fetch_everything(self, deadline: Deadline) -> int:
        repo = pygit2.Repository(str(self.cache))
        remote = repo.remotes.create_anonymous(self.url)
        callbacks = _Callbacks(self.config.credentials, deadline)
        specs = ["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"]
        depth = UNSHALLOW if repo.is_shallow else 0
        self.fetches += 1
        return remote.fetch(specs, callbacks=callbacks, depth=depth).received_objects

    def _fetch(
        self,
        remote: pygit2.Remote,
        specs: list[str],
        callbacks: _Callbacks,
        deadline: Deadline,
    ) -> int:
        self.fetches += 1
        try:
            return remote.fetch(specs, callbacks=callbacks, depth=self.depth).received_objects
        except pygit2.GitError as exc:
            if self.depth == 0 or "shallow" not in str(exc).lower():
                raise
        self.depth = 0  # this server cannot do shallow: fetch whole history from now on
        callbacks = _Callbacks(self.config.credentials, deadline)
        return remote.fetch(specs, callbacks=callbacks, depth=0).received_objects


def _tag_object(heads: Iterable[Any], refname: str, commit: pygit2.Oid) -> pygit2.Oid | None:
    """The annotated tag object `refname` names (its listing differs from the peeled commit)."""
    if not refname.startswith("refs/tags/"):
        return None
    listed = next((h.oid for h in heads if h.name == refname), None)
    return listed if listed is not None and listed != commit else None


def _has_commit(repo: pygit2.Repository, oid: pygit2.Oid) -> bool:
    return isinstance(repo.get(oid), pygit2.Commit)


def _local_path(config: GitSourceConfig) -> bool:
    """A path, not a URL: made absolute at start, before the working directory can change."""
    return config.transport == "local" and "://" not in config.url


def describe(exc: BaseException) -> str:
    """One line, secrets redacted, for an error from libgit2 or from the callbacks."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, pygit2.GitError | RemoteError | OSError):
        return redact(text)
    return redact(f"{type(exc).__name__}: {text}")
