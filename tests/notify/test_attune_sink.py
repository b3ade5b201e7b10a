"""The `attune` sink against a real RabbitMQ broker, with Attune's own topology.

Each test sets up the broker as Attune's services do (exchange `attune.events`, topic and
durable; a worker's queue `worker.<id>.packs`, durable, dead-lettered to `attune.dlx`, bound
with `pack.registered` and `pack.deleted`), registers real packs through a Registry whose
outbox routes to an `attune` sink, drains a Dispatcher, and reads what a worker would read.
The messages are checked against models mirroring Attune's Rust structs
(`crates/common/src/mq/messages.rs`: MessageEnvelope, MessageHeaders, PackRegisteredPayload
of the generation whose schema attuned writes, PackDeletedPayload) and its publisher's AMQP
properties (`publisher.rs`).
"""

from __future__ import annotations

import json
import math
import re
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from attuned.notify.dispatcher import Dispatcher
from attuned.notify.events import routes
from attuned.registry import Registry
from attuned.settings.notify import AttuneSinkConfig
from attuned.settings.testing import ExecutorSettings
from attuned.store import outbox_admin
from attuned.store.attune import tables as t
from attuned.store.database import Database
from attuned.store.models import utcnow
from attuned.store.outbox import DELIVERED, PENDING, Outbox, StoredEvent
from attuned.store.outbox_admin import Listed
from attuned.store.packstore import PackStore
from attuned.testing.executor import TestExecutor
from tests.conftest import PackFactory
from tests.rabbitmq import Broker, Message, split_password

SINK = "attune-mq"
PASSWORD_ENV = "ATTUNED_TEST_AMQP_PASSWORD"
EXCHANGE = "attune.events"
WORKER_QUEUE = "worker.1.packs"
RETRY = 0.3  # seconds between attempts of a pending delivery (the sink's retry_initial/max)
ACTION = {
    "actions/greet.yaml": "ref: hello.greet\nrunner_type: shell\nentry_point: greet.sh\n",
    "actions/greet.sh": "echo hi\n",
}

# -- Attune's structs, strictly: extra fields refused, no coercion --------------------------

I64 = Annotated[int, Field(ge=-(2**63), lt=2**63)]
U32 = Annotated[int, Field(ge=0, lt=2**32)]
# chrono's serde form of DateTime<Utc> (SecondsFormat::AutoSi, Z): 0, 3, 6 or 9 digits
RFC3339_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.(\d{3}|\d{6}|\d{9}))?Z$")
ENVELOPE_KEYS = [  # serde writes them in declaration order
    "message_id",
    "correlation_id",
    "message_type",
    "version",
    "timestamp",
    "headers",
    "payload",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class MessageHeaders(_Strict):
    retry_count: U32
    # source_service / trace_id are skipped when None: Attune's pack routes never set them


class PackRegisteredPayload(_Strict):
    pack_id: I64
    pack_ref: str
    version: str
    runtime_names: list[str]


class PackDeletedPayload(_Strict):
    pack_id: I64
    pack_ref: str


class _Envelope(_Strict):
    message_id: uuid.UUID
    correlation_id: uuid.UUID
    version: Literal["1.0"]
    timestamp: Annotated[str, Field(pattern=RFC3339_Z.pattern)]
    headers: MessageHeaders

    @property
    def moment(self) -> datetime:
        """The timestamp as chrono reads it (Python keeps microseconds)."""
        text = self.timestamp
        if "." in text:  # nanoseconds -> microseconds for fromisoformat
            head, frac = text[:-1].split(".")
            text = f"{head}.{frac[:6].ljust(6, '0')}Z"
        return datetime.fromisoformat(text)


class PackRegisteredEnvelope(_Envelope):
    message_type: Literal["PackRegistered"]
    payload: PackRegisteredPayload


class PackDeletedEnvelope(_Envelope):
    message_type: Literal["PackDeleted"]
    payload: PackDeletedPayload


def check_wire(message: Message, event: StoredEvent, routing_key: str) -> None:
    """What every message must be, as Attune's publisher sends it and its workers read it."""
    assert message.exchange == EXCHANGE
    assert message.routing_key == routing_key
    body = json.loads(message.body)
    assert list(body) == ENVELOPE_KEYS
    compact = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    assert message.body == compact, "serde_json writes compact JSON"
    props = message.properties
    assert props.content_type == "application/json"
    assert props.delivery_mode == 2
    assert props.message_id == body["message_id"] == event.id
    assert props.correlation_id == body["correlation_id"] == event.id
    assert isinstance(props.timestamp, int)
    assert props.headers is None
    assert body["headers"] == {"retry_count": 0}


def registered(message: Message, event: StoredEvent) -> PackRegisteredEnvelope:
    check_wire(message, event, "pack.registered")
    envelope = PackRegisteredEnvelope.model_validate_json(message.body)
    assert envelope.moment == event.created_at
    assert message.properties.timestamp == math.floor(envelope.moment.timestamp())
    return envelope


def deleted(message: Message, event: StoredEvent) -> PackDeletedEnvelope:
    check_wire(message, event, "pack.deleted")
    envelope = PackDeletedEnvelope.model_validate_json(message.body)
    assert envelope.moment == event.created_at
    assert message.properties.timestamp == math.floor(envelope.moment.timestamp())
    return envelope


# -- fixtures and helpers -------------------------------------------------------------------


@pytest.fixture
def sink(amqp_url: str, monkeypatch: pytest.MonkeyPatch) -> AttuneSinkConfig:
    """An `attune` sink on the test's vhost, its password given by variable (the config
    refuses one in the URL)."""
    url, password = split_password(amqp_url)
    if password is not None:
        monkeypatch.setenv(PASSWORD_ENV, password)
    return AttuneSinkConfig(
        name=SINK,
        url=url,
        password_env=PASSWORD_ENV if password is not None else None,
        timeout=5,
        retry_initial=RETRY,
        retry_max=RETRY,
    )


@pytest.fixture
def registry(database: Database, tmp_path: Path, sink: AttuneSinkConfig) -> Iterator[Registry]:
    executor = TestExecutor(ExecutorSettings(kill_grace=0.5))
    box = Outbox(routes([sink]), node="test-node")
    yield Registry(database, PackStore(tmp_path / "packs"), executor, outbox=box)


@pytest.fixture
def dispatcher(database: Database, sink: AttuneSinkConfig) -> Dispatcher:
    return Dispatcher(database, [sink], poll_interval=0.1)


def attune_topology(amqp: Broker) -> None:
    """What Attune's services declare: every service the events exchange, a worker its
    packs queue (`setup_worker_infrastructure`)."""
    amqp.declare_exchange(EXCHANGE, "topic")
    amqp.declare_queue(WORKER_QUEUE, {"x-dead-letter-exchange": "attune.dlx"})
    for key in ("pack.registered", "pack.deleted"):
        amqp.bind(WORKER_QUEUE, EXCHANGE, key)


def deliver(dispatcher: Dispatcher) -> None:
    assert dispatcher.drain(timeout=10), "the dispatcher did not run out of due deliveries"


def deliveries(database: Database) -> list[Listed]:
    """The sink's deliveries, oldest first."""
    with database.read() as session:
        return list(reversed(outbox_admin.listing(session, sink=SINK)))


def events(database: Database, name: str) -> list[StoredEvent]:
    """The stored events called `name`, oldest first."""
    with database.read() as session:
        found = [item.event for item in outbox_admin.listing(session) if item.event.name == name]
    return list(reversed(found))


def pack_row_id(database: Database, ref: str) -> int:
    """The id of the pack's row in Attune's `pack` table."""
    with database.read() as session:
        return int(
            session.connection()
            .execute(select(t.pack.c.id).where(t.pack.c.ref == ref))
            .scalar_one()
        )


def wait_until_due(database: Database) -> None:
    """Sleep until the sink's pending deliveries may be tried again."""
    due = [d.next_attempt_at for d in deliveries(database) if d.state == PENDING]
    assert due and all(at is not None for at in due)
    latest = max(at for at in due if at is not None)
    time.sleep(max((latest - utcnow()).total_seconds(), 0) + 0.02)


# -- the tests ------------------------------------------------------------------------------


def test_registration_and_removal_reach_an_attune_worker_queue(
    registry: Registry,
    dispatcher: Dispatcher,
    amqp: Broker,
    database: Database,
    make_pack: PackFactory,
) -> None:
    attune_topology(amqp)
    registry.register(make_pack(files=ACTION))
    pack_id = pack_row_id(database, "hello")
    deliver(dispatcher)

    [message] = amqp.drain(WORKER_QUEUE)
    [event] = events(database, "pack.registered")
    envelope = registered(message, event)
    assert envelope.payload == PackRegisteredPayload(
        pack_id=pack_id, pack_ref="hello", version="1.0.0", runtime_names=[]
    )
    assert str(envelope.message_id) == event.id
    assert [(d.event.name, d.state, d.last_error) for d in deliveries(database)] == [
        ("pack.registered", DELIVERED, None)
    ]

    registry.unregister("hello")
    deliver(dispatcher)
    [message] = amqp.drain(WORKER_QUEUE)
    [gone] = events(database, "pack.unregistered")
    envelope_deleted = deleted(message, gone)
    assert json.loads(message.body)["payload"] == {"pack_id": pack_id, "pack_ref": "hello"}
    assert envelope_deleted.payload == PackDeletedPayload(pack_id=pack_id, pack_ref="hello")
    assert [(d.event.name, d.state) for d in deliveries(database)] == [
        ("pack.registered", DELIVERED),
        ("pack.unregistered", DELIVERED),
    ]


def test_an_upgrade_sends_pack_registered_with_the_new_version(
    registry: Registry,
    dispatcher: Dispatcher,
    amqp: Broker,
    database: Database,
    make_pack: PackFactory,
) -> None:
    attune_topology(amqp)
    registry.register(make_pack(files=ACTION))
    registry.register(make_pack(version="1.1.0", files=ACTION), replace=True)
    deliver(dispatcher)

    first, second = amqp.drain(WORKER_QUEUE)
    [installed] = events(database, "pack.registered")
    [upgraded] = events(database, "pack.upgraded")
    pack_id = pack_row_id(database, "hello")
    assert registered(first, installed).payload.version == "1.0.0"
    envelope = registered(second, upgraded)
    assert envelope.payload == PackRegisteredPayload(
        pack_id=pack_id, pack_ref="hello", version="1.1.0", runtime_names=[]
    )
    assert first.properties.message_id != second.properties.message_id


def test_a_redelivered_event_keeps_its_message_id(
    registry: Registry,
    dispatcher: Dispatcher,
    amqp: Broker,
    database: Database,
    make_pack: PackFactory,
) -> None:
    attune_topology(amqp)
    registry.register(make_pack(files=ACTION))
    deliver(dispatcher)
    [first] = amqp.drain(WORKER_QUEUE)
    [event] = events(database, "pack.registered")

    with database.write() as session:
        assert outbox_admin.redeliver(session, utcnow(), event_seqs=[event.seq], sink=SINK) == 1
    deliver(dispatcher)
    [again] = amqp.drain(WORKER_QUEUE)
    registered(again, event)
    assert again.properties.message_id == first.properties.message_id == event.id
    assert again.body == first.body, "the same event is the same message, byte for byte"
    assert [d.state for d in deliveries(database)] == [DELIVERED]


def test_without_the_exchange_the_delivery_waits_until_attune_declares_it(
    registry: Registry,
    dispatcher: Dispatcher,
    amqp: Broker,
    database: Database,
    make_pack: PackFactory,
) -> None:
    if amqp.exchange_exists(EXCHANGE):
        assert not amqp.own_vhost, "a fresh vhost has no attune.events"
        pytest.skip(f"{EXCHANGE} exists on the shared vhost: cannot test its absence")
    registry.register(make_pack(files=ACTION))
    deliver(dispatcher)
    [waiting] = deliveries(database)
    assert (waiting.state, waiting.attempts) == (PENDING, 1)
    assert waiting.last_error is not None
    assert f"exchange {EXCHANGE!r} does not exist" in waiting.last_error
    assert not amqp.exchange_exists(EXCHANGE), "the sink must not declare Attune's exchange"

    attune_topology(amqp)
    wait_until_due(database)
    deliver(dispatcher)
    [done] = deliveries(database)
    assert (done.state, done.attempts, done.last_error) == (DELIVERED, 2, None)
    [message] = amqp.drain(WORKER_QUEUE)
    registered(message, done.event)


def test_an_unroutable_message_waits_until_a_queue_is_bound(
    registry: Registry,
    dispatcher: Dispatcher,
    amqp: Broker,
    database: Database,
    make_pack: PackFactory,
) -> None:
    amqp.declare_exchange(EXCHANGE, "topic")  # an Attune service ran, but no worker yet
    registry.register(make_pack(files=ACTION))
    deliver(dispatcher)
    [waiting] = deliveries(database)
    assert (waiting.state, waiting.attempts) == (PENDING, 1)
    assert waiting.last_error is not None
    assert f"no queue is bound to {EXCHANGE} for pack.registered" in waiting.last_error

    attune_topology(amqp)  # the worker starts
    wait_until_due(database)
    deliver(dispatcher)
    [done] = deliveries(database)
    assert (done.state, done.attempts) == (DELIVERED, 2)
    [message] = amqp.drain(WORKER_QUEUE)  # one copy: the unroutable one was not queued
    registered(message, done.event)


RUNTIMES = {
    # needs an environment: named
    "runtimes/ruby.yaml": """\
        ref: langs.ruby
        name: Ruby
        execution_config:
          interpreter: {binary: ruby, args: [], file_extension: ".rb"}
          environment: {env_type: bundler, dir_name: .bundle}
        """,
    # names a dependency manifest the pack has: named
    "runtimes/deno.yaml": """\
        ref: langs.deno
        name: Deno
        execution_config:
          interpreter: {binary: deno, args: [run], file_extension: ".ts"}
          dependencies: {manifest_file: deno.json}
        """,
    # no environment, no manifest: not named
    "runtimes/plain.yaml": """\
        ref: langs.plain
        name: Plain
        execution_config: {interpreter: {binary: /bin/sh, args: [], file_extension: ".sh"}}
        """,
    # needs an environment, but no action of the pack runs on it: not named
    "runtimes/idle.yaml": """\
        ref: langs.idle
        name: Idle
        execution_config: {environment: {env_type: virtualenv, dir_name: .venv}}
        """,
    "deno.json": "{}\n",
    "actions/ruby.yaml": "ref: langs.ruby_task\nrunner_type: ruby\nentry_point: task.rb\n",
    "actions/task.rb": "puts 'hi'\n",
    "actions/deno.yaml": "ref: langs.deno_task\nrunner_type: Deno\nentry_point: task.ts\n",
    "actions/task.ts": "console.log('hi')\n",
    "actions/plain.yaml": "ref: langs.plain_task\nrunner_type: plain\nentry_point: task.sh\n",
    "actions/task.sh": "echo hi\n",
}


def test_runtime_names_are_the_runtimes_whose_actions_need_an_environment(
    registry: Registry,
    dispatcher: Dispatcher,
    amqp: Broker,
    database: Database,
    make_pack: PackFactory,
) -> None:
    attune_topology(amqp)
    registry.register(make_pack("langs", files=RUNTIMES))
    deliver(dispatcher)

    [message] = amqp.drain(WORKER_QUEUE)
    [event] = events(database, "pack.registered")
    envelope = registered(message, event)
    # Attune's worker sets up an environment for each of these (lowercase runtime names)
    assert envelope.payload.runtime_names == ["deno", "ruby"]
    assert envelope.payload.pack_id == pack_row_id(database, "langs")
