"""A real RabbitMQ broker for tests: a fresh, empty vhost per test, deleted after.

The broker is the one `ATTUNED_TEST_AMQP_URL` names (`.ci/run` sets it to
`amqp://guest:guest@127.0.0.1:5672/%2f`, starting Debian's rabbitmq-server if needed);
without it the tests that use the broker are skipped, saying why. Each test gets a vhost of
its own, made with `rabbitmqctl` (on a broker of this machine that we may administer); when
that cannot be done, the test runs in the URL's own vhost, and the queues and exchanges it
declares through the `amqp` fixture are deleted after it (ones that were there before it are
never touched: a test that would have to is skipped instead).

Fixtures: `amqp_url` (the URL, with its credentials) and `amqp` (a `Broker` on that URL, to
declare Attune's topology and read the queues). Make them visible with
`pytest_plugins = ["tests.rabbitmq"]` (tests/conftest.py does).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import pika
import pika.exceptions
import pytest

AMQP_ENV = "ATTUNED_TEST_AMQP_URL"
MISSING_REASON = (
    f"RabbitMQ tests need {AMQP_ENV} (e.g. amqp://guest:guest@127.0.0.1:5672/%2f); "
    ".ci/run sets it (and starts Debian's rabbitmq-server)"
)
_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
_CTL_TIMEOUT = 30.0
# Debian puts it in /usr/sbin, which a non-login PATH may lack
_RABBITMQCTL = shutil.which("rabbitmqctl") or shutil.which("rabbitmqctl", path="/usr/sbin")


def split_password(url: str) -> tuple[str, str | None]:
    """(`url` without its password, the password): attuned's config refuses a password in
    the URL, so tests give it by `password_env`."""
    parts = urlsplit(url)
    if parts.password is None:
        return url, None
    netloc = parts.hostname or ""
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if parts.port:
        netloc += f":{parts.port}"
    if parts.username:
        netloc = f"{parts.username}@{netloc}"
    bare = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return bare, unquote(parts.password)


def with_vhost(url: str, vhost: str) -> str:
    parts = urlsplit(url)
    path = "/" + quote(vhost, safe="")
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))


@dataclass(frozen=True)
class Message:
    """One message taken from a queue."""

    routing_key: str
    exchange: str
    properties: Any  # pika.BasicProperties
    body: bytes
    redelivered: bool


@dataclass
class Broker:
    """The test's vhost (`own_vhost`), or the shared one whose leftovers it removes after."""

    url: str
    own_vhost: bool
    _connection: Any = None
    _channel: Any = None
    _exchanges: list[str] = field(default_factory=list)  # what the test created
    _queues: list[str] = field(default_factory=list)

    def _connect(self) -> Any:
        if self._connection is None or self._connection.is_closed:
            self._connection = pika.BlockingConnection(pika.URLParameters(self.url))
            self._channel = None
        return self._connection

    @property
    def channel(self) -> Any:
        """A channel of the test's own connection (reopened after the broker closed it)."""
        connection = self._connect()
        if self._channel is None or self._channel.is_closed:
            self._channel = connection.channel()
        return self._channel

    def _exists(self, kind: str, name: str) -> bool:
        """Whether an exchange or queue exists: a passive declare on a channel of its own
        (the broker closes the channel to say no)."""
        probe = self._connect().channel()
        try:
            if kind == "exchange":
                probe.exchange_declare(name, passive=True)
            else:
                probe.queue_declare(name, passive=True)
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code == 404:
                return False
            raise
        with contextlib.suppress(pika.exceptions.AMQPError):
            probe.close()
        return True

    def exchange_exists(self, name: str) -> bool:
        return self._exists("exchange", name)

    def queue_exists(self, name: str) -> bool:
        return self._exists("queue", name)

    def declare_exchange(self, name: str, exchange_type: str = "topic") -> None:
        """Declare a durable exchange, as Attune's services declare theirs."""
        if not self.own_vhost and not self.exchange_exists(name):
            self._exchanges.append(name)
        self.channel.exchange_declare(
            name, exchange_type=exchange_type, durable=True, auto_delete=False
        )

    def declare_queue(self, name: str, arguments: dict[str, Any] | None = None) -> None:
        """Declare a durable queue (never one a real service made: the test is skipped)."""
        if not self.own_vhost:
            if self.queue_exists(name):
                pytest.skip(f"queue {name!r} exists on the shared vhost of {AMQP_ENV}")
            self._queues.append(name)
        self.channel.queue_declare(
            name, durable=True, exclusive=False, auto_delete=False, arguments=arguments
        )

    def bind(self, queue: str, exchange: str, routing_key: str) -> None:
        self.channel.queue_bind(queue, exchange, routing_key=routing_key)

    def delete_exchange(self, name: str) -> None:
        self.channel.exchange_delete(name)

    def get(self, queue: str) -> Message | None:
        """The next message of `queue` (acknowledged), or None when it is empty."""
        method, properties, body = self.channel.basic_get(queue, auto_ack=True)
        if method is None:
            return None
        return Message(
            routing_key=method.routing_key,
            exchange=method.exchange,
            properties=properties,
            body=bytes(body),
            redelivered=bool(method.redelivered),
        )

    def drain(self, queue: str) -> list[Message]:
        """Every message waiting in `queue`, oldest first."""
        taken: list[Message] = []
        while (message := self.get(queue)) is not None:
            taken.append(message)
        return taken

    def close(self) -> None:
        """Delete what the test made on a shared vhost, then disconnect."""
        try:
            if self._queues or self._exchanges:
                channel = self.channel
                for queue in self._queues:
                    channel.queue_delete(queue)
                for exchange in self._exchanges:
                    channel.exchange_delete(exchange)
        finally:
            if self._connection is not None and self._connection.is_open:
                with contextlib.suppress(pika.exceptions.AMQPError):
                    self._connection.close()
            self._connection = self._channel = None


class _Vhosts:
    """Makes and deletes vhosts with rabbitmqctl; deletions run in the background (each
    takes half a second) and are waited for at the end of the session."""

    def __init__(self) -> None:
        self.broken: str | None = None  # why rabbitmqctl cannot be used, once seen
        self._deleting: list[tuple[str, subprocess.Popen[bytes]]] = []

    def usable(self, url: str) -> bool:
        if self.broken is not None:
            return False
        if _RABBITMQCTL is None:
            self.broken = "rabbitmqctl not found"
        elif (urlsplit(url).hostname or "") not in _LOCAL_HOSTS:
            self.broken = f"{AMQP_ENV} names a broker on another machine"
        return self.broken is None

    def create(self, name: str, user: str) -> bool:
        """Make vhost `name` with all rights for `user`; False (and a warning) when
        rabbitmqctl refuses (not root, no Erlang cookie ...)."""
        definitions = {
            "vhosts": [{"name": name}],
            "permissions": [
                {"user": user, "vhost": name, "configure": ".*", "write": ".*", "read": ".*"}
            ],
        }
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "vhost.json"
            path.write_text(json.dumps(definitions))
            path.chmod(0o644)  # rabbitmqctl may read it as user rabbitmq
            Path(tmp).chmod(0o755)
            # one call (half a second) where the broker can import definitions ...
            done = _ctl("import_definitions", str(path))
        if done is not None:  # ... else the two classic ones
            done = _ctl("add_vhost", name) or _ctl(
                "set_permissions", "-p", name, user, ".*", ".*", ".*"
            )
        if done is not None:
            self.broken = f"rabbitmqctl failed: {done}"
            warnings.warn(
                f"{self.broken}; RabbitMQ tests share the vhost of {AMQP_ENV}", stacklevel=2
            )
            self.delete(name)
            return False
        return True

    def delete(self, name: str) -> None:
        process = subprocess.Popen(
            [str(_RABBITMQCTL), "-q", "delete_vhost", name],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._deleting.append((name, process))

    def finish(self) -> None:
        for name, process in self._deleting:
            try:
                _, err = process.communicate(timeout=_CTL_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()
                err = b"timed out"
            if process.returncode != 0 and not self.broken and b"does not exist" not in err:
                warnings.warn(f"vhost {name} was not deleted: {err.decode().strip()}", stacklevel=1)
        self._deleting.clear()


def _ctl(*args: str) -> str | None:
    """Run rabbitmqctl; None when it worked, else what it said."""
    try:
        proc = subprocess.run(
            [str(_RABBITMQCTL), "-q", *args],
            capture_output=True,
            text=True,
            timeout=_CTL_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if proc.returncode == 0:
        return None
    said = (proc.stderr or proc.stdout).strip().splitlines()
    return said[-1] if said else f"exit {proc.returncode}"


@pytest.fixture(scope="session")
def _amqp_vhosts() -> Iterator[_Vhosts]:
    vhosts = _Vhosts()
    try:
        yield vhosts
    finally:
        vhosts.finish()


@pytest.fixture
def amqp(_amqp_vhosts: _Vhosts) -> Iterator[Broker]:
    """The test's broker: a fresh, empty vhost (deleted after), or the shared one."""
    base = os.environ.get(AMQP_ENV, "").strip()
    if not base:
        pytest.skip(MISSING_REASON)
    name = f"attuned-test-{uuid.uuid4().hex[:12]}"
    user = unquote(urlsplit(base).username or "guest")
    own = _amqp_vhosts.usable(base) and _amqp_vhosts.create(name, user)
    broker = Broker(with_vhost(base, name) if own else base, own_vhost=own)
    try:
        yield broker
    finally:
        try:
            broker.close()
        finally:
            if own:
                _amqp_vhosts.delete(name)


@pytest.fixture
def amqp_url(amqp: Broker) -> str:
    """An AMQP URL (with its credentials) of the test's own, empty vhost."""
    return amqp.url
