"""Events out of the real daemon: a webhook receiver on loopback, exec sinks, restarts,
reloads, and what status, metrics and `attuned events` show of the deliveries."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import DaemonProcess
from tests.notify.receiver import SECRET, Receiver, serve

FAST_RETRIES = {"retry_initial": 0.2, "retry_max": 0.5}


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon inherits the environment: its webhook key comes from a variable."""
    monkeypatch.setenv("ATTUNED_TEST_WEBHOOK_SECRET", SECRET)


def webhook(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": "ci",
        "type": "webhook",
        "url": url,
        "secret_env": "ATTUNED_TEST_WEBHOOK_SECRET",
        **FAST_RETRIES,
        **extra,
    }


def recorder(path: Path, name: str = "log", **extra: Any) -> dict[str, Any]:
    """An exec sink appending each event's JSON to `path`, one line each."""
    return {
        "name": name,
        "type": "exec",
        "command": ["/bin/sh", "-c", f"cat >> {path}; echo >> {path}"],
        **FAST_RETRIES,
        **extra,
    }


def lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def sink_status(daemon: DaemonProcess, name: str) -> dict[str, Any]:
    for sink in daemon.status().get("notify", []):
        if sink["name"] == name:
            return dict(sink)
    return {}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_drop_and_a_rollback_reach_the_webhook_signed_and_counted(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    with serve(Receiver()) as receiver:
        daemon = daemon_factory()
        metrics = daemon.root / "metrics/attuned.prom"
        metrics.parent.mkdir()
        daemon.config["metrics_file"] = str(metrics)
        daemon.config["notify"] = [webhook(receiver.url)]
        daemon.start()
        daemon.drop("hello")
        daemon.drop("failing")
        daemon.wait_pack("hello", "active")
        daemon.wait_pack("failing", "failed")
        # on PostgreSQL the daemon leads a cluster (of one), and says so when it takes the lead
        clustered = daemon.config["database"]["url"].startswith("postgresql")
        expected = 6 + clustered
        accepted = receiver.wait_for(expected)
        status = daemon.wait_for(
            lambda _s: sink_status(daemon, "ci").get("delivered") == expected, what="delivered"
        )
    assert all(r.signature_ok for r in receiver.received)
    by_pack: dict[str, list[str]] = {}
    for received in accepted:
        by_pack.setdefault(received.event["data"].get("pack"), []).append(received.event["event"])
    assert by_pack.pop(None, []) == (["cluster.leader.elected"] if clustered else [])
    assert by_pack == {
        "hello": ["pack.test.finished", "pack.registered"],
        "failing": ["pack.test.finished", "pack.test.failed", "pack.rolled_back", "pack.failed"],
    }
    rolled_back = next(r.event for r in accepted if r.event["event"] == "pack.rolled_back")
    assert rolled_back["data"]["source"] == "local"
    assert rolled_back["data"]["tests"]["failed_cases"][0]["suite"] == "shell"
    [ci] = status["notify"]
    assert (ci["type"], ci["target"], ci["pending"], ci["dead"]) == (
        "webhook",
        f"http://127.0.0.1:{receiver.port}/…",
        0,
        0,
    )
    # the log line of each change carries the id the receiver saw
    logged = {e["event_id"] for e in daemon.events("pack.rolled_back") if e.get("event_id")}
    assert logged == {rolled_back["id"]}
    daemon.wait_for(
        lambda _s: (
            f'attuned_notify_deliveries{{sink="ci",state="delivered"}} {expected}'
            in metrics.read_text()
        ),
        what="metrics",
    )
    listed = json.loads(daemon.cli("events", "--json").stdout)
    assert [e["event"] for e in listed].count("pack.test.finished") == 2
    assert all(e["deliveries"][0]["state"] == "delivered" for e in listed)


def test_a_receiver_down_across_a_restart_gets_every_event_after_it(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    port = free_port()
    daemon = daemon_factory()
    daemon.config["notify"] = [webhook(f"http://127.0.0.1:{port}/hook", events=["pack.*"])]
    daemon.start()
    daemon.drop("hello")
    daemon.wait_pack("hello", "active")
    # one snapshot of the file for both checks: it is rewritten as each delivery fails
    down = daemon.wait_for(
        lambda s: bool(s.get("notify")) and s["notify"][0].get("last_error") is not None,
        what="a failure",
    )
    assert "ConnectError" in down["notify"][0]["last_error"]
    daemon.wait_for(lambda s: s["notify"][0]["pending"] == 2, what="both events queued")
    assert daemon.stop() == 0
    queued = json.loads(daemon.cli("events", "--pending", "--json").stdout)
    ids = sorted(e["id"] for e in queued)
    assert len(ids) == 2

    with serve(Receiver(), port=port) as receiver:
        daemon.start()
        receiver.wait_for(2)
        daemon.wait_for(lambda _s: sink_status(daemon, "ci").get("delivered") == 2, what="sent")
        time.sleep(0.5)  # nothing more comes: each event once
    assert sorted(receiver.ids()) == ids
    assert [r.event["event"] for r in receiver.received] == [
        "pack.test.finished",
        "pack.registered",
    ]


def test_conditions_are_told_once_even_across_a_restart(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    daemon = daemon_factory()
    out = daemon.root / "events.jsonl"
    daemon.config["notify"] = [recorder(out, events=["pack.blocked", "source.error"])]
    daemon.config["sources"].append(
        {"name": "gone", "type": "directory", "path": str(daemon.root / "no-such-folder")}
    )
    daemon.start()
    daemon.drop("welcome")  # needs hello, which nobody offers
    daemon.wait_pack("welcome", "blocked")
    daemon.wait_for(lambda _s: len(lines(out)) == 2, what="two events")
    assert daemon.stop() == 0
    daemon.start()
    daemon.wait_for(lambda _s: len(lines(out)) == 3, what="the source's error again")
    daemon.signal(__import__("signal").SIGUSR1)  # one more pass that sees the same
    time.sleep(1.5)
    told = lines(out)
    # the source's error is a change of the source's state, said by each daemon that sees it
    assert sorted(e["event"] for e in told) == ["pack.blocked", "source.error", "source.error"]
    blocked = [e for e in told if e["event"] == "pack.blocked"]
    assert len(blocked) == 1  # the same condition of the same content: one event
    assert "hello" in blocked[0]["data"]["reason"]
    errors = [e for e in told if e["event"] == "source.error"]
    assert errors[0]["subject"] == "source:gone" and errors[0]["data"]["source"] == "gone"


def test_a_dead_letter_is_listed_and_redelivered_by_hand(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    daemon = daemon_factory()
    out = daemon.root / "events.jsonl"
    gate = daemon.root / "mail-server-up"
    script = daemon.root / "notify.sh"
    script.write_text(
        f'#!/bin/sh\n[ -e {gate} ] || {{ echo "no route to mail server" >&2; exit 1; }}\ncat >> {out}\necho >> {out}\n'
    )
    script.chmod(0o755)
    daemon.config["notify"] = [
        {
            "name": "mail",
            "type": "exec",
            "command": [str(script)],
            "events": ["pack.*"],
            "max_attempts": 2,
            **FAST_RETRIES,
        }
    ]
    daemon.start()
    daemon.drop("hello")
    daemon.wait_for(lambda _s: sink_status(daemon, "mail").get("dead") == 2, what="2 dead")
    assert sink_status(daemon, "mail")["last_error"] == (
        "exit 1: no route to mail server (gave up after 2 attempts)"
    )
    dead = daemon.cli("events", "--dead")
    assert dead.returncode == 0 and dead.stdout.count("dead") == 2
    first_id = json.loads(daemon.cli("events", "--dead", "--json").stdout)[-1]["id"]

    gate.touch()
    again = daemon.cli("events", "redeliver", first_id[:8])
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("1 delivery queued again")
    daemon.wait_for(lambda _s: len(lines(out)) == 1, what="the one redelivered")
    assert lines(out)[0]["id"] == first_id
    assert daemon.cli("events", "redeliver", "--dead").stdout.startswith("1 delivery queued")
    daemon.wait_for(lambda _s: sink_status(daemon, "mail").get("delivered") == 2, what="both")
    busy = daemon.cli("events", "deliver")  # the daemon delivers: nobody beside it
    assert busy.returncode == 1 and "another attuned" in busy.stderr
    refused = daemon.cli("events", "redeliver", "ffffffff")
    assert refused.returncode == 2 and "no event has an id starting 'ffffffff'" in refused.stderr


def test_a_sink_added_at_sighup_hears_what_happens_from_then_on(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    daemon = daemon_factory()
    out = daemon.root / "events.jsonl"
    daemon.start()
    daemon.drop("hello")
    daemon.wait_pack("hello", "active")
    daemon.config["notify"] = [recorder(out, events=["pack.*"])]
    daemon.write_config()
    daemon.signal(__import__("signal").SIGHUP)
    daemon.wait_for(lambda s: bool(s.get("notify")), what="the sink in the status")
    (daemon.folder / "hello").rename(daemon.root / "hello-away")
    daemon.wait_pack("hello", "removed")
    daemon.wait_for(lambda _s: len(lines(out)) == 2, what="the removal told")
    assert [e["event"] for e in lines(out)] == ["pack.unregistered", "pack.removed"]
