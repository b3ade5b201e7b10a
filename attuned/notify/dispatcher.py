"""Deliver the outbox: one thread per sink, each working through its own queue of pending
deliveries in the database, so a slow or dead sink delays nobody else, and the reconcile
loop never waits for any of them.

Per sink, a batch is the deliveries whose subject's oldest pending one is due; within a
subject they go in order and stop at the first that fails (it is retried after an
exponential backoff with jitter, and the ones behind it wait). Verdicts are written when
the batch ends: a crash in between sends those events again, with the same ids: delivery
is at least once, and receivers deduplicate by id.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from tenacity import RetryCallState, Retrying, wait_exponential_jitter

from attuned import faults
from attuned.errors import headline
from attuned.notify.sinks import AnySinkConfig, Attempt, Sink, build
from attuned.report.log import Event, get_logger
from attuned.settings.notify import SecretError
from attuned.store import delivery_queue, outbox
from attuned.store.database import Database
from attuned.store.delivery_queue import Queued, Verdict
from attuned.store.models import utcnow
from attuned.store.outbox import DEAD, DELIVERED, PENDING, SinkCounts

log = get_logger()

BATCH_SECONDS = 1.0  # verdicts are written at least this often while a batch is sent
_STOP_WAIT = 3.0  # seconds `stop` waits for a sink's thread (an attempt in flight is redone)


def retry_delay(config: AnySinkConfig, attempts: int, asked: float | None = None) -> float:
    """Seconds before the next attempt, after `attempts` failed ones: what the receiver asked
    for (Retry-After), else exponential from `retry_initial` with up to that much jitter;
    never beyond `retry_max`."""
    if asked is not None:
        return min(max(asked, 0.0), config.retry_max)
    wait = wait_exponential_jitter(
        multiplier=config.retry_initial, max=config.retry_max, jitter=config.retry_initial
    )
    state = RetryCallState(Retrying(), None, (), {})
    state.attempt_number = attempts
    return float(wait(state))


def verdict_for(config: AnySinkConfig, queued: Queued, attempt: Attempt, now: datetime) -> Verdict:
    """The delivery's next state after `attempt`."""
    attempts = queued.attempts + 1
    if attempt.verdict == "delivered":
        return Verdict(queued.delivery_id, DELIVERED, now)
    if attempt.verdict == "dead":
        return Verdict(queued.delivery_id, DEAD, now, attempt.detail)
    if attempts >= config.max_attempts:
        return Verdict(
            queued.delivery_id, DEAD, now, f"{attempt.detail} (gave up after {attempts} attempts)"
        )
    delay = retry_delay(config, attempts, attempt.retry_after)
    return Verdict(
        queued.delivery_id, PENDING, now, attempt.detail, retry_at=now + timedelta(seconds=delay)
    )


class _SinkWorker:
    def __init__(
        self, dispatcher: Dispatcher, config: AnySinkConfig, *, until_idle: bool = False
    ) -> None:
        self.dispatcher = dispatcher
        self.config = config
        self.until_idle = until_idle  # return once nothing is due (drain) instead of waiting
        self.broken: str | None = None  # why the sink cannot be built (a secret missing ...)
        self.stopping = threading.Event()
        self.wakeup = threading.Event()
        self.sink: Sink | None = None
        self.troubled = False  # the last look ended in an error (database down, no secret)
        self.next_retry: datetime | None = None  # the earliest retry this worker scheduled
        self._said: str | None = None  # the last error logged: an outage is said once
        self.thread = threading.Thread(target=self._run, name=f"notify-{config.name}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.wakeup.set()

    def _run(self) -> None:
        try:
            while not self.stopping.is_set():
                self.wakeup.clear()
                sent = self.work()
                if sent or self.stopping.is_set():
                    continue
                if self.until_idle:
                    return
                self.wakeup.wait(self._pause())
                if self.sink is not None:
                    self.sink.idle()
        finally:
            if self.sink is not None:
                self.sink.close()

    def _pause(self) -> float:
        """Until the next look: the poll interval, or sooner when a retry falls due."""
        pause = self.dispatcher.poll_interval
        if self.next_retry is not None:
            pause = min(pause, max((self.next_retry - utcnow()).total_seconds(), 0.01))
        return pause

    def work(self) -> int:
        """One batch; returns how many attempts were made (0: nothing due, or not our turn)."""
        if not self.dispatcher.active():
            return 0
        try:
            if self.sink is None:
                self.sink = build(self.config, cancel=self.stopping)
                self.broken = None
            sent = self._batch(self.sink)
        except SecretError as exc:
            self.broken = str(exc)
            self._trouble(str(exc), error_level=True)
            return 0
        except Exception as exc:  # the database is unreachable: try again later
            self._trouble(headline(exc))
            self.stopping.wait(self.dispatcher.poll_interval)
            return 0
        self.troubled, self._said = False, None
        return sent

    def _trouble(self, error: str, *, error_level: bool = False) -> None:
        """Say what stops this sink, once while it lasts (not every poll of an outage)."""
        self.troubled = True
        if self._said != error:
            self._said = error
            (log.error if error_level else log.warning)(
                Event.NOTIFY_SINK_FAILED, sink=self.config.name, error=error
            )

    def _batch(self, sink: Sink) -> int:
        database = self.dispatcher.database
        with database.read() as session:
            queued = delivery_queue.queue(session, self.config.name, utcnow())
        if not queued:
            return 0
        verdicts: list[Verdict] = []
        held: set[str] = set()  # subjects whose earlier event was not delivered
        started = time.monotonic()
        for item in queued:
            if item.subject in held:
                continue
            if self.stopping.is_set() or time.monotonic() - started > BATCH_SECONDS:
                break
            attempt = sink.deliver(item.event)
            faults.point("after_send")
            verdict = verdict_for(self.config, item, attempt, utcnow())
            verdicts.append(verdict)
            self._report(item, attempt, verdict)
            if verdict.state != DELIVERED:
                held.add(item.subject)
        with database.write() as session:
            delivery_queue.record(session, verdicts)
        retries = [v.retry_at for v in verdicts if v.retry_at is not None]
        self.next_retry = min(retries) if retries else None
        self.dispatcher.changed.set()
        return len(verdicts)

    def _report(self, item: Queued, attempt: Attempt, verdict: Verdict) -> None:
        key = {DELIVERED: "delivered", DEAD: "dead"}.get(verdict.state, "retry")
        self.dispatcher.on_attempt(self.config.name, key)
        fields = dict(
            sink=self.config.name,
            event_id=item.event.id,
            event_name=item.event.name,
            pack=item.event.ref,
            attempt=item.attempts + 1,
        )
        if verdict.state == DELIVERED:
            log.debug(Event.NOTIFY_DELIVERED, **fields, detail=attempt.detail)
        elif verdict.state == DEAD:
            log.error(Event.NOTIFY_DEAD, **fields, error=verdict.error)
        else:
            assert verdict.retry_at is not None
            log.warning(
                Event.NOTIFY_RETRY,
                **fields,
                error=verdict.error,
                retry_in_s=round((verdict.retry_at - verdict.at).total_seconds(), 1),
            )


class Dispatcher:
    """The outbox's delivery: `start` runs one thread per sink until `stop`; `drain` delivers
    what is due now and returns (`reconcile --once`, `attuned events deliver`).

    `active`: whether this process may deliver now (in a cluster, only the leader does)."""

    def __init__(
        self,
        database: Database,
        sinks: Sequence[AnySinkConfig],
        *,
        poll_interval: float = 2.0,
        active: Callable[[], bool] = lambda: True,
        on_attempt: Callable[[str, str], None] = lambda _sink, _result: None,
    ) -> None:
        self.database = database
        self.poll_interval = poll_interval
        self.active = active
        self.on_attempt = on_attempt  # (sink, delivered|retry|dead), for the metrics
        self.changed = threading.Event()  # a delivery's state changed since the last look
        self._workers: dict[str, _SinkWorker] = {}
        self._configs = list(sinks)
        self._counts: dict[str, SinkCounts] = {}
        self._read_at = 0.0  # monotonic time of the last `refresh`
        self._lock = threading.Lock()

    @property
    def configs(self) -> list[AnySinkConfig]:
        return list(self._configs)

    def start(self) -> None:
        with self._lock:
            for config in self._configs:
                if config.name not in self._workers:
                    worker = _SinkWorker(self, config)
                    self._workers[config.name] = worker
                    worker.start()

    def wake(self) -> None:
        """Look at the queues now (after a commit that wrote events)."""
        for worker in list(self._workers.values()):
            worker.wakeup.set()

    def reconfigure(self, sinks: Sequence[AnySinkConfig]) -> None:
        """Apply a reloaded config (SIGHUP): every sink starts over, reading its secrets
        again (a rotated key takes effect); removed ones stop. Nothing is lost: what was
        pending stays in the database for the new workers."""
        self.stop()
        with self._lock:
            self._configs = list(sinks)
        self.start()

    def stop(self) -> None:
        """Stop every sink's thread, waiting at most `_STOP_WAIT` seconds in all: an attempt
        still in flight then is simply made again by whoever delivers next."""
        with self._lock:
            workers = list(self._workers.values())
            self._workers.clear()
        for worker in workers:
            worker.stop()
        deadline = time.monotonic() + _STOP_WAIT
        for worker in workers:
            worker.thread.join(timeout=max(deadline - time.monotonic(), 0))

    def drain(self, timeout: float) -> bool:
        """Deliver what is due now, each sink in its own thread, for up to `timeout` seconds;
        True when every sink ran out of due deliveries in time (False also when a sink could
        not work at all: a secret missing, the database down)."""
        workers = [_SinkWorker(self, config, until_idle=True) for config in self._configs]
        for worker in workers:
            worker.start()
        deadline = time.monotonic() + timeout
        for worker in workers:
            worker.thread.join(timeout=max(deadline - time.monotonic(), 0))
        finished = not any(w.thread.is_alive() or w.troubled for w in workers)
        for worker in workers:
            worker.stop()
        return finished

    # -- what status and metrics show ---------------------------------------------------------

    def refresh(self) -> dict[str, SinkCounts]:
        """Read each sink's delivery counts from the database (status and metrics show them)."""
        self._read_at = time.monotonic()
        with self.database.read() as session:
            counts = outbox.counts(session)
        self._counts = counts
        return counts

    def counts_stale(self) -> bool:
        """Whether the counts shown may be out of date: a delivery moved here, or another
        host delivers (a follower reads the leader's progress every poll interval)."""
        if self.changed.is_set():
            return True
        return not self.active() and time.monotonic() - self._read_at >= self.poll_interval

    def counts(self) -> dict[str, SinkCounts]:
        return dict(self._counts)

    def problems(self) -> dict[str, str | None]:
        """Each running sink's reason it cannot send at all (None: it can)."""
        return {name: worker.broken for name, worker in list(self._workers.items())}
