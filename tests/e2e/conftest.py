"""Start the real daemon as a subprocess on a temporary state dir, and watch its status file."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import EXAMPLES, write

Status = dict[str, Any]


class DaemonProcess:
    """One `attuned run` with its own config, folders and log."""

    def __init__(self, root: Path, db_url: str, **reconcile: Any) -> None:
        self.root = root
        self.folder = root / "packs.d"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.config_path = root / "attuned.yaml"
        self.status_path = root / "state/status.json"
        self.log_path = root / "daemon.log"
        self.config: dict[str, Any] = {
            "state_dir": str(root / "state"),
            "database": {"url": db_url},
            "log": {"level": "debug", "format": "json"},
            "reconcile": {
                "quiet_period": 0.2,
                "resync_interval": 3600,
                "resync_jitter": 0,
                "retry_initial": 0.5,
                **reconcile,
            },
            "testing": {"kill_grace": 0.5},
            "sources": [{"name": "local", "type": "directory", "path": str(self.folder)}],
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.env: dict[str, str] = {}  # extra environment, e.g. NOTIFY_SOCKET
        self.preexec: Callable[[], None] | None = None  # e.g. a resource limit for the daemon

    def write_config(self) -> None:
        self.config_path.write_text(yaml.safe_dump(self.config))

    def start(self, *, first_pass: bool = True) -> DaemonProcess:
        """Start the daemon; unless `first_pass` is False, wait for its first pass."""
        self.write_config()
        env = {k: v for k, v in os.environ.items() if k != "ATTUNED_CONFIG"} | self.env
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "attuned", "run", "--config", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                env=env,
                preexec_fn=self.preexec,
            )
        if not first_pass:
            return self
        self.wait_for(
            lambda s: (
                s["daemon"]["pid"] == self.pid
                and s["daemon"]["phase"] in ("idle", "degraded")
                and (s["last_reconcile"] is not None or s["daemon"].get("role") == "follower")
            ),
            what="first pass (or a follower's first sync)",
        )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def status(self) -> Status:
        try:
            return dict(json.loads(self.status_path.read_text()))
        except (OSError, ValueError):
            return {}

    def wait_for(
        self, predicate: Callable[[Status], bool], timeout: float = 30, what: str = "condition"
    ) -> Status:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.status()
            if status and predicate(status):
                return status
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(
                    f"daemon exited ({self.proc.returncode}) waiting for {what}:\n{self.log_tail()}"
                )
            time.sleep(0.05)
        raise AssertionError(
            f"timed out waiting for {what}; status: "
            f"{json.dumps(self.status(), indent=1)[:3000]}\n{self.log_tail()}"
        )

    def pack(self, ref: str) -> dict[str, Any] | None:
        packs: dict[str, Any] = self.status().get("packs", {})
        return packs.get(ref)

    def wait_pack(
        self, ref: str, state: str, version: str | None = None, timeout: float = 30
    ) -> dict[str, Any]:
        def ok(status: Status) -> bool:
            pack = status.get("packs", {}).get(ref)
            return (
                bool(pack)
                and pack["state"] == state
                and (version is None or pack["version"] == version)
            )

        return dict(self.wait_for(ok, timeout, f"{ref} {state} {version or ''}")["packs"][ref])

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        found = []
        for line in self.log_path.read_text().splitlines():
            if line.startswith("{"):
                event = json.loads(line)
                if name is None or event.get("event") == name:
                    found.append(event)
        return found

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text().splitlines()[-lines:])

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def stop(self, timeout: float = 10) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "attuned", *args, "--config", str(self.config_path)],
            capture_output=True,
            text=True,
            cwd=self.root,
            check=False,
            timeout=60,
        )

    def drop(self, name: str, source: Path | None = None, **changes: Any) -> Path:
        """Drop a pack atomically: copy to a dot-name, then rename into place."""
        staging = self.folder / f".{name}"
        build_pack(source or EXAMPLES / name, staging, **changes)
        target = self.folder / name
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
        return target


def build_pack(
    source: Path,
    target: Path,
    *,
    version: str | None = None,
    test_script: str | None = None,
    extra: dict[str, Any] | None = None,
    files: dict[str, bytes] | None = None,
) -> Path:
    shutil.copytree(source, target)
    for rel, data in (files or {}).items():  # in place before the pack is dropped
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        (target / rel).write_bytes(data)
    manifest = yaml.safe_load((target / "pack.yaml").read_text())
    if version is not None:
        manifest["version"] = version
    manifest.update(extra or {})
    (target / "pack.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    if test_script is not None:
        write(target / "tests/run_tests.sh", test_script, executable=True)
    return target


@pytest.fixture
def daemon_factory(tmp_path: Path, db_url: str) -> Iterator[Callable[..., DaemonProcess]]:
    started: list[DaemonProcess] = []

    def make(name: str = "d", **reconcile: Any) -> DaemonProcess:
        daemon = DaemonProcess(tmp_path / name, db_url, **reconcile)
        started.append(daemon)
        return daemon

    yield make
    for daemon in started:
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.proc.kill()
            daemon.proc.wait(timeout=10)


@pytest.fixture
def daemon(daemon_factory: Callable[..., DaemonProcess]) -> DaemonProcess:
    return daemon_factory().start()
