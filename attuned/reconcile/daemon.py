"""`attuned run`: keep the database equal to what the sources want, until told to stop.

The main thread owns the loop and runs every reconcile pass; everything else only asks for
one: inotify events (debounced per pack), the periodic resync (APScheduler), and signals
(SIGUSR1: full pass, SIGHUP: reload config, SIGTERM/SIGINT: stop). A pass is
scan -> plan (pure) -> apply -> derive status; the status file is rewritten after each change.
"""

from __future__ import annotations

import fcntl
import os
import signal
import threading
import time
from collections.abc import Hashable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import IO, TYPE_CHECKING, Any, Literal

from apscheduler.schedulers.background import BackgroundScheduler

from attuned import __version__, faults
from attuned.config import AttunedConfig, DirectorySourceConfig, default_config, load_config
from attuned.errors import AttunedError, headline
from attuned.notify import events
from attuned.notify.recorder import EventRecorder
from attuned.reconcile import facts, heap
from attuned.reconcile.apply import (
    Applier,
    SourcePolicy,
    StepOutcome,
    StepResult,
    action_fields,
    failure_fields,
)
from attuned.reconcile.debounce import Debouncer
from attuned.reconcile.drift import DriftCheck
from attuned.reconcile.memory import backoff, remember, with_suspended
from attuned.reconcile.model import ActionKind, Desired, FailureKind, Memory, Plan
from attuned.reconcile.planner import plan as make_plan
from attuned.reconcile.snapshots import SnapshotStore
from attuned.reconcile.sourceset import SourceSet
from attuned.reconcile.statcache import StatCacheKeeper
from attuned.reconcile.summary import derive_packs, landed
from attuned.reconcile.watch import FolderWatcher
from attuned.registry import Registry
from attuned.report.log import ConditionLog, Event, get_logger
from attuned.report.metrics import MetricCounters, render_metrics, write_metrics
from attuned.report.status import (
    DaemonStatus,
    PackStatus,
    Phase,
    ReconcileSummary,
    ReloadFailure,
    SinkStatus,
    Status,
    now,
    read_status,
    write_status,
)
from attuned.settings.git import GitSourceConfig
from attuned.store import outbox, repository
from attuned.store.outbox import SinkCounts
from attuned.store.packstore import version_dirname
from attuned.systemd import Notifier, WatchdogPinger, summary_line, watchdog_interval

if TYPE_CHECKING:  # psycopg costs 8 MiB of RSS: imported only on PostgreSQL
    from attuned.cluster.role import ClusterRole
    from attuned.notify.dispatcher import Dispatcher

log = get_logger()


POLL = "*"  # the `entry` of a request that means: ask this git source's server now


def _trigger_name(path: Path) -> str | None:
    """triggers/<source> -> <source>; editors' and our own temporary names are ignored."""
    name = path.name
    if path.parent.name != "triggers" or name.startswith(".") or not name:
        return None
    return name


class AlreadyRunning(AttunedError):
    """Another attuned holds this state directory."""


@dataclass
class Requests:
    """What the loop has been asked to do; set from any thread, read by the main loop."""

    full: bool = True
    changed: set[tuple[str, str]] = field(default_factory=set)
    reload: bool = False
    stop: bool = False
    wake: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ask(
        self,
        *,
        full: bool = False,
        reload: bool = False,
        stop: bool = False,
        changes: Iterable[tuple[str, str]] = (),
    ) -> None:
        with self.lock:
            self.full |= full
            self.reload |= reload
            self.stop |= stop
            self.changed.update(changes)
        self.wake.set()

    def take_reload(self) -> bool:
        with self.lock:
            reload, self.reload = self.reload, False
        return reload

    def take(self) -> tuple[bool, set[tuple[str, str]], bool]:
        with self.lock:
            taken = (self.full, self.changed, self.reload)
            self.full, self.changed, self.reload = False, set(), False
            self.wake.clear()
        return taken


LOCK_ATTEMPTS = 5  # 10 ms apart
STATUS_PROGRESS_S = 0.5  # the status file is rewritten at most this often while a pass registers


class StateLock:
    """One daemon (or `reconcile --once`) per state directory: an flock on attuned.lock."""

    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.path = state_dir / "attuned.lock"
        self._handle: IO[str] | None = None

    def acquire(self) -> None:
        handle = self.path.open("a+")
        try:
            for attempt in range(LOCK_ATTEMPTS):
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    # `attuned trigger` holds a shared lock for microseconds to tell whether
                    # a daemon runs: a start in that instant must not fail
                    if attempt == LOCK_ATTEMPTS - 1:
                        raise
                    time.sleep(0.01)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise AlreadyRunning(
                f"another attuned (pid {holder}) is running on {self.path.parent.absolute()}"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


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
        self.recorder = EventRecorder()
        self.conditions = ConditionLog(self._announce)
        self.sources = SourceSet(self.snapshots, self.conditions)
        self.drift = DriftCheck(self.snapshots, self.conditions)
        self._stat_cache = StatCacheKeeper(config.state_dir, self.snapshots, self.drift)
        self.memory = Memory()
        self.packs: dict[str, PackStatus] = {}
        self.conflicts: list[dict[str, str]] = []
        self.last_reconcile: ReconcileSummary | None = None
        self.any_failed = False
        self._watcher: FolderWatcher | None = None
        self._trigger_watcher: FolderWatcher | None = None
        self._overflow = threading.Event()  # set by watchdog's thread on a queue overflow
        self._debouncer: Debouncer | None = None
        self._scheduler: Any = None
        self._retry_timer: threading.Timer | None = None
        self._db_failures = 0
        self._backoff_until = 0.0  # monotonic: no database contact before this (degraded)
        self.next_retry_at: datetime | None = None  # the same, as the status file shows it
        self._told_transient: str | None = None  # the transient error last logged as degraded
        self.reload_failed: ReloadFailure | None = None
        self._stop_timer: threading.Timer | None = None
        self.cluster: ClusterRole | None = None
        self.clustered = not config.database_url.startswith("sqlite")
        self.role: Literal["leader", "follower"] = "follower" if self.clustered else "leader"
        self._synced_once = False
        self.counters = MetricCounters()
        self.sources.counters = self.counters
        self.notifier = Notifier.from_environment()
        interval = watchdog_interval()
        self.pinger = WatchdogPinger(self.notifier, interval) if interval else None
        # the idle loop must beat well within the watchdog's staleness limit
        self._tick = min(1.0, self.pinger.stale_after / 3) if self.pinger else 1.0
        self._status_sent_at = 0.0
        self.dispatcher: Dispatcher | None = None  # started with the registry, when sinks exist
        self.delivering = False  # `run`: deliver all along (`--once` drains after its pass)

    # -- life cycle -----------------------------------------------------------------------

    def run(self) -> int:
        """Run until SIGTERM/SIGINT; returns the exit code."""
        self.lock.acquire()
        try:
            self._install_signals()
            if self.pinger is not None:
                self.pinger.start()
            self.sources.configure(self.config)
            self._debouncer = Debouncer(self.config.reconcile.quiet_period, self._debounced)
            self._watcher = FolderWatcher(self._changed, overflowed=self._overflowed)
            self._trigger_watcher = FolderWatcher(self._triggered)
            self._watch_all()
            self._start_scheduler()
            self.delivering = True  # the dispatcher runs beside the loop from the first pass
            self._log_started()
            self._show_last_known_packs()
            self._write_status()  # before any database contact: a dead database shows at once
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
            self._lead_or_refuse("reconcile")
            self.reconcile_pass("once")
            self._deliver_once()
            self.phase = "stopped"
            self._write_status()
            self._stat_cache.save_if_due(now=True)
            return 4 if self.any_failed else 0
        finally:
            self._stop_dispatcher()
            self._close_registry()
            self.lock.release()

    def deliver_only(self, timeout: float) -> tuple[bool, dict[str, SinkCounts]]:
        """`attuned events deliver`: what is due, for up to `timeout` seconds, as `--once`
        does after its pass; refused where a daemon runs (it delivers) or another host
        leads. Returns whether nothing due is left, and each sink's deliveries after."""
        self.lock.acquire()
        try:
            self._lead_or_refuse("deliver events")
            registry = self._registry()
            finished = self._deliver_once(timeout)
            with registry.db.read() as session:
                return finished, outbox.counts(session)
        finally:
            self._stop_dispatcher()
            self._close_registry()
            self.lock.release()

    def _lead_or_refuse(self, what: str) -> None:
        if not self.clustered:
            return
        leads, _ = self._cluster().lead()
        if not leads:
            holder = self._cluster().leader_name() or "another host"
            raise AttunedError(f"{holder} leads this database; followers do not {what}")
        self.role = "leader"

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

    def _show_last_known_packs(self) -> None:
        """Start from the packs the previous daemon's status file listed (the store still
        serves them) rather than an empty table until the first pass ends; the pass replaces
        every entry from the database's facts."""
        try:
            previous = read_status(self.config.status_path)
        except Exception:  # none yet, or unreadable: the first pass fills the table
            return
        self.packs = dict(previous.packs)

    def _beat(self) -> None:
        """The loop is alive (the watchdog pinger pings systemd only while beats come)."""
        if self.pinger is not None:
            self.pinger.beat()

    def _loop(self) -> None:
        while True:
            self._beat()
            self._tell_systemd()
            if self._backing_off():
                if self.requests.stop:
                    return
                continue
            if self._following():
                if self.requests.stop:
                    return
                continue
            self.requests.wake.wait(timeout=self._tick)
            if self.requests.stop:
                return
            if self.dispatcher is not None and self.dispatcher.counts_stale():
                self._write_status()  # deliveries moved: the status shows their counts
            lost = self._watcher.lost() if self._watcher is not None else set()
            for name in lost:  # before any pass: an empty folder made again prunes nothing
                self.sources.folder_lost(name)
            moved = self.sources.moved_folders()
            if moved or lost:  # read each whole now: gone is unreadable, back is read
                self._watch_all()
                self.requests.ask(changes={(name, POLL) for name in {*moved, *lost}})
            full, changed, reload = self.requests.take()
            if self._overflow.is_set():
                self._recover_watches()
                full = True
            if reload:
                self.notifier.reloading()
                self._reload()
                self.notifier.ready()  # systemd waits for it to leave "reloading"
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
                self.reconcile_pass(
                    trigger, full=full, poll=poll, changed=None if full else entries
                )
                if full:  # the first sync, a resync: what the pass freed goes back
                    self._tell_systemd()  # READY first: the release is upkeep
                    heap.release(self.registry)

    def _backing_off(self) -> bool:
        """Degraded: wait out the backoff without touching the database; what is asked
        meanwhile (events, resyncs) stays recorded for the pass when it ends. A reload is
        applied at once: it needs no database."""
        remaining = self._backoff_until - time.monotonic()
        if remaining <= 0:
            return False
        self.requests.wake.wait(timeout=min(self._tick, remaining))
        self.requests.wake.clear()  # a busy loop otherwise: the requests themselves are kept
        if self.requests.take_reload():
            self.notifier.reloading()
            self._reload()
            self.notifier.ready()
            self._write_status()
        return True

    def _following(self) -> bool:
        """In a cluster: take the lead when it is free; while following, wait for the leader's
        announcements and sync the local store (no planning, no tests, no writes)."""
        if not self.clustered:
            return False
        try:
            cluster = self._cluster()
            leads, became = cluster.lead()
            if leads:
                self.role = "leader"
                if became:
                    self._announce(Event.CLUSTER_LEADER_ELECTED, {"node": cluster.node}, None)
                    self.requests.ask(full=True)
                return False
            self.role = "follower"
            result = cluster.follow(timeout=self._tick)
            if self.dispatcher is not None and self.dispatcher.counts_stale():
                self._write_status()  # the leader's deliveries, as the database has them
            if result is not None or not self._synced_once:
                if result is None:
                    cluster.sync()
                self._synced_once = True
                self._follower_status()
                self.phase, self.error = "idle", None
                self._recovered()
                self._write_status()
        except Exception as exc:  # the database is unreachable: followers degrade and retry
            self._degraded(exc)  # writes the status: the reason shows while it lasts
        _full, _changed, reload = self.requests.take()  # followers do not reconcile
        if reload:
            self.notifier.reloading()
            self._reload()
            self.notifier.ready()
        return True

    def _cluster(self) -> ClusterRole:
        if self.cluster is None:
            from attuned.cluster.role import ClusterRole

            self.cluster = ClusterRole(self.config, self._registry())
        return self.cluster

    def _follower_status(self) -> None:
        registry = self._registry()
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
        self.packs = packs

    def _tell_systemd(self) -> None:
        """READY=1 once the first pass (or a follower's first sync) is done; STATUS= kept
        current (at least every 10 s)."""
        if self.last_reconcile is None and self.phase != "degraded" and not self._synced_once:
            return
        status = self._status()
        if not self.notifier.is_ready:
            self.notifier.ready(summary_line(status))
            self._status_sent_at = time.monotonic()
        elif time.monotonic() - self._status_sent_at >= 10:
            self.notifier.status(summary_line(status))
            self._status_sent_at = time.monotonic()

    def _shutdown(self) -> None:
        self.notifier.stopping()
        log.info(Event.DAEMON_STOPPING)
        self.phase = "stopping"
        self._write_status()
        if self._retry_timer is not None:
            self._retry_timer.cancel()
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
        for watcher in (self._watcher, self._trigger_watcher):
            if watcher is not None:
                watcher.stop()
        if self._debouncer is not None:
            self._debouncer.stop()
        self._stop_dispatcher()
        self.phase = "stopped"
        self._write_status()
        self._stat_cache.save_if_due(now=True)
        self._close_registry()
        self.lock.release()
        if self.pinger is not None:
            self.pinger.stop()
        self.notifier.close()
        log.info(Event.DAEMON_STOPPED, uptime_s=round((now() - self.started_at).total_seconds(), 1))

    def _close_registry(self) -> None:
        self.recorder.write = None
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
            self._arm_stop_timer()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, lambda *_: self.requests.ask(reload=True))
        signal.signal(signal.SIGUSR1, lambda *_: self.requests.ask(full=True))

    def _arm_stop_timer(self) -> None:
        """A stop is bounded: a pass waiting on a locked or unreachable database is given
        up after `reconcile.stop_timeout` seconds, and the process exits 0 as a crash would
        at that instant (what was not committed is rolled back by the database; the store
        never depends on an uncommitted transaction), before systemd's TimeoutStopSec kills
        it mid-write."""
        if self._stop_timer is not None:
            return
        self._stop_timer = threading.Timer(self.config.reconcile.stop_timeout, self._force_stop)
        self._stop_timer.daemon = True
        self._stop_timer.start()

    def _force_stop(self) -> None:
        log.warning(
            Event.DAEMON_STOP_FORCED,
            waited_s=self.config.reconcile.stop_timeout,
            phase=self.phase,
            action="exiting without waiting: the transaction in flight is rolled back",
        )
        self.phase, self.next_retry_at = "stopped", None
        try:  # the main thread may be changing the pack table: a best effort
            write_status(self.config.status_path, self._status())
        except Exception as exc:
            log.error(Event.STATUS_WRITE_FAILED, error=headline(exc))
        self.notifier.stopping()
        log.info(Event.DAEMON_STOPPED, uptime_s=round((now() - self.started_at).total_seconds(), 1))
        os._exit(0)

    def _changed(self, source: str, entry: str) -> None:
        if self._debouncer is not None:
            self._debouncer.touch((source, entry))

    def _overflowed(self) -> None:
        """watchdog's thread: the kernel dropped events; the loop rebuilds and rescans."""
        self._overflow.set()
        self.requests.ask(full=True)

    def _recover_watches(self) -> None:
        watched = [
            source
            for watcher in (self._watcher, self._trigger_watcher)
            if watcher is not None
            for source in watcher.restart()
        ]
        self._overflow.clear()  # late records of the observers just stopped
        log.warning(
            Event.SOURCE_WATCH_OVERFLOW,
            sources=watched,
            action="inotify watches rebuilt; a full pass finds what the lost events said",
        )

    def _triggered(self, _watched: str, name: str) -> None:
        """`attuned trigger NAME` (or a post-receive hook) touched triggers/NAME: poll now."""
        if self.sources.trigger(name):
            log.info(Event.SOURCE_TRIGGERED, source=name)
            self.requests.ask(changes=[(name, POLL)])

    def _debounced(self, keys: list[Hashable]) -> None:
        changes = [(str(key[0]), str(key[1])) for key in keys if isinstance(key, tuple)]
        self.requests.ask(changes=changes)

    def _start_scheduler(self) -> None:
        scheduler = BackgroundScheduler(daemon=True)
        scheduler.add_job(
            lambda: self.requests.ask(full=True),
            "interval",
            seconds=self.config.reconcile.resync_interval,
            jitter=self.config.reconcile.resync_jitter or None,
            coalesce=True,
            max_instances=1,
            id="resync",
        )
        scheduler.start()
        self._scheduler = scheduler
        self._schedule_polls()

    def _schedule_polls(self) -> None:
        """One interval job per git source: each asks for a pass that polls that source."""
        if self._scheduler is None:
            return
        for job in self._scheduler.get_jobs():
            if job.id.startswith("poll:"):
                job.remove()
        for config in self.sources.git_configs():
            self._scheduler.add_job(
                lambda name=config.name: self.requests.ask(changes=[(name, POLL)]),
                "interval",
                seconds=config.interval,
                jitter=config.jitter or None,
                coalesce=True,
                max_instances=1,
                id=f"poll:{config.name}",
            )

    # -- configuration ------------------------------------------------------------------------

    def _watch_all(self) -> None:
        if self._trigger_watcher is not None:
            triggers = self.config.triggers_path
            triggers.mkdir(parents=True, exist_ok=True)
            self._trigger_watcher.watch("triggers", triggers, _trigger_name)
        if self._watcher is None:
            return
        folders = self.sources.folders()
        for name in self._watcher.watched() - {f.source for f in folders}:
            self._watcher.unwatch(name)
        for folder in folders:
            self._watcher.watch(folder.source, folder.path, folder.source_obj.entry_for)

    def _reload(self) -> None:
        try:
            fresh = load_config(self.config.path) if self.config.path else default_config()
        except AttunedError as exc:
            log.error(Event.DAEMON_RELOAD_FAILED, error=str(exc))
            self.reload_failed = ReloadFailure(error=str(exc), at=now())
            return
        self.reload_failed = None
        fixed = ("state_dir", "packs_dir", "database", "status_file", "testing", "environments")
        needs_restart = [k for k in fixed if getattr(fresh, k) != getattr(self.config, k)]
        self.config = (
            fresh
            if not needs_restart
            else self.config.model_copy(
                update={
                    "sources": fresh.sources,
                    "reconcile": fresh.reconcile,
                    "log": fresh.log,
                    "notify": fresh.notify,
                    "outbox": fresh.outbox,
                    "pack_limits": fresh.pack_limits,
                }
            )
        )
        self.config._path = fresh.path
        added, removed = self.sources.configure(self.config)
        self._configure_notify(reload=True)
        self._watch_all()
        self._schedule_polls()
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
        self._write_status()
        try:
            registry = self._registry()  # the first contact migrates: db.migrated comes first
            log.info(Event.RECONCILE_STARTED, trigger=trigger)
            self._stat_cache.load_once()
            self.recorder.flush()  # events a database outage kept back
            scans = self.sources.scan_all(poll or set(), heartbeat=self._beat, changed=changed)
            faults.point("after_snapshot")
            with registry.db.read() as session:
                suspended = set(repository.suspended_refs(session))
                actual = facts.actual_packs(session, suspended)
            self.memory = with_suspended(self.memory, suspended)
            desired = Desired(
                candidates=tuple(c for s in scans for c in s.candidates),
                invalid=tuple(i for s in scans for i in s.invalid),
                sources=tuple(s.state for s in scans),
            )
            plan = make_plan(desired, actual, self.memory, time.time())
            self._log_plan(plan)
            self._show_planned(plan)
            results = self._apply(registry, plan)
            self._announce_failures(results)
            self.memory = remember(
                self.memory,
                results,
                time.time(),
                retry_initial=self.config.reconcile.retry_initial,
                retry_max=self.config.reconcile.retry_max,
            )
            heads = None
            if full:
                self._watch_all()  # a folder that appeared (or came back) since
                with registry.db.read() as session:  # read once for all three below
                    heads = repository.managed_heads(session)
                self.drift.check(registry, heads)
                self._collect_garbage(registry, desired, heads)
            self._summarise(
                registry,
                plan,
                {r.ref: r for r in results},
                started,
                started_mono,
                trigger,
                desired,
                heads,
            )
            self._recovered()
            transient = [r for r in results if r.failure_kind is FailureKind.TRANSIENT]
            # a pack that could not be written (database locked, disk full) is not its fault:
            # say so in the phase, and come back when its backoff ends, event or no event
            self.error = transient[0].error if transient else None
            self.phase = "degraded" if transient else "idle"
            self._retry_transient()
            self._tell_transient(transient)
            self.counters.count_pass(ok=True)
        except Exception as exc:  # database down, disk full...: degrade, retry with backoff
            self._degraded(exc)  # writes the status
        else:
            self._write_status()
        self._stat_cache.save_if_due()

    def _registry(self) -> Registry:
        if self.registry is None:
            self.registry = Registry.from_config(self.config)
            self.recorder.write = self.registry.record_events
            with self.registry.db.read() as session:
                remembered = facts.remembered_failures(session)
            self.memory = Memory(
                failures={**remembered, **self.memory.failures}, suspended=self.memory.suspended
            )
            self._configure_notify()
        return self.registry

    def _log_plan(self, plan: Plan) -> None:
        self.conflicts = []
        for action in plan.actions:
            candidate = action.candidate
            fields = {**action_fields(action), "reason": action.reason}
            if action.changes_something:
                log.info(Event.PACK_PLANNED, **fields)
            elif action.kind is ActionKind.BLOCKED:
                self.conditions.report(f"blocked:{action.ref}", Event.PACK_BLOCKED, **fields)
            elif action.kind is ActionKind.CONFLICT and candidate is not None:
                self.conflicts.append(
                    {
                        "ref": action.ref,
                        "source": candidate.source,
                        "entry": candidate.entry,
                        "reason": action.reason,
                    }
                )
                self.conditions.report(
                    f"conflict:{action.ref}:{candidate.source}:{candidate.entry}",
                    Event.PACK_CONFLICT,
                    **fields,
                )

    def _show_planned(self, plan: Plan) -> None:
        """Every change the plan makes is listed `pending` before it is applied, so a pass
        that waits (tests, a locked database) shows what it is working on."""
        changes = [a for a in plan.changes() if a.candidate is not None]
        for action in changes:
            assert action.candidate is not None
            shown = self.packs.get(action.ref)
            self.packs[action.ref] = PackStatus(
                state="pending",
                version=shown.version if shown else None,
                digest=shown.digest if shown else None,
                source=action.candidate.source,
                active_since=shown.active_since if shown else None,
                desired_version=action.candidate.version,
                last_test=shown.last_test if shown else None,
                reason=f"{action.kind.value} in progress: {action.reason}",
            )
        if changes:
            self._write_status()

    def _tell_transient(self, transient: list[StepResult]) -> None:
        """Packs that could not be written (a locked SQLite database, a full disk) make the
        daemon degraded: logged once as `daemon.degraded` while the same error lasts."""
        error = transient[0].error if transient else None
        if error is not None and error != self._told_transient:
            due = [f.retry_at for f in self.memory.failures.values() if f.retry_at]
            log.error(
                Event.DAEMON_DEGRADED,
                error=error,
                retry_in_s=round(max(min(due) - time.time(), 0), 1) if due else None,
                attempt=max(
                    (
                        self.memory.failures[r.ref].attempts
                        for r in transient
                        if r.ref in self.memory.failures
                    ),
                    default=1,
                ),
                packs=sorted(r.ref for r in transient),
            )
        self._told_transient = error

    def _apply(self, registry: Registry, plan: Plan) -> list[StepResult]:
        policies = {name: _policy(c) for name, c in self.sources.configs.items()}

        # The status file shows each registration as it lands, but is written at most every
        # STATUS_PROGRESS_S: written whole (and fsynced) after every pack, it cost a first sync
        # of 10,000 packs more than the registrations did. A write held back is made by the
        # next step or beat (at most a second later), and the pass's end writes it anyway.
        owed = False
        last_written = time.monotonic()

        def write_if_due() -> None:
            nonlocal owed, last_written
            if owed and time.monotonic() - last_written >= STATUS_PROGRESS_S:
                self._write_status()
                owed, last_written = False, time.monotonic()

        def progress(result: StepResult) -> None:
            nonlocal owed
            if result.test_status is not None:
                self.counters.count_test(result.test_status)
            if self.dispatcher is not None:
                self.dispatcher.wake()  # the step wrote events: deliver them now
            shown = landed(self.packs.get(result.ref), result, now())
            if shown is not None:
                self.packs[result.ref] = shown
                owed = True
                write_if_due()

        def beat() -> None:
            self._beat()
            write_if_due()

        applier = Applier(
            registry,
            policies,
            concurrency=self.config.reconcile.concurrency,
            cancel=self.cancel,
            on_result=progress,
            heartbeat=beat,
        )
        return applier.apply(plan)

    def _summarise(
        self,
        registry: Registry,
        plan: Plan,
        results: dict[str, StepResult],
        started: datetime,
        started_mono: float,
        trigger: str,
        desired: Desired,
        heads: list[repository.PackHead] | None = None,
    ) -> None:
        with registry.db.read() as session:
            served = facts.served_packs(session, heads)
            tests = facts.last_tests(session)
        self.packs = derive_packs(
            self.packs, served, plan, results, self.memory, tests, now(), desired.invalid
        )
        counts: dict[str, int] = {}
        for result in results.values():
            key = (
                result.action.kind.value
                if result.outcome is StepOutcome.DONE
                else (result.outcome.value)
            )
            counts[key] = counts.get(key, 0) + 1
        for pack in self.packs.values():
            counts[f"state_{pack.state}"] = counts.get(f"state_{pack.state}", 0) + 1
        self.any_failed = any(
            p.state in ("failed", "invalid", "blocked") for p in self.packs.values()
        )
        duration_ms = int((time.monotonic() - started_mono) * 1000)
        self.last_reconcile = ReconcileSummary(
            started_at=started,
            finished_at=now(),
            duration_ms=duration_ms,
            trigger=trigger,
            counts=counts,
        )
        log.info(Event.RECONCILE_FINISHED, trigger=trigger, duration_ms=duration_ms, **counts)

    def _retry_transient(self) -> None:
        """A pass when the earliest transient failure's backoff ends."""
        due = [f.retry_at for f in self.memory.failures.values() if f.kind is FailureKind.TRANSIENT]
        if due:
            self._retry_in(max(min(due) - time.time(), 0.05))

    def _retry_in(self, delay: float) -> None:
        if self._retry_timer is not None:
            self._retry_timer.cancel()
        self._retry_timer = threading.Timer(delay, lambda: self.requests.ask(full=True))
        self._retry_timer.daemon = True
        self._retry_timer.start()

    def _degraded(self, exc: Exception) -> None:
        """Not a pack's fault (database unreachable, disk full): no database contact until
        the backoff ends, and the status file says so, with when it is tried again."""
        self.counters.count_pass(ok=False)
        self._db_failures += 1
        settings = self.config.reconcile
        delay = backoff(self._db_failures, settings.retry_initial, settings.retry_max)
        self.phase = "degraded"
        self.error = headline(exc)
        self._backoff_until = time.monotonic() + delay
        self.next_retry_at = now() + timedelta(seconds=delay)
        log.error(
            Event.DAEMON_DEGRADED, error=self.error, retry_in_s=delay, attempt=self._db_failures
        )
        self._close_registry()
        self._retry_in(delay)
        self._write_status()

    def _recovered(self) -> None:
        if self._db_failures:
            log.info(Event.DAEMON_RECOVERED, attempts=self._db_failures)
        self._db_failures = 0
        self._backoff_until, self.next_retry_at = 0.0, None

    # -- events out ---------------------------------------------------------------------------

    def _announce(self, event: Event, fields: dict[str, Any], stable: str | None) -> None:
        """A log event of the daemon's that is also an outbox event (source.error,
        pack.blocked ...): written now, or on the next pass if the database refuses."""
        if event not in events.OUTBOX_EVENTS:
            return
        if self.recorder.record(events.record(event, fields, stable=stable)) and self.dispatcher:
            self.dispatcher.wake()

    def _announce_failures(self, results: list[StepResult]) -> None:
        for result in results:
            if result.outcome is not StepOutcome.FAILED:
                continue
            fields = failure_fields(result.action, result.failure_kind, result.error)
            # the same failure of the same content is one event, however often retried
            stable = f"{result.ref}\x1f{fields['digest']}\x1f{fields['action']}\x1f{result.error}"
            self._announce(Event.PACK_FAILED, fields, stable)

    def _configure_notify(self, *, reload: bool = False) -> None:
        """Sinks as the config says: the registry routes new events to them, the dispatcher
        (started with the first sink, on the leader's side only in a cluster) delivers; on
        `reload` (SIGHUP) every sink is built anew."""
        if self.registry is not None:
            self.registry.outbox.routes = events.routes(self.config.notify)
        if not self.delivering:
            return
        if self.dispatcher is not None:
            if reload:
                self.dispatcher.poll_interval = self.config.outbox.poll_interval
                self.dispatcher.reconfigure(self.config.notify)
        elif self.config.notify and self.registry is not None:
            self.dispatcher = self._make_dispatcher()
            self.dispatcher.start()
        if self.dispatcher is not None:
            self._refresh_deliveries()

    def _make_dispatcher(self) -> Dispatcher:
        from attuned.notify.dispatcher import Dispatcher
        from attuned.store.database import Database

        return Dispatcher(
            Database.from_config(self.config),
            self.config.notify,
            poll_interval=self.config.outbox.poll_interval,
            active=lambda: self.role == "leader",
            on_attempt=self.counters.count_notify,
        )

    def _deliver_once(self, timeout: float | None = None) -> bool:
        """`reconcile --once`: deliver what this pass (and any earlier one) left due, for up
        to `outbox.drain_timeout`; what is left waits in the outbox for the next run."""
        if not self.config.notify or self.registry is None:
            return True
        self.dispatcher = self._make_dispatcher()
        finished = self.dispatcher.drain(
            self.config.outbox.drain_timeout if timeout is None else timeout
        )
        self._refresh_deliveries()
        return finished

    def _stop_dispatcher(self) -> None:
        if self.dispatcher is not None:
            self.dispatcher.stop()
            self.dispatcher.database.dispose()
            self.dispatcher = None

    def _refresh_deliveries(self) -> None:
        if self.dispatcher is None:
            return
        self.dispatcher.changed.clear()
        try:
            self.dispatcher.refresh()
        except Exception as exc:  # the database is down: show the counts last read
            log.debug(Event.NOTIFY_SINK_FAILED, error=headline(exc))

    def _notify_status(self) -> list[SinkStatus]:
        dispatcher = self.dispatcher
        if dispatcher is None:
            return []
        counts, problems = dispatcher.counts(), dispatcher.problems()
        sinks = []
        for config in dispatcher.configs:
            count = counts.get(config.name)
            sinks.append(
                SinkStatus(
                    name=config.name,
                    type=config.type,
                    target=config.target(),
                    dispatching=self.role == "leader",
                    problem=problems.get(config.name),
                    **(asdict(count) if count else {}),  # pending, delivered, dead, ...
                )
            )
        return sinks

    # -- upkeep on full passes ----------------------------------------------------------------

    def _collect_garbage(
        self, registry: Registry, desired: Desired, heads: list[repository.PackHead]
    ) -> None:
        keep = {p.digest for p in heads} | {c.digest for c in desired.candidates}
        self.snapshots.collect_garbage(keep)
        self.sources.collect_garbage()
        registry.collect_environments()  # after the snapshots: a collected one uses none
        registry.link_pending_runtimes()  # a runtime may have come from outside attuned
        registry.prune_events(
            self.config.outbox.retention_days, sinks={s.name for s in self.config.notify}
        )
        registry.prune_case_history()
        if self.cluster is not None and self.role == "leader":
            self.cluster.collect_garbage()

    # -- status -------------------------------------------------------------------------------

    def _write_status(self) -> None:
        if self.dispatcher is not None and self.dispatcher.counts_stale():
            self._refresh_deliveries()  # only here: the file must show what was read
        status = self._status()
        try:
            write_status(self.config.status_path, status)
        except OSError as exc:
            log.error(
                Event.STATUS_WRITE_FAILED,
                path=str(self.config.status_path),
                error=exc.strerror or str(exc),
            )
        if self.config.metrics_file is not None:
            try:
                write_metrics(
                    self.config.metrics_file, render_metrics(status, self.counters.snapshot())
                )
            except OSError as exc:
                log.error(
                    Event.METRICS_WRITE_FAILED,
                    path=str(self.config.metrics_file),
                    error=exc.strerror or str(exc),
                )
        if self.notifier.is_ready:
            self.notifier.status(summary_line(status))
            self._status_sent_at = time.monotonic()

    def _leader_name(self) -> str | None:
        if not self.clustered:
            return self.config.cluster.node
        return self.cluster.leader_name() if self.cluster is not None else None

    def _status(self) -> Status:
        return Status(
            daemon=DaemonStatus(
                version=__version__,
                pid=os.getpid(),
                started_at=self.started_at,
                phase=self.phase,
                config_file=str(self.config.path) if self.config.path else None,
                error=self.error,
                next_retry_at=self.next_retry_at,
                config_reload_failed=self.reload_failed,
                role=self.role,
                node=self.config.cluster.node,
                leader=self._leader_name(),
            ),
            updated_at=now(),
            last_reconcile=self.last_reconcile,
            sources=list(self.sources.status.values()),
            packs=self.packs,
            conflicts=self.conflicts,
            notify=self._notify_status(),
        )


def _policy(config: DirectorySourceConfig | GitSourceConfig) -> SourcePolicy:
    """How the daemon registers what a source offers, and how Attune's row names it."""
    if isinstance(config, GitSourceConfig):
        return SourcePolicy(
            config.skip_tests,
            config.force,
            config.regressions,
            git=True,
            location=config.shown_url,
        )
    return SourcePolicy(
        config.skip_tests, config.force, config.regressions, location=str(config.path.absolute())
    )
