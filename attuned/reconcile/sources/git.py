"""A git repository as a source: the packs of the one commit its `ref` names now.

A poll lists the server's refs (one round trip) and fetches only when that commit is not in the
cache already; packs whose folder did not change are not exported again. Any failure (a
deleted branch, a missing tag, no tag in range, an unreachable host, refused credentials, a
timeout) is an unreadable result, never an empty one, so nothing is pruned; it is answered
again without network until an exponential backoff has passed.

With `verify:`, the commit a poll finds is checked (git_verify) before any file of it is read:
one not signed by an allowed key is held. The source answers its last verified result again,
readable and unchanged, with the reason as its error (or, with none yet, is unreadable).
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pygit2

from attuned.reconcile.model import SourceState
from attuned.reconcile.snapshots import SnapshotStore
from attuned.reconcile.sources import git_hostkeys
from attuned.reconcile.sources.base import ScanResult, Source
from attuned.reconcile.sources.git_cache import Cache, Collected
from attuned.reconcile.sources.git_export import ExportError, PackExporter
from attuned.reconcile.sources.git_remote import GitRemote, Polled, RemoteError, describe
from attuned.reconcile.sources.git_verify import Unverified, Verdict, Verifier
from attuned.settings.git import UNSIGNED, GitSourceConfig

BACKOFF_CAP = 3600.0  # seconds: an hour at most between retries of a failing source
BACKOFF_INTERVALS = 10  # ... and at most ten intervals


def backoff(interval: float, failures: int) -> float:
    """Seconds to wait after the n-th failure in a row: interval, 2x, 4x, ... up to the cap."""
    cap = max(interval, min(BACKOFF_INTERVALS * interval, BACKOFF_CAP))
    return float(min(interval * 2 ** min(failures - 1, 32), cap))


class GitSource:
    """One `type: git` source: poll, fetch into the bare cache, export, snapshot."""

    def __init__(
        self,
        config: GitSourceConfig,
        snapshots: SnapshotStore,
        *,
        cache_dir: Path,
        work_dir: Path,
        prune: bool,
    ) -> None:
        # the daemon's user may not own a cache it finds (a restored backup, a new unit user)
        pygit2.settings.owner_validation = False
        self.name = config.name
        self.config = config
        self.prune = prune
        self.error_since: datetime | None = None  # when the current run of failures began
        self.next_poll_at: datetime | None = None  # when the daemon should poll next
        self.last_revision: str | None = None  # the commit of the last readable result
        self.last_ref: str | None = None  # what named it, e.g. refs/tags/v1.5.1 for a range
        self.failures = 0  # in a row
        self._cache = Cache(cache_dir / f"{config.name}.git", config.url)
        self._remote = GitRemote(config, self._cache.path)
        self._exporter = PackExporter(config.name, snapshots, work_dir)
        self._lock = threading.Lock()
        self._last: ScanResult | None = None
        self._error: ScanResult | None = None  # while failing: answered until _retry_at
        self._retry_at = 0.0  # time.monotonic()
        self.unverified: Unverified | None = None  # the commit held now, and why
        self.verifier = None
        if config.verify is not None:
            self.verifier = Verifier(config.verify, home=cache_dir / f"{config.name}.trust")
        creds = config.credentials
        if creds is not None and creds.known_hosts_file is not None:
            git_hostkeys.register(config.name, creds.known_hosts_file, cache_dir / ".ssh-home")

    @property
    def calls(self) -> int:
        """Polls that went to the server (not those answered from the backoff or the cache)."""
        return self._remote.calls

    @property
    def fetches(self) -> int:
        return self._remote.fetches

    def scan(self, *, refresh: bool = True) -> ScanResult:
        """The packs of the wanted commit; `refresh=False` answers without the network."""
        with self._lock:
            if self._error is not None and (not refresh or time.monotonic() < self._retry_at):
                return self._error
            if not refresh and self._last is not None and _still_there(self._last):
                return _again(self._last)
            try:
                self._cache.open()
                polled = self._poll()
                verdict = self._verify(polled)
                if not verdict.ok:
                    return self._held(polled, verdict)
                result = self._read(polled, verdict.signer or UNSIGNED)
            except (RemoteError, ExportError) as exc:
                return self._failed(str(exc))
            except (pygit2.GitError, OSError) as exc:  # the cache itself: start it afresh
                self._cache.discard()
                return self._failed(f"cache of {self.config.shown_url}: {describe(exc)}")
            self.last_ref = polled.refname or None
            return self._succeeded(result)

    def retry_now(self) -> None:
        """End the backoff: the next `scan()` asks the server (`attuned trigger`, a push)."""
        with self._lock:
            self._retry_at = 0.0

    def collect_garbage(self) -> Collected | None:
        """Drop cache objects and refs the current commit does not need, and stale exports."""
        with self._lock:
            if self._remote.busy:
                return None  # a timed-out fetch may still be writing
            self._exporter.clear_scratch()
            try:
                return self._cache.collect_garbage()
            except (pygit2.GitError, OSError):
                self._cache.discard()
                return None

    def reload(self) -> None:
        """SIGHUP with this source's configuration unchanged: read its trusted keys again."""
        if self.verifier is not None:
            with self._lock:
                self.verifier.load()

    def close(self) -> None:
        """The source was removed from the configuration: forget its host keys."""
        git_hostkeys.unregister(self.name)
        if self.verifier is not None:
            self.verifier.close()

    def _verify(self, polled: Polled) -> Verdict:
        if self.verifier is None:
            return Verdict(True, None)
        tag_name = polled.refname.removeprefix("refs/tags/")
        tag = str(polled.tag) if polled.tag is not None else None
        return self.verifier.check(self._cache.path, str(polled.commit), tag, tag_name)

    def _held(self, polled: Polled, verdict: Verdict) -> ScanResult:
        """Not activated: the last verified result again, with the reason as its error."""
        held = Unverified(str(polled.commit), verdict.reason, verdict.signer)
        self.unverified = held
        self._schedule(self.config.interval)  # answered, without the network, until then
        if self._last is None:
            state = SourceState(self.name, readable=False, prune=self.prune, error=held.error)
            self._error = ScanResult(state, stats={"unverified": 1})
        else:
            again = _again(self._last)
            state = replace(again.state, error=held.error)
            self._error = replace(again, state=state, stats={**again.stats, "unverified": 1})
        return self._error

    def _poll(self) -> Polled:
        pin = self.config.ref.commit
        if pin is None:
            return self._remote.poll()
        try:
            known = self._cache.commit(pin)  # a commit never changes: once here, no network
            if known is not None:
                return Polled("", known, fetched=False)
            received = self._remote.fetch_everything()
            found = self._cache.commit(pin)
        except pygit2.AmbiguousError:
            raise RemoteError(
                f"{self.config.shown_url}: the short sha {pin} names more than one object; "
                "give more digits"
            ) from None
        if found is None:
            raise RemoteError(f"{self.config.shown_url}: commit {pin} is on no branch or tag")
        return Polled("", found, fetched=True, received_objects=received)

    def _read(self, polled: Polled, signer: str) -> ScanResult:
        repo = self._cache.open()
        self._cache.mark_current(polled.commit)
        try:
            candidates, invalid, stats = self._exporter.read(repo, polled.commit, self.config.path)
        except ExportError as exc:
            raise ExportError(f"{self.config.shown_url}: {exc}") from None
        tree = str(repo[polled.commit].peel(pygit2.Commit).tree_id)
        candidates = [replace(c, source_tree=tree, signer=signer) for c in candidates]
        stats |= {
            "candidates": len(candidates),
            "invalid": len(invalid),
            "fetched": int(polled.fetched),
            "received_objects": polled.received_objects,
        }
        state = SourceState(self.name, readable=True, prune=self.prune)
        revision = str(polled.commit)
        return ScanResult(state, tuple(candidates), tuple(invalid), revision, stats)

    def _succeeded(self, result: ScanResult) -> ScanResult:
        self._last, self._error, self.unverified = result, None, None
        self.failures, self.error_since = 0, None
        self.last_revision = result.revision
        self._schedule(self.config.interval)
        return result

    def _failed(self, error: str) -> ScanResult:
        self.failures += 1
        if self.error_since is None:
            self.error_since = datetime.now(UTC)
        self._schedule(backoff(self.config.interval, self.failures))
        state = SourceState(self.name, readable=False, prune=self.prune, error=error)
        self._error = ScanResult(state, stats={"failures": self.failures})
        return self._error

    def _schedule(self, delay: float) -> None:
        delay += random.uniform(0, self.config.jitter)  # noqa: S311 - spreading load, not crypto
        self._retry_at = time.monotonic() + delay
        self.next_poll_at = datetime.now(UTC) + timedelta(seconds=delay)


if TYPE_CHECKING:
    _conforms: type[Source] = GitSource


def _still_there(result: ScanResult) -> bool:
    return all(c.snapshot.is_dir() for c in result.candidates)


def _again(result: ScanResult) -> ScanResult:
    """The last result, answered without the network: its stats say nothing new was done."""
    done = dict.fromkeys(("exported", "fetched", "received_objects", "snapshots_made"), 0)
    return replace(result, stats={**result.stats, **done, "unchanged": len(result.candidates)})
