"""Follower mode: in a cluster, one daemon leads and the others only mirror it.

A follower plans nothing, tests nothing and writes nothing: it waits for the leader's
announcements, syncs its local store from the database, and takes the lead when it is free.
The cluster (and with it psycopg) is imported only here, when a PostgreSQL database asks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from attuned.errors import AttunedError
from attuned.reconcile import facts
from attuned.registry import Registry
from attuned.report.log import Event
from attuned.report.status import PackStatus
from attuned.store.packstore import version_dirname

if TYPE_CHECKING:  # psycopg costs 8 MiB of RSS: imported only on PostgreSQL
    from attuned.cluster.role import ClusterRole
    from attuned.reconcile.daemon.loop import Daemon


def following(daemon: Daemon) -> bool:
    """In a cluster: take the lead when it is free; while following, wait for the leader's
    announcements and sync the local store (no planning, no tests, no writes)."""
    if not daemon.clustered:
        return False
    try:
        cluster = cluster_role(daemon)
        leads, became = cluster.lead()
        if leads:
            daemon.role = "leader"
            if became:
                daemon.delivery.announce(Event.CLUSTER_LEADER_ELECTED, {"node": cluster.node}, None)
                daemon.requests.ask(full=True)
            return False
        daemon.role = "follower"
        result = cluster.follow(timeout=daemon.tick)
        if daemon.delivery.counts_stale():
            daemon.status.write()  # the leader's deliveries, as the database has them
        if result is not None or not daemon.synced_once:
            if result is None:
                cluster.sync()
            daemon.synced_once = True
            daemon.packs = follower_packs(daemon._registry())
            daemon.phase, daemon.error = "idle", None
            daemon.health.recovered()
            daemon.status.write()
    except Exception as exc:  # the database is unreachable: followers degrade and retry
        daemon.health.degraded(exc)  # writes the status: the reason shows while it lasts
    _full, _changed, reload = daemon.requests.take()  # followers do not reconcile
    if reload:
        daemon.reload()
    return True


def lead_or_refuse(daemon: Daemon, what: str) -> None:
    """`--once` and `events deliver` act only as the leader: they refuse where another
    host leads."""
    if not daemon.clustered:
        return
    leads, _ = cluster_role(daemon).lead()
    if not leads:
        holder = cluster_role(daemon).leader_name() or "another host"
        raise AttunedError(f"{holder} leads this database; followers do not {what}")
    daemon.role = "leader"


def cluster_role(daemon: Daemon) -> ClusterRole:
    if daemon.cluster is None:
        from attuned.cluster.role import ClusterRole

        daemon.cluster = ClusterRole(daemon.config, daemon._registry())
    return daemon.cluster


def follower_packs(registry: Registry) -> dict[str, PackStatus]:
    """Each pack as the leader registered it, and whether this host's store serves it yet."""
    with registry.db.read() as session:
        served = facts.served_packs(session)
        tests = facts.last_tests(session)
    packs = {}
    for ref, pack in served.items():
        want = registry.store.versions / version_dirname(ref, pack.version, pack.digest)
        here = registry.store.active_dir(ref)
        synced = here is not None and here == want.resolve()
        packs[ref] = PackStatus(
            state="active" if synced else "pending",
            version=pack.version if synced else None,
            digest=pack.digest if synced else None,
            desired_version=None if synced else pack.version,
            source=pack.source,
            active_since=pack.active_since,
            last_test=tests.get(ref),
            reason="served as the leader registered it"
            if synced
            else "waiting for its content from the database",
        )
    return packs
