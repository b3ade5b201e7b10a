"""`attuned run`: keep the database equal to what the sources want, until told to stop.

The main thread owns the loop and runs every reconcile pass; everything else only asks for
one: inotify events (debounced per pack), the periodic resync (APScheduler), and signals
(SIGUSR1: full pass, SIGHUP: reload config, SIGTERM/SIGINT: stop). A pass is
scan -> plan (pure) -> apply -> derive status (attuned.reconcile.passes); the status file is
rewritten after each change (attuned.reconcile.daemon.status_writer).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from datetime import datetime
from types import FrameType
from typing import TYPE_CHECKING, Literal

from attuned import __version__
from attuned.config import AttunedConfig
from attuned.errors import AttunedError
from attuned.reconcile.daemon import heap
from attuned.reconcile.daemon.config_reload import reloaded
from attuned.reconcile.daemon.delivery import Delivery
from attuned.reconcile.daemon.following import cluster_role, following, lead_or_refuse
from attuned.reconcile.daemon.health import Health
from attuned.reconcile.daemon.requests import POLL, Requests
from attuned.reconcile.daemon.schedule import Schedule
from attuned.reconcile.daemon.statelock import StateLock
from attuned.reconcile.daemon.status_writer import StatusWriter, last_known_packs
from attuned.reconcile.daemon.stop_timer import StopTimer
from attuned.reconcile.daemon.watching import Watches
from attuned.reconcile.drift import DriftCheck
from attuned.reconcile.facts import remembered_failures
from attuned.reconcile.model import Memory
from attuned.reconcile.passes import Changes, PassContext, run_pass
from attuned.reconcile.snapshots import SnapshotStore
from attuned.reconcile.sourceset import SourceSet
from attuned.reconcile.statcache import StatCacheKeeper
from attuned.registry import Registry
from attuned.report.log import ConditionLog, Event, get_logger
from attuned.report.metrics import MetricCounters
from attuned.report.status import PackStatus, Phase, ReconcileSummary, ReloadFailure, now
from attuned.store import outbox
from attuned.store.outbox import SinkCounts
from attuned.systemd import Notifier, WatchdogPinger, watchdog_interval

if TYPE_CHECKING:  # psycopg costs 8 MiB of RSS: imported only on PostgreSQL
    from attuned.cluster.role import ClusterRole

log = get_logger()


class Daemon:
    def __init__(self, config: AttunedConfig) -> None:
        self.config = config
        self.requests = Requests()
        self.cancel = threading.Event()  # set on stop: running tests are killed
        self.started_at = now()
        self.phase: Phase = "starting"
        self.error: str | None = None
        self.lock = StateLock(config.state_dir)
        self.registry: Registry | None = None
        self.snapshots = SnapshotStore(config.snapshots_path)
        self.counters = MetricCounters()
        self.delivery = Delivery(self.counters, is_leader=lambda: self.role == "leader")
        self.conditions = ConditionLog(self.delivery.announce)
        self.sources = SourceSet(self.snapshots, self.conditions)
        self.drift = DriftCheck(self.snapshots, self.conditions)
        self._stat_cache = StatCacheKeeper(config.state_dir, self.snapshots, self.drift)
        self.memory = Memory()
        self.packs: dict[str, PackStatus] = {}
        self.conflicts: list[dict[str, str]] = []
        self.last_reconcile: ReconcileSummary | None = None
        self.any_failed = False
        self.watches: Watches | None = None  # `run` only: `--once` watches nothing
        self.schedule: Schedule | None = None
        self.health = Health(self)
        self.next_retry_at: datetime | None = None  # the backoff's end, as the status shows it
        self.reload_failed: ReloadFailure | None = None
        self.stop_timer = StopTimer(self)
        self.cluster: ClusterRole | None = None
        self.clustered = not config.database_url.startswith("sqlite")
        self.role: Literal["leader", "follower"] = "follower" if self.clustered else "leader"
        self.synced_once = False
        self.sources.counters = self.counters
        self.notifier = Notifier.from_environment()
        interval = watchdog_interval()
        self.pinger = WatchdogPinger(self.notifier, interval) if interval else None
        # the idle loop must beat well within the watchdog's staleness limit
        self.tick = min(1.0, self.pinger.stale_after / 3) if self.pinger else 1.0
        self.status = StatusWriter(self)

    # -- life cycle -----------------------------------------------------------------------

    def run(self) -> int:
        """Run until SIGTERM/SIGINT; returns the exit code."""
        self.lock.acquire()
        try:
            self._install_signals()
            if self.pinger is not None:
                self.pinger.start()
            self.sources.configure(self.config)
            quiet = self.config.reconcile.quiet_period
            self.watches = Watches(self.requests, self.sources, quiet)
            self._watch_all()
            self.schedule = Schedule(self.requests, self.config.reconcile)
            self.schedule.schedule_polls(self.sources.git_configs())
            # the dispatcher runs beside the loop from the first pass
            self.delivery.delivering = True
            self._log_started()
            self.packs = last_known_packs(self.config.status_path) or self.packs
            self.status.write()  # before any database contact: a dead database shows at once
            self.requests.ask(full=True)  # the first pass now, not after the loop's first tick
            self._loop()
            return 0
        finally:
            self._shutdown()

    def run_once(self) -> int:
        """One pass in-process (`attuned reconcile --once`); 4 when any pack failed."""
        self.lock.acquire()
        try:
            self.sources.configure(self.config)
            lead_or_refuse(self, "reconcile")
            self.reconcile_pass("once")
            self.delivery.deliver_once(self.config, self.registry)
            self.phase = "stopped"
            self.status.write()
            self._stat_cache.save_if_due(now=True)
            return 4 if self.any_failed else 0
        finally:
            self.delivery.stop()
            self._close_registry()
            self.lock.release()

    def deliver_only(self, timeout: float) -> tuple[bool, dict[str, SinkCounts]]:
        """`attuned events deliver`: what is due, for up to `timeout` seconds, as `--once`
        does after its pass; refused where a daemon runs (it delivers) or another host
        leads. Returns whether nothing due is left, and each sink's deliveries after."""
        self.lock.acquire()
        try:
            lead_or_refuse(self, "deliver events")
            registry = self._registry()
            finished = self.delivery.deliver_once(self.config, self.registry, timeout)
            with registry.db.read() as session:
                return finished, outbox.counts(session)
        finally:
            self.delivery.stop()
            self._close_registry()
            self.lock.release()

    def _log_started(self) -> None:
        folders = [str(f.path.absolute()) for f in self.sources.folders()]
        log.info(
            Event.DAEMON_STARTED,
            version=__version__,
            pid=os.getpid(),
            config=str(self.config.path) if self.config.path else None,
            defaults=self.config.path is None,
            state_dir=str(self.config.state_dir.absolute()),
            packs_dir=str(self.config.packs_path.absolute()),
            status_file=str(self.config.status_path.absolute()),
            watched_folders=folders,
            message=(
                "no config file found: using built-in defaults; "
                if self.config.path is None
                else ""
            )
            + f"drop packs into {', '.join(folders) or '(no sources)'}",
        )

    def _beat(self) -> None:
        """The loop is alive (the watchdog pinger pings systemd only while beats come)."""
        if self.pinger is not None:
            self.pinger.beat()

    def _loop(self) -> None:
        while True:
            self._beat()
            self.status.tell_systemd()
            if self.health.backing_off() or following(self):
                if self.requests.stop:
                    return
                continue
            self.requests.wake.wait(timeout=self.tick)
            if self.requests.stop:
                return
            if self.delivery.counts_stale():
                self.status.write()  # deliveries moved: the status shows their counts
            lost = self.watches.lost() if self.watches is not None else set()
            for name in lost:  # before any pass: an empty folder made again prunes nothing
                self.sources.folder_lost(name)
            moved = self.sources.moved_folders()
            if moved or lost:  # read each whole now: gone is unreadable, back is read
                self._watch_all()
                self.requests.ask(changes={(name, POLL) for name in {*moved, *lost}})
            self._serve_requests()

    def _serve_requests(self) -> None:
        """What was asked since the last turn: a reload first, then one pass for it all."""
        full, changed, reload = self.requests.take()
        if self.watches is not None and self.watches.overflow.is_set():
            self.watches.recover()
            full = True
        if reload:
            self.reload()
            full = True
        if full or changed:
            trigger = (
                "full" if full else "change:" + ",".join(sorted(f"{s}/{e}" for s, e in changed))
            )
            poll = {source for source, entry in changed if entry == POLL}
            entries: dict[str, set[str]] = {}
            for source, entry in changed:
                if entry != POLL:
                    entries.setdefault(source, set()).add(entry)
            self.reconcile_pass(trigger, full=full, poll=poll, changed=None if full else entries)
            if full:  # the first sync, a resync: what the pass freed goes back
                self.status.tell_systemd()  # READY first: the release is upkeep
                heap.release(self.registry)

    def _cluster(self) -> ClusterRole:
        return cluster_role(self)

    def _shutdown(self) -> None:
        self.notifier.stopping()
        log.info(Event.DAEMON_STOPPING)
        self.phase = "stopping"
        self.status.write()
        self.health.cancel()
        if self.schedule is not None:
            self.schedule.shutdown()
        if self.watches is not None:
            self.watches.stop()
        self.delivery.stop()
        self.phase = "stopped"
        self.status.write()
        self._stat_cache.save_if_due(now=True)
        self._close_registry()
        self.lock.release()
        if self.pinger is not None:
            self.pinger.stop()
        self.notifier.close()
        log.info(Event.DAEMON_STOPPED, uptime_s=round((now() - self.started_at).total_seconds(), 1))

    def _close_registry(self) -> None:
        self.delivery.recorder.write = None
        if self.cluster is not None:
            self.cluster.close()
            self.cluster = None
        if self.registry is not None:
            self.registry.close()
            self.registry = None

    # -- requests from other threads and signals ---------------------------------------------

    def _install_signals(self) -> None:
        def stop(signum: int, _frame: FrameType | None) -> None:
            self.cancel.set()
            self.requests.ask(stop=True)
            self.stop_timer.arm()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, lambda *_: self.requests.ask(reload=True))
        signal.signal(signal.SIGUSR1, lambda *_: self.requests.ask(full=True))

    # -- configuration ------------------------------------------------------------------------

    def _watch_all(self) -> None:
        if self.watches is not None:
            self.watches.watch_all(self.config.triggers_path)

    def reload(self) -> None:
        """SIGHUP: read the config again; systemd sees RELOADING until READY says it ended."""
        self.notifier.reloading()
        self._reconfigure()
        self.notifier.ready()

    def _reconfigure(self) -> None:
        try:
            self.config, needs_restart = reloaded(self.config)
        except AttunedError as exc:
            log.error(Event.DAEMON_RELOAD_FAILED, error=str(exc))
            self.reload_failed = ReloadFailure(error=str(exc), at=now())
            return
        self.reload_failed = None
        added, removed = self.sources.configure(self.config)
        self.delivery.configure(self.config, self.registry, reload=True)
        self._watch_all()
        if self.schedule is not None:
            self.schedule.schedule_polls(self.sources.git_configs())
        log.info(
            Event.DAEMON_RELOADED,
            sources_added=added,
            sources_removed=removed,
            needs_restart=needs_restart,
        )

    # -- one pass -----------------------------------------------------------------------------

    def reconcile_pass(
        self,
        trigger: str,
        *,
        full: bool = True,
        poll: set[str] | None = None,
        changed: dict[str, set[str]] | None = None,
    ) -> None:
        """One pass. `changed`: only these folder entries changed (inotify), the rest of
        each folder is taken as the last full scan found it."""
        started, started_mono = now(), time.monotonic()
        self.phase = "reconciling"
        self.status.write()
        try:
            registry = self._registry()  # the first contact migrates: db.migrated comes first
            context = self._pass_context(registry, started, started_mono)
            result = run_pass(context, trigger, Changes(full, frozenset(poll or ()), changed))
            self.packs, self.any_failed = result.packs, result.any_failed
            self.last_reconcile = result.summary
            self.health.after_pass(result.transient)
        except Exception as exc:  # database down, disk full...: degrade, retry with backoff
            self.health.degraded(exc)  # writes the status
        else:
            self.status.write()
        self._stat_cache.save_if_due()

    def _pass_context(
        self, registry: Registry, started: datetime, started_mono: float
    ) -> PassContext:
        return PassContext(
            registry=registry,
            config=self.config,
            live=self,
            sources=self.sources,
            snapshots=self.snapshots,
            drift=self.drift,
            stat_cache=self._stat_cache,
            conditions=self.conditions,
            counters=self.counters,
            delivery=self.delivery,
            cancel=self.cancel,
            beat=self._beat,
            write_status=self.status.write,
            watch_all=self._watch_all,
            collect_cluster_garbage=self._collect_cluster_garbage,
            started=started,
            started_mono=started_mono,
        )

    def _collect_cluster_garbage(self) -> None:
        if self.cluster is not None and self.role == "leader":
            self.cluster.collect_garbage()

    def _registry(self) -> Registry:
        if self.registry is None:
            self.registry = Registry.from_config(self.config)
            self.delivery.recorder.write = self.registry.record_events
            with self.registry.db.read() as session:
                remembered = remembered_failures(session)
            self.memory = Memory(
                failures={**remembered, **self.memory.failures}, suspended=self.memory.suspended
            )
            self.delivery.configure(self.config, self.registry)
        return self.registry
