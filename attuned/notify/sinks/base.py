"""What a sink is: something that takes one event and says how the attempt went.

Adding a sink type = a module here with a class taking its config, and a line in
`sinks/__init__.py`. A sink never retries by itself: the dispatcher decides when to try
again, from the verdict, and keeps that decision in the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from attuned.store.outbox import StoredEvent

Verdict = Literal["delivered", "retry", "dead"]


@dataclass(frozen=True)
class Attempt:
    verdict: Verdict
    detail: str = ""  # what the other side said: "HTTP 503", "exit 2: no such user" ...
    retry_after: float | None = None  # seconds the receiver asked to wait (HTTP Retry-After)

    @classmethod
    def delivered(cls, detail: str = "") -> Attempt:
        return cls("delivered", detail)

    @classmethod
    def retry(cls, detail: str, retry_after: float | None = None) -> Attempt:
        return cls("retry", detail, retry_after)

    @classmethod
    def dead(cls, detail: str) -> Attempt:
        return cls("dead", detail)


class Sink(Protocol):
    name: str

    def deliver(self, event: StoredEvent) -> Attempt:
        """Send one event; never raises for what the other side did."""

    def idle(self) -> None:
        """Called between batches: keep a connection alive (AMQP heartbeats)."""

    def close(self) -> None: ...
