"""The dispatcher with real sinks: a webhook receiver on loopback, real commands, and the
outbox in a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from attuned.notify.dispatcher import Dispatcher, retry_delay
from attuned.notify.events import routes
from attuned.settings.notify import ExecSinkConfig, WebhookSinkConfig
from attuned.store import outbox, outbox_admin
from attuned.store.database import Database
from attuned.store.outbox import EventRecord, Outbox
from tests.notify.receiver import SECRET, Receiver, serve

FAST = {"retry_initial": 0.05, "retry_max": 0.2}


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """The webhook key, from the environment as a deployment would give it."""
    monkeypatch.setenv("ATTUNED_TEST_WEBHOOK_SECRET", SECRET)


def webhook(name: str, receiver: Receiver, **extra: Any) -> WebhookSinkConfig:
    return WebhookSinkConfig.model_validate(
        {
            "name": name,
            "url": receiver.url,
            "secret_env": "ATTUNED_TEST_WEBHOOK_SECRET",
            **FAST,
            **extra,
        }
    )


def add_events(database: Database, sinks: list[Any], *events: tuple[str, str]) -> list[str]:
    """(name, pack ref) pairs, written as the registry would; returns their ids."""
    box = Outbox(routes(sinks), node="test-host")
    records = [
        EventRecord(name, "info", f"pack:{ref}", {"pack": ref, "version": "1.0.0"}, ref=ref)
        for name, ref in events
    ]
    with database.write() as session:
        for record in records:
            box.add(session, record)
    return [r.id for r in records]


@contextmanager
def running(database: Database, sinks: list[Any], **kwargs: Any) -> Iterator[Dispatcher]:
    dispatcher = Dispatcher(database, sinks, poll_interval=0.05, **kwargs)
    dispatcher.start()
    try:
        yield dispatcher
    finally:
        dispatcher.stop()


def deliveries(database: Database, sink: str | None = None) -> list[tuple[str, str, int]]:
    """(event name, state, attempts), oldest first."""
    with database.read() as session:
        rows = outbox_admin.listing(session, sink=sink, limit=1000)
    return [(r.event.name, r.state or "-", r.attempts) for r in reversed(rows)]


def wait_until(check: Any, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_three_500s_then_a_200_is_one_delivery_with_the_same_id(database: Database) -> None:
    with serve(Receiver(answers=[500, 500, 500])) as receiver:
        sink = webhook("ci", receiver)
        [event_id] = add_events(database, [sink], ("pack.registered", "hello"))
        with running(database, [sink]):
            receiver.wait_for(1)
            wait_until(lambda: deliveries(database)[0][1] == "delivered")
    assert [r.status for r in receiver.received] == [500, 500, 500, 200]
    assert receiver.ids() == [event_id] * 4  # the idempotency key never changes
    assert all(r.signature_ok for r in receiver.received)
    assert len(receiver.accepted()) == 1
    body = receiver.accepted()[0].event
    assert (body["id"], body["event"], body["data"]["pack"], body["node"]) == (
        event_id,
        "pack.registered",
        "hello",
        "test-host",
    )
    assert deliveries(database) == [("pack.registered", "delivered", 4)]


def test_a_refusal_is_dead_at_once_and_can_be_redelivered(database: Database) -> None:
    with serve(Receiver(answers=[422])) as receiver:
        sink = webhook("ci", receiver)
        add_events(database, [sink], ("pack.registered", "hello"))
        with running(database, [sink]) as dispatcher:
            wait_until(lambda: deliveries(database)[0][1] == "dead")
            assert len(receiver.received) == 1  # no retry can change a 422
            with database.read() as session:
                [row] = outbox_admin.listing(session)
            assert row.last_error is not None and row.last_error.startswith("HTTP 422")
            assert receiver.url not in row.last_error
            with database.write() as session:
                assert outbox_admin.redeliver(session, outbox.utcnow(), dead=True) == 1
            dispatcher.wake()
            receiver.wait_for(1)
            wait_until(lambda: deliveries(database)[0][1] == "delivered")


@pytest.mark.parametrize("status", [408, 429, 503])
def test_patience_codes_and_server_errors_are_retried(database: Database, status: int) -> None:
    receiver = Receiver(answers=[status], extra_headers={"retry-after": "0"})
    with serve(receiver):
        sink = webhook("ci", receiver)
        add_events(database, [sink], ("pack.registered", "hello"))
        with running(database, [sink]):
            receiver.wait_for(1)
    assert [r.status for r in receiver.received] == [status, 200]


def test_a_receiver_that_does_not_answer_in_time_is_retried(database: Database) -> None:
    with serve(Receiver(delay=1.0)) as receiver:
        sink = webhook("ci", receiver, timeout=0.3, max_attempts=1)
        add_events(database, [sink], ("pack.registered", "hello"))
        with running(database, [sink]):
            wait_until(lambda: deliveries(database)[0][1] == "dead")
        with database.read() as session:
            [row] = outbox_admin.listing(session)
        assert row.last_error == "no answer within 0.3 s (gave up after 1 attempts)"


def test_order_is_kept_per_pack_while_other_packs_pass(database: Database) -> None:
    with serve(Receiver(answers=[503])) as receiver:
        sink = webhook("ci", receiver, retry_initial=0.3, retry_max=0.3)
        ids = add_events(
            database,
            [sink],
            ("pack.test.finished", "hello"),
            ("pack.registered", "hello"),
            ("pack.registered", "world"),
        )
        with running(database, [sink]):
            receiver.wait_for(3)
    order = [(r.id, r.status) for r in receiver.received]
    first, second, other = ids
    assert order == [(first, 503), (other, 200), (first, 200), (second, 200)]


def test_a_slow_sink_delays_nobody_else(database: Database) -> None:
    with serve(Receiver(delay=1.5)) as slow, serve(Receiver()) as fast:
        sinks = [webhook("slow", slow), webhook("fast", fast)]
        add_events(database, sinks, *(("pack.registered", f"p{n}") for n in range(5)))
        started = time.monotonic()
        with running(database, sinks):
            fast.wait_for(5, timeout=1.0)
            elapsed = time.monotonic() - started
            assert len(slow.received) <= 1  # still on its first event
    assert elapsed < 1.0


def test_attempts_are_bounded_then_dead(database: Database) -> None:
    with serve(Receiver(default=500)) as receiver:
        sink = webhook("ci", receiver, max_attempts=3)
        add_events(database, [sink], ("pack.registered", "hello"))
        with running(database, [sink]) as dispatcher:
            wait_until(lambda: deliveries(database)[0][1] == "dead")
            counts = dispatcher.refresh()["ci"]
    assert len(receiver.received) == 3
    assert (counts.dead, counts.pending, counts.delivered) == (1, 0, 0)
    assert counts.last_error == "HTTP 500 Internal Server Error (gave up after 3 attempts)"


def test_an_inactive_dispatcher_sends_nothing(database: Database) -> None:
    """A follower in a cluster: the leader delivers, the others keep their hands off."""
    with serve(Receiver()) as receiver:
        sink = webhook("ci", receiver)
        add_events(database, [sink], ("pack.registered", "hello"))
        leads = False
        with running(database, [sink], active=lambda: leads):
            time.sleep(0.4)
            assert receiver.received == []
            leads = True
            receiver.wait_for(1)


def test_a_new_dispatcher_resumes_where_a_stopped_one_left(database: Database) -> None:
    with serve(Receiver(answers=[503])) as receiver:
        sink = webhook("ci", receiver, retry_initial=0.2, retry_max=0.2)
        [event_id] = add_events(database, [sink], ("pack.registered", "hello"))
        with running(database, [sink]):
            wait_until(lambda: len(receiver.received) == 1)
        assert deliveries(database) == [("pack.registered", "pending", 1)]
        time.sleep(0.3)
        assert Dispatcher(database, [sink]).drain(timeout=10)
    assert receiver.ids() == [event_id, event_id]
    assert deliveries(database) == [("pack.registered", "delivered", 2)]


def test_a_missing_secret_is_said_and_nothing_is_sent(database: Database) -> None:
    with serve(Receiver()) as receiver:
        sink = WebhookSinkConfig(name="ci", url=receiver.url, secret_env="ATTUNED_TEST_UNSET_VAR")
        add_events(database, [sink], ("pack.registered", "hello"))
        with running(database, [sink]) as dispatcher:
            wait_until(lambda: dispatcher.problems()["ci"] is not None)
            assert dispatcher.problems()["ci"] == (
                "notify ci: secret: the environment variable ATTUNED_TEST_UNSET_VAR is not set"
            )
        assert receiver.received == []
        assert deliveries(database) == [("pack.registered", "pending", 0)]


def test_the_retry_delay_grows_and_is_capped() -> None:
    sink = WebhookSinkConfig(name="x", url="http://h/", sign=False, retry_initial=1, retry_max=10)
    delays = [retry_delay(sink, n) for n in range(1, 7)]
    assert 1 <= delays[0] <= 2 and 2 <= delays[1] <= 3 and 4 <= delays[2] <= 5
    assert delays[-1] == 10
    assert retry_delay(sink, 1, asked=120) == 10  # Retry-After is honoured, up to the cap


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for whoever adopted it to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rfind(")") + 2] not in "ZX"


# -- exec ------------------------------------------------------------------------------------


def exec_sink(tmp_path: Path, script: str, **extra: Any) -> ExecSinkConfig:
    path = tmp_path / "hook.sh"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)
    return ExecSinkConfig.model_validate(
        {"name": "script", "command": [str(path), "arg1"], **FAST, **extra}
    )


def test_a_command_gets_the_event_on_stdin_and_in_its_environment(
    database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "seen"
    monkeypatch.setenv("ATTUNED_TEST_PASSED_ON", "yes")
    monkeypatch.setenv("ATTUNED_TEST_NOT_PASSED", "leak")
    sink = exec_sink(
        tmp_path,
        f'cat > {out}.json\nenv > {out}.env\necho "$1" > {out}.arg\n',
        pass_env=["ATTUNED_TEST_PASSED_ON"],
        env={"CHANNEL": "#ops"},
    )
    [event_id] = add_events(database, [sink], ("pack.rolled_back", "hello"))
    assert Dispatcher(database, [sink]).drain(timeout=10)
    body = json.loads((tmp_path / "seen.json").read_text())
    assert (body["id"], body["event"], body["data"]["pack"]) == (
        event_id,
        "pack.rolled_back",
        "hello",
    )
    env = dict(
        line.split("=", 1)
        for line in (tmp_path / "seen.env").read_text().splitlines()
        if "=" in line
    )
    assert env["ATTUNED_EVENT_ID"] == event_id
    assert env["ATTUNED_EVENT"] == "pack.rolled_back"
    assert env["ATTUNED_EVENT_PACK"] == "hello"
    assert env["ATTUNED_TEST_PASSED_ON"] == "yes" and env["CHANNEL"] == "#ops"
    assert "ATTUNED_TEST_NOT_PASSED" not in env  # nothing else of attuned's environment
    assert (tmp_path / "seen.arg").read_text().strip() == "arg1"
    assert deliveries(database) == [("pack.rolled_back", "delivered", 1)]


def test_a_failing_command_is_retried_with_what_it_said(database: Database, tmp_path: Path) -> None:
    tries = tmp_path / "tries"
    sink = exec_sink(
        tmp_path,
        f'echo x >> {tries}\n[ "$(wc -l < {tries})" -ge 2 ] && exit 0\n'
        'echo "mail server said no" >&2\nexit 3\n',
    )
    add_events(database, [sink], ("pack.registered", "hello"))
    dispatcher = Dispatcher(database, [sink])
    assert dispatcher.drain(timeout=10)
    with database.read() as session:
        [row] = outbox_admin.listing(session)
    assert (row.state, row.attempts, row.last_error) == (
        "pending",
        1,
        "exit 3: mail server said no",
    )
    time.sleep(0.2)
    assert dispatcher.drain(timeout=10)
    assert deliveries(database) == [("pack.registered", "delivered", 2)]


def test_a_command_that_overruns_is_killed_with_its_children(
    database: Database, tmp_path: Path
) -> None:
    pid_file = tmp_path / "child.pid"
    sink = exec_sink(
        tmp_path, f"sleep 60 &\necho $! > {pid_file}\nwait\n", timeout=0.5, max_attempts=1
    )
    add_events(database, [sink], ("pack.registered", "hello"))
    started = time.monotonic()
    assert Dispatcher(database, [sink]).drain(timeout=20)
    assert time.monotonic() - started < 10
    child = int(pid_file.read_text())
    assert not alive(child)
    with database.read() as session:
        [row] = outbox_admin.listing(session)
    assert (row.state, row.last_error) == ("dead", "killed after 0.5 s (gave up after 1 attempts)")
