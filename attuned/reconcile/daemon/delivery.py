"""The daemon's side of notifications: outbox events recorded, their dispatcher run.

Passes and conditions only say "this happened"; here that becomes an outbox event (kept back
while the database refuses) and a wake-up for the dispatcher, which is started, rebuilt on
reload, drained for `--once` and stopped as the daemon's life cycle asks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from attuned.config import AttunedConfig
from attuned.errors import headline
from attuned.notify import events
from attuned.notify.recorder import EventRecorder
from attuned.reconcile.apply import StepOutcome, StepResult, failure_fields
from attuned.registry import Registry
from attuned.report.log import Event, get_logger
from attuned.report.metrics import MetricCounters

if TYPE_CHECKING:  # httpx and pika come with the dispatcher: imported only with a sink
    from attuned.notify.dispatcher import Dispatcher

log = get_logger()


class Delivery:
    """The event recorder and, when sinks are configured, the dispatcher beside the loop."""

    def __init__(self, counters: MetricCounters, is_leader: Callable[[], bool]) -> None:
        self.recorder = EventRecorder()
        self.counters = counters
        self.is_leader = is_leader
        self.dispatcher: Dispatcher | None = None  # started with the registry, when sinks exist
        self.delivering = False  # `run`: deliver all along (`--once` drains after its pass)

    def wake(self) -> None:
        if self.dispatcher is not None:
            self.dispatcher.wake()

    def counts_stale(self) -> bool:
        return self.dispatcher is not None and self.dispatcher.counts_stale()

    def announce(self, event: Event, fields: dict[str, Any], stable: str | None) -> None:
        """A log event of the daemon's that is also an outbox event (source.error,
        pack.blocked ...): written now, or on the next pass if the database refuses."""
        if event not in events.OUTBOX_EVENTS:
            return
        if self.recorder.record(events.record(event, fields, stable=stable)) and self.dispatcher:
            self.dispatcher.wake()

    def announce_failures(self, results: list[StepResult]) -> None:
        for result in results:
            if result.outcome is not StepOutcome.FAILED:
                continue
            fields = failure_fields(result.action, result.failure_kind, result.error)
            # the same failure of the same content is one event, however often retried
            stable = f"{result.ref}\x1f{fields['digest']}\x1f{fields['action']}\x1f{result.error}"
            self.announce(Event.PACK_FAILED, fields, stable)

    def configure(
        self, config: AttunedConfig, registry: Registry | None, *, reload: bool = False
    ) -> None:
        """Sinks as the config says: the registry routes new events to them, the dispatcher
        (started with the first sink, on the leader's side only in a cluster) delivers; on
        `reload` (SIGHUP) every sink is built anew."""
        if registry is not None:
            registry.outbox.routes = events.routes(config.notify)
        if not self.delivering:
            return
        if self.dispatcher is not None:
            if reload:
                self.dispatcher.poll_interval = config.outbox.poll_interval
                self.dispatcher.reconfigure(config.notify)
        elif config.notify and registry is not None:
            self.dispatcher = self._make_dispatcher(config)
            self.dispatcher.start()
        if self.dispatcher is not None:
            self.refresh()

    def _make_dispatcher(self, config: AttunedConfig) -> Dispatcher:
        from attuned.notify.dispatcher import Dispatcher
        from attuned.store.database import Database

        return Dispatcher(
            Database.from_config(config),
            config.notify,
            poll_interval=config.outbox.poll_interval,
            active=self.is_leader,
            on_attempt=self.counters.count_notify,
        )

    def deliver_once(
        self, config: AttunedConfig, registry: Registry | None, timeout: float | None = None
    ) -> bool:
        """`reconcile --once`: deliver what this pass (and any earlier one) left due, for up
        to `outbox.drain_timeout`; what is left waits in the outbox for the next run."""
        if not config.notify or registry is None:
            return True
        self.dispatcher = self._make_dispatcher(config)
        finished = self.dispatcher.drain(
            config.outbox.drain_timeout if timeout is None else timeout
        )
        self.refresh()
        return finished

    def stop(self) -> None:
        if self.dispatcher is not None:
            self.dispatcher.stop()
            self.dispatcher.database.dispose()
            self.dispatcher = None

    def refresh(self) -> None:
        if self.dispatcher is None:
            return
        self.dispatcher.changed.clear()
        try:
            self.dispatcher.refresh()
        except Exception as exc:  # the database is down: show the counts last read
            log.debug(Event.NOTIFY_SINK_FAILED, error=headline(exc))
