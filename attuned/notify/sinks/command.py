"""`exec`: run a command for each event (a mailer, a chat CLI, a script of the operator's),
with the event's JSON on stdin. Exit 0 is delivered; anything else is retried.

The command is the operator's own, not a pack's, so it runs unsandboxed; but with a clean
environment (PATH, LANG, what the config passes on, and the event's id and name), in
attuned's working directory and its own session, killed with everything it started when it
overruns its timeout or the daemon stops.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from attuned.notify.events import encode
from attuned.notify.sinks.base import Attempt
from attuned.settings.notify import ExecSinkConfig
from attuned.store.outbox import StoredEvent
from attuned.testing.process import Ending, run_process

_KILL_GRACE = 2.0
_CAPTURE = 16 * 1024
_SHOWN = 300  # characters of stderr kept in the delivery's last_error


class ExecSink:
    def __init__(self, config: ExecSinkConfig, cancel: threading.Event | None = None) -> None:
        self.name = config.name
        self.config = config
        self.cancel = cancel
        self._cwd = Path.cwd()  # attuned's own: `/` under systemd, the checkout in a demo
        self._env = {
            "PATH": os.environ.get("PATH") or os.defpath,
            "LANG": "C.UTF-8",
            **{k: os.environ[k] for k in config.pass_env if k in os.environ},
            **config.env,
        }

    def deliver(self, event: StoredEvent) -> Attempt:
        env = {
            **self._env,
            "ATTUNED_EVENT": event.name,
            "ATTUNED_EVENT_ID": event.id,
            "ATTUNED_EVENT_SEVERITY": event.severity,
            "ATTUNED_EVENT_PACK": event.ref or "",
        }
        outcome = run_process(
            self.config.command,
            cwd=self._cwd,
            env=env,
            timeout=self.config.timeout,
            kill_grace=_KILL_GRACE,
            capture_limit=_CAPTURE,
            cancel=self.cancel,
            stdin=encode(event),
        )
        said = " ".join(outcome.stderr.text().split())[-_SHOWN:]
        suffix = f": {said}" if said else ""
        if outcome.ending is Ending.NOT_STARTED:
            return Attempt.retry(f"could not start {self.config.command[0]}: {outcome.start_error}")
        if outcome.ending is Ending.TIMED_OUT:
            return Attempt.retry(f"killed after {self.config.timeout:g} s{suffix}")
        if outcome.ending is Ending.CANCELLED:
            return Attempt.retry("killed: attuned is stopping")
        if outcome.exit_code == 0:
            return Attempt.delivered("exit 0")
        if outcome.signal is not None:
            return Attempt.retry(f"killed by signal {outcome.signal}{suffix}")
        return Attempt.retry(f"exit {outcome.exit_code}{suffix}")

    def idle(self) -> None:
        return None

    def close(self) -> None:
        return None
