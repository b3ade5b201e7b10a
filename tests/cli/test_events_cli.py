"""attuned events without a daemon: what the outbox holds, and `events deliver` for hosts
that run `reconcile --once` from a timer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.test_cli import Cli
from tests.conftest import EXAMPLES


@pytest.fixture
def cli(tmp_path: Path, db_url: str, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(tmp_path, db_url, capsys)


def with_sinks(cli: Cli, *sinks: str) -> None:
    cli.config.write_text(cli.config.read_text() + "notify:\n" + "".join(sinks))


def test_deliver_sends_what_a_registration_left_and_says_what_is_left(
    cli: Cli, tmp_path: Path
) -> None:
    out = tmp_path / "events.jsonl"
    with_sinks(
        cli,
        f"  - {{name: log, type: exec, command: [/bin/sh, -c, 'cat >> {out}; echo >> {out}']}}\n",
        "  - {name: hook, type: webhook, url: 'http://127.0.0.1:9/', "
        "secret_env: ATTUNED_TEST_UNSET_VAR}\n",
    )
    cli("register", EXAMPLES / "hello")
    pending = cli.json("events", "--pending")
    assert [e["event"] for e in pending] == ["pack.registered", "pack.test.finished"]
    assert {d["sink"] for e in pending for d in e["deliveries"]} == {"log", "hook"}

    # the webhook's secret is missing: it cannot work, so the exit says not finished
    done = cli.json("events", "deliver", code=1)
    assert done == {
        "finished": False,
        "sinks": {
            "hook": {"pending": 2, "delivered": 0, "dead": 0},
            "log": {"pending": 0, "delivered": 2, "dead": 0},
        },
    }
    told = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    assert [e["event"] for e in told] == ["pack.test.finished", "pack.registered"]
    listed = cli("events", "--sink", "log").stdout
    assert listed.count("delivered") == 2 and "hook" not in listed
