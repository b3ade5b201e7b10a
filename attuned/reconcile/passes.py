"""One reconcile pass, as named steps: scan -> observe -> plan -> apply -> remember -> upkeep.

Like a Flux controller's reconcile: each step is a small function that does one thing and
returns its part of the result, so a reader follows a pass top to bottom in `run_pass`. The
daemon lends a pass what it needs in a PassContext; what the status file must show while the
pass runs (the pack table, the conflicts, the memory of failures) is written to `live`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from attuned import faults
from attuned.config import AttunedConfig, DirectorySourceConfig
from attuned.reconcile import facts
from attuned.reconcile.apply import Applier, SourcePolicy, StepResult, action_fields
from attuned.reconcile.drift import DriftCheck
from attuned.reconcile.memory import remember, with_suspended
from attuned.reconcile.model import ActionKind, ActualPack, Desired, FailureKind, Memory, Plan
from attuned.reconcile.planner import plan as make_plan
from attuned.reconcile.snapshots import SnapshotStore
from attuned.reconcile.sourceset import SourceSet
from attuned.reconcile.statcache import StatCacheKeeper
from attuned.reconcile.summary import any_failed, derive_packs, landed, pass_counts
from attuned.registry import Registry
from attuned.report.log import ConditionLog, Event, get_logger
from attuned.report.metrics import MetricCounters
from attuned.report.status import PackStatus, ReconcileSummary, now
from attuned.settings.git import GitSourceConfig
from attuned.store import repository

if TYPE_CHECKING:  # the daemon package imports this module: a type only, no cycle
    from attuned.reconcile.daemon.delivery import Delivery

log = get_logger()

STATUS_PROGRESS_S = 0.5  # the status file is rewritten at most this often while a pass registers


class Live(Protocol):
    """What the status file shows while a pass runs: the steps update it as they go."""

    packs: dict[str, PackStatus]
    conflicts: list[dict[str, str]]
    memory: Memory


@dataclass
class PassContext:
    """What one pass works with, lent by the daemon."""

    registry: Registry
    config: AttunedConfig
    live: Live
    sources: SourceSet
    snapshots: SnapshotStore
    drift: DriftCheck
    stat_cache: StatCacheKeeper
    conditions: ConditionLog
    counters: MetricCounters
    delivery: Delivery
    cancel: threading.Event  # set on stop: running tests are killed
    beat: Callable[[], None]  # the loop is alive (scans and steps can be long)
    write_status: Callable[[], None]
    watch_all: Callable[[], None]  # a full pass watches folders that appeared since
    collect_cluster_garbage: Callable[[], None]
    started: datetime
    started_mono: float


@dataclass(frozen=True)
class Changes:
    """What a pass is asked to look at. `changed`: only these folder entries changed
    (inotify), the rest of each folder is taken as the last full scan found it."""

    full: bool = True
    poll: frozenset[str] = frozenset()
    changed: dict[str, set[str]] | None = None


@dataclass(frozen=True)
class PassResult:
    """What a pass ends with: the daemon shows it, and judges its own health by it."""

    packs: dict[str, PackStatus]
    summary: ReconcileSummary
    any_failed: bool
    transient: list[StepResult]  # not the packs' fault: a locked database, a full disk


def run_pass(ctx: PassContext, trigger: str, changes: Changes) -> PassResult:
    """One pass, step by step; an exception (the database down, a full disk) ends it, and
    the daemon degrades."""
    log.info(Event.RECONCILE_STARTED, trigger=trigger)
    desired = scan(ctx, changes)
    actual = observe(ctx)
    plan = plan_changes(ctx, desired, actual)
    results = apply(ctx, plan)
    ctx.delivery.announce_failures(results)
    ctx.live.memory = remember_results(ctx, results)
    heads = upkeep(ctx, desired) if changes.full else None
    packs = summarise_packs(ctx, plan, results, desired, heads)
    summary = finish(ctx, trigger, results, packs)
    return PassResult(
        packs=packs,
        summary=summary,
        any_failed=any_failed(packs),
        transient=[r for r in results if r.failure_kind is FailureKind.TRANSIENT],
    )


def scan(ctx: PassContext, changes: Changes) -> Desired:
    """What the sources offer, read (or taken from the caches) now."""
    ctx.stat_cache.load_once()
    ctx.delivery.recorder.flush()  # events a database outage kept back
    scans = ctx.sources.scan_all(set(changes.poll), heartbeat=ctx.beat, changed=changes.changed)
    faults.point("after_snapshot")
    return Desired(
        candidates=tuple(c for s in scans for c in s.candidates),
        invalid=tuple(i for s in scans for i in s.invalid),
        sources=tuple(s.state for s in scans),
    )


def observe(ctx: PassContext) -> dict[str, ActualPack]:
    """What the database serves; a pack suspended there is remembered as suspended."""
    with ctx.registry.db.read() as session:
        suspended = set(repository.suspended_refs(session))
        actual = facts.actual_packs(session, suspended)
    ctx.live.memory = with_suspended(ctx.live.memory, suspended)
    return actual


def plan_changes(ctx: PassContext, desired: Desired, actual: dict[str, ActualPack]) -> Plan:
    """The plan (pure: no input but its arguments), logged and shown before it is applied."""
    plan = make_plan(desired, actual, ctx.live.memory, time.time())
    log_plan(ctx, plan)
    show_planned(ctx, plan)
    return plan


def log_plan(ctx: PassContext, plan: Plan) -> None:
    """Each change planned is logged; a blocked pack and a conflict are conditions, logged
    (and announced) when they begin, and the conflicts are listed in the status."""
    ctx.live.conflicts = []
    for action in plan.actions:
        candidate = action.candidate
        fields = {**action_fields(action), "reason": action.reason}
        if action.changes_something:
            log.info(Event.PACK_PLANNED, **fields)
        elif action.kind is ActionKind.BLOCKED:
            ctx.conditions.report(f"blocked:{action.ref}", Event.PACK_BLOCKED, **fields)
        elif action.kind is ActionKind.CONFLICT and candidate is not None:
            ctx.live.conflicts.append(
                {
                    "ref": action.ref,
                    "source": candidate.source,
                    "entry": candidate.entry,
                    "reason": action.reason,
                }
            )
            ctx.conditions.report(
                f"conflict:{action.ref}:{candidate.source}:{candidate.entry}",
                Event.PACK_CONFLICT,
                **fields,
            )


def show_planned(ctx: PassContext, plan: Plan) -> None:
    """Every change the plan makes is listed `pending` before it is applied, so a pass
    that waits (tests, a locked database) shows what it is working on."""
    packs = ctx.live.packs
    changes = [a for a in plan.changes() if a.candidate is not None]
    for action in changes:
        assert action.candidate is not None
        shown = packs.get(action.ref)
        packs[action.ref] = PackStatus(
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
        ctx.write_status()


def apply(ctx: PassContext, plan: Plan) -> list[StepResult]:
    """The plan's steps, each shown in the status file as it lands."""
    policies = {name: _policy(c) for name, c in ctx.sources.configs.items()}

    # The status file shows each registration as it lands, but is written at most every
    # STATUS_PROGRESS_S: written whole (and fsynced) after every pack, it cost a first sync
    # of 10,000 packs more than the registrations did. A write held back is made by the
    # next step or beat (at most a second later), and the pass's end writes it anyway.
    owed = False
    last_written = time.monotonic()

    def write_if_due() -> None:
        nonlocal owed, last_written
        if owed and time.monotonic() - last_written >= STATUS_PROGRESS_S:
            ctx.write_status()
            owed, last_written = False, time.monotonic()

    def progress(result: StepResult) -> None:
        nonlocal owed
        if result.test_status is not None:
            ctx.counters.count_test(result.test_status)
        ctx.delivery.wake()  # the step wrote events: deliver them now
        shown = landed(ctx.live.packs.get(result.ref), result, now())
        if shown is not None:
            ctx.live.packs[result.ref] = shown
            owed = True
            write_if_due()

    def beat() -> None:
        ctx.beat()
        write_if_due()

    applier = Applier(
        ctx.registry,
        policies,
        concurrency=ctx.config.reconcile.concurrency,
        cancel=ctx.cancel,
        on_result=progress,
        heartbeat=beat,
    )
    return applier.apply(plan)


def remember_results(ctx: PassContext, results: list[StepResult]) -> Memory:
    """Failures are remembered with their backoff; successes forget them."""
    return remember(
        ctx.live.memory,
        results,
        time.time(),
        retry_initial=ctx.config.reconcile.retry_initial,
        retry_max=ctx.config.reconcile.retry_max,
    )


def upkeep(ctx: PassContext, desired: Desired) -> list[repository.PackHead]:
    """A full pass also watches new folders, checks the served files for drift and collects
    what nothing uses any more; returns the served heads, read once for all of these."""
    ctx.watch_all()  # a folder that appeared (or came back) since
    with ctx.registry.db.read() as session:  # read once for all three below
        heads = repository.managed_heads(session)
    ctx.drift.check(ctx.registry, heads)
    collect_garbage(ctx, desired, heads)
    return heads


def collect_garbage(ctx: PassContext, desired: Desired, heads: list[repository.PackHead]) -> None:
    registry, config = ctx.registry, ctx.config
    keep = {p.digest for p in heads} | {c.digest for c in desired.candidates}
    ctx.snapshots.collect_garbage(keep)
    ctx.sources.collect_garbage()
    registry.collect_environments()  # after the snapshots: a collected one uses none
    registry.link_pending_runtimes()  # a runtime may have come from outside attuned
    registry.prune_events(config.outbox.retention_days, sinks={s.name for s in config.notify})
    registry.prune_case_history()
    ctx.collect_cluster_garbage()


def summarise_packs(
    ctx: PassContext,
    plan: Plan,
    results: list[StepResult],
    desired: Desired,
    heads: list[repository.PackHead] | None,
) -> dict[str, PackStatus]:
    """Each pack's status, derived from the database's facts and what the pass did."""
    with ctx.registry.db.read() as session:
        served = facts.served_packs(session, heads)
        tests = facts.last_tests(session)
    by_ref = {r.ref: r for r in results}
    return derive_packs(
        ctx.live.packs, served, plan, by_ref, ctx.live.memory, tests, now(), desired.invalid
    )


def finish(
    ctx: PassContext, trigger: str, results: list[StepResult], packs: dict[str, PackStatus]
) -> ReconcileSummary:
    counts = pass_counts(results, packs)
    duration_ms = int((time.monotonic() - ctx.started_mono) * 1000)
    summary = ReconcileSummary(
        started_at=ctx.started,
        finished_at=now(),
        duration_ms=duration_ms,
        trigger=trigger,
        counts=counts,
    )
    log.info(Event.RECONCILE_FINISHED, trigger=trigger, duration_ms=duration_ms, **counts)
    return summary


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
