"""`attune`: Attune's own `PackRegistered` / `PackDeleted` messages on its events exchange,
so Attune's workers set up a pack's runtime environments (and its sensors reload) as soon as
attuned registers or removes it, exactly as after a registration through Attune's API.

The wire format follows Attune's `crates/common/src/mq/messages.rs` (MessageEnvelope,
serialized by serde_json) and `publisher.rs` (persistent, message_id, correlation_id,
timestamp, content type): see docs/notifications.md. The message id is the event's id, so a
redelivered message carries the same id. Publishing waits for the broker's confirm and is
`mandatory`: a message no queue takes (no Attune service ever bound one) is retried, not lost.
"""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from typing import Any

import pika
import pika.exceptions
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt

from attuned.notify.sinks.base import Attempt
from attuned.settings.notify import AttuneSinkConfig
from attuned.store.outbox import StoredEvent

# attuned event -> (Attune's MessageType, its routing key on attune.events)
_REGISTERED = ("PackRegistered", "pack.registered")
_DELETED = ("PackDeleted", "pack.deleted")
MESSAGES = {
    "pack.registered": _REGISTERED,
    "pack.upgraded": _REGISTERED,
    "pack.reinstalled": _REGISTERED,
    "pack.unregistered": _DELETED,
}


def rfc3339(moment: datetime) -> str:
    """chrono's serde form of a DateTime<Utc> (SecondsFormat::AutoSi, `Z`): no fraction, or
    3 or 6 digits, whichever is exact."""
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    micro = moment.microsecond
    if micro == 0:
        return text + "Z"
    if micro % 1000 == 0:
        return f"{text}.{micro // 1000:03d}Z"
    return f"{text}.{micro:06d}Z"


def attune_message(event: StoredEvent) -> tuple[str, dict[str, Any]] | None:
    """(routing key, MessageEnvelope) for an event Attune has a message for, else None."""
    kind = MESSAGES.get(event.name)
    if kind is None:
        return None
    message_type, routing_key = kind
    data = event.data
    payload: dict[str, Any] = {"pack_id": int(data["pack_id"]), "pack_ref": str(data["pack"])}
    if message_type == "PackRegistered":
        payload["version"] = str(data["version"])
        payload["runtime_names"] = [str(n) for n in data.get("runtime_names") or []]
    envelope = {  # field order as Attune's struct declares it
        "message_id": event.id,
        "correlation_id": event.id,
        "message_type": message_type,
        "version": "1.0",
        "timestamp": rfc3339(event.created_at),
        "headers": {"retry_count": 0},
        "payload": payload,
    }
    return routing_key, envelope


class AttuneSink:
    def __init__(self, config: AttuneSinkConfig) -> None:
        self.name = config.name
        self.exchange = config.exchange
        self._parameters = pika.URLParameters(config.resolved_url())
        self._parameters.socket_timeout = config.timeout
        self._parameters.blocked_connection_timeout = config.timeout
        self._parameters.connection_attempts = 1
        self._connection: pika.BlockingConnection | None = None
        self._channel: Any = None
        # one quick reconnect when the broker dropped an idle connection
        self._reconnecting = Retrying(
            stop=stop_after_attempt(2),
            retry=retry_if_exception_type(
                (pika.exceptions.StreamLostError, pika.exceptions.ConnectionWrongStateError)
            ),
            before_sleep=lambda _state: self._reset(),
            reraise=True,
        )

    def deliver(self, event: StoredEvent) -> Attempt:
        message = attune_message(event)
        if message is None:
            return Attempt.dead(f"Attune has no message for {event.name}")
        routing_key, envelope = message
        body = json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode()
        properties = pika.BasicProperties(
            content_type="application/json",
            delivery_mode=2,  # persistent, as Attune publishes
            message_id=event.id,
            correlation_id=event.id,
            timestamp=int(event.created_at.timestamp()),
        )
        try:
            for attempt in self._reconnecting:
                with attempt:
                    self._open().basic_publish(
                        self.exchange, routing_key, body, properties, mandatory=True
                    )
        except pika.exceptions.UnroutableError:
            return Attempt.retry(
                f"no queue is bound to {self.exchange} for {routing_key}: "
                "has an Attune worker or sensor service started on this broker?"
            )
        except pika.exceptions.NackError:
            self._reset()
            return Attempt.retry("the broker refused the message (nack)")
        except pika.exceptions.ChannelClosedByBroker as exc:
            self._reset()
            if exc.reply_code == 404:
                return Attempt.retry(
                    f"exchange {self.exchange!r} does not exist on this broker: "
                    "start one of Attune's services first (they declare it)"
                )
            return Attempt.retry(f"channel closed by the broker: {exc.reply_text}")
        except pika.exceptions.AMQPError as exc:
            self._reset()
            return Attempt.retry(f"{type(exc).__name__}: {exc}".rstrip(": "))
        except OSError as exc:
            self._reset()
            return Attempt.retry(f"{type(exc).__name__}: {exc}")
        return Attempt.delivered(f"confirmed by the broker ({routing_key})")

    def _open(self) -> Any:
        if self._connection is None or self._connection.is_closed:
            self._connection = pika.BlockingConnection(self._parameters)
            self._channel = None
        if self._channel is None or self._channel.is_closed:
            channel = self._connection.channel()
            channel.confirm_delivery()
            channel.exchange_declare(self.exchange, passive=True)  # exists, or 404
            self._channel = channel
        return self._channel

    def _reset(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            with contextlib.suppress(pika.exceptions.AMQPError):
                connection.close()

    def idle(self) -> None:
        """Answer the broker's heartbeats while no event is due."""
        if self._connection is not None and self._connection.is_open:
            try:
                self._connection.process_data_events(0)
            except pika.exceptions.AMQPError:
                self._reset()

    def close(self) -> None:
        self._reset()
