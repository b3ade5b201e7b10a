"""This daemon's role when several hosts share one PostgreSQL: leader or follower.

The leader (holder of a session advisory lock) plans, tests, registers and prunes; inside each
of its transactions it stores the pack's content and announces the change, and it checks it
still leads right before committing: on its election connection, then fenced inside the
transaction itself (a leader deposed after the first check cannot commit). Followers take
no decisions: they keep their own pack store equal to the database, woken by NOTIFY, and try
to take the lead every `cluster.poll_interval`. With SQLite there is one host and it always leads.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Literal

from sqlmodel import Session

from attuned.cluster.archives import announce, prune_archives, store_archive
from attuned.cluster.follower import Follower, SyncResult
from attuned.cluster.leader import (
    ElectionSettings,
    FencedOut,
    LeaderElection,
    NotLeader,
    Term,
)
from attuned.config import AttunedConfig
from attuned.registry import CommitHooks, Registry
from attuned.report.log import Event, get_logger
from attuned.store.registered_packs import RegisteredPack

log = get_logger()
Role = Literal["leader", "follower"]


class ClusterRole:
    def __init__(self, config: AttunedConfig, registry: Registry) -> None:
        self.config = config
        self.registry = registry
        cluster = config.cluster
        self.node = cluster.node
        self.election = LeaderElection(
            config.database_url,
            cluster.node,
            ElectionSettings(
                poll_interval=cluster.poll_interval,
                keepalives_idle=cluster.keepalives_idle,
                keepalives_interval=cluster.keepalives_interval,
                keepalives_count=cluster.keepalives_count,
                connect_timeout=cluster.connect_timeout,
                check_timeout=cluster.check_timeout,
            ),
        )
        self.follower = Follower(
            registry.db,
            registry.store,
            work_dir=config.state_dir / "work",
            keep_versions=config.reconcile.keep_versions,
        )
        self.role: Role = "follower"
        self._last_attempt = 0.0
        self._last_sync = 0.0
        registry.hooks = CommitHooks(
            before_commit=self._before_commit,
            pack_committed=self._pack_committed,
            pack_removed=self._pack_removed,
        )
        if not registry.db.is_sqlite:
            registry.db.fence = self._fence

    # -- leadership -------------------------------------------------------------------------

    def lead(self) -> tuple[bool, bool]:
        """(leads now, just became leader). Followers retry every `poll_interval`; a leader
        re-checks its lock and connection, and steps down when they are gone."""
        if self.role == "leader":
            try:
                self.election.ensure_leader()
            except NotLeader as exc:
                self.role = "follower"
                log.warning(Event.CLUSTER_LEADERSHIP_LOST, node=self.node, error=str(exc))
            return self.role == "leader", False
        if time.monotonic() - self._last_attempt < self.config.cluster.poll_interval:
            return False, False
        self._last_attempt = time.monotonic()
        if not self.election.try_acquire():
            return False, False
        self.role = "leader"
        log.info(Event.CLUSTER_LEADER_ELECTED, node=self.node)
        self.sync()  # serve what the previous leader registered before deciding anything
        return True, True

    def leader_name(self) -> str | None:
        return self.node if self.role == "leader" else self.election.leader()

    # -- following ----------------------------------------------------------------------------

    def follow(self, timeout: float) -> SyncResult | None:
        """Wait up to `timeout` for an announcement; sync on one, or every follower_resync."""
        announced = self.follower.wait_for_change(timeout)
        due = time.monotonic() - self._last_sync >= self.config.cluster.follower_resync
        if not announced and not due:
            return None
        return self.sync()

    def sync(self) -> SyncResult:
        self._last_sync = time.monotonic()
        result = self.follower.sync_once()
        if result.activated or result.removed or result.missing or result.errors:
            log.info(
                Event.CLUSTER_SYNCED,
                node=self.node,
                activated=result.activated,
                removed=result.removed,
                missing=result.missing,
                errors=result.errors,
            )
        return result

    def collect_garbage(self) -> int:
        """Leader, on full passes: drop stored contents no registered pack uses any more."""
        with self.registry.db.write() as session:
            self._before_commit(session)
            return prune_archives(session, set())

    def close(self) -> None:
        self.follower.close()
        self.election.close()

    # -- inside the leader's transactions -----------------------------------------------------

    def _before_commit(self, _session: Session) -> None:
        """A leader that lost its connection or lock must not write: NotLeader rolls back."""
        self.election.ensure_leader()

    def _fence(self) -> Callable[[Session], None]:
        """As a write transaction begins: its check, bound to the reign going on now."""
        return partial(self._check_fence, self.election.term)

    def _check_fence(self, term: Term | None, session: Session) -> None:
        """Right before COMMIT, in the transaction: refuse it unless `term` still leads; a
        deposed leader steps down at once (the daemon follows from its next turn)."""
        try:
            self.election.fence(session.connection(), term)
        except FencedOut as exc:
            if exc.deposed and self.role == "leader":
                self.role = "follower"
                self.election.close()  # its lock is gone; a fresh session stands again
                log.warning(
                    Event.CLUSTER_LEADERSHIP_LOST, node=self.node, error=str(exc), fenced=True
                )
            raise

    def _pack_committed(self, session: Session, record: RegisteredPack, version_dir: Path) -> None:
        store_archive(
            session,
            version_dir,
            record.digest,
            max_bytes=self.config.cluster.archive_max_mb * 1024 * 1024,
        )
        announce(session, f"{record.ref} {record.digest}")

    def _pack_removed(self, session: Session, ref: str) -> None:
        announce(session, f"{ref} -")
