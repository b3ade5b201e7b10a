"""Scenario 2: push-to-active latency over a local `git daemon`, by trigger and by polling.

A bare repository is served by `git daemon` on 127.0.0.1 (receive-pack enabled, so pushes go
through it and run its hooks); the real daemon follows its `main` branch. Each push bumps the
version of a 20-file pack with one trivial test and is timed from just before `git push` until
the status file says that version is active.

  trigger: deploy/git-hooks/post-receive installed in the bare repository (it runs `attuned
           trigger`), the source's poll interval set to an hour so only the hook counts;
  polling: the source's default interval (and jitter); the benchmark waits a random time
           between pushes so that pushes land at random points of the poll cycle.

    python bench/push_latency.py [--quick]
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from common import REPO, DaemonProcess, Result, attuned_bin, main, running, scratch, summary
from common import write_pack as write_pack_files

from attuned.reconcile.sources.git_config import GitSourceConfig

DEFAULT_INTERVAL = GitSourceConfig.model_fields["interval"].default
GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@example.invalid",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@example.invalid",
    "GIT_TERMINAL_PROMPT": "0",
}
PACK = "pushed"


def git(*args: str, cwd: Path) -> str:
    env = {**os.environ, **GIT_ENV, "HOME": str(cwd)}
    proc = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=60
    )
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout.strip()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class GitServer:
    """`git daemon` serving every repository below `base`, as its own process group."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, name: str) -> str:
        return f"git://127.0.0.1:{self.port}/{name}"

    def __enter__(self) -> GitServer:
        self.base.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                "git",
                "daemon",
                "--reuseaddr",
                "--export-all",
                "--enable=receive-pack",
                f"--base-path={self.base}",
                "--listen=127.0.0.1",
                f"--port={self.port}",
                str(self.base),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, **GIT_ENV},
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def __exit__(self, *_exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            self.proc.wait(timeout=10)


def make_repo(root: Path, server: GitServer) -> tuple[Path, Path]:
    """(bare repository, working clone pushing to it over git://) with one pack committed."""
    bare, work = root / "served" / "packs.git", root / "work"
    bare.parent.mkdir(parents=True, exist_ok=True)
    git("init", "-q", "--bare", "-b", "main", str(bare), cwd=root)
    git("init", "-q", "-b", "main", str(work), cwd=root)
    git("remote", "add", "origin", server.url("packs.git"), cwd=work)
    write_pack_files(work / "packs" / PACK, PACK, "1.0.0")
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "first", cwd=work)
    git("push", "-q", "origin", "main", cwd=work)
    return bare, work


def install_hook(bare: Path, config: Path) -> None:
    """The post-receive hook as docs/operator-guide.md installs it."""
    hook = bare / "hooks" / "post-receive"
    shutil.copy(REPO / "deploy" / "git-hooks" / "post-receive", hook)
    hook.chmod(0o755)
    git("config", "attuned.source", "packs", cwd=bare)
    git("config", "attuned.config", str(config), cwd=bare)
    git("config", "attuned.bin", attuned_bin(), cwd=bare)


def measure(root: Path, mode: str, pushes: int, interval: float | None) -> dict[str, Any]:
    with GitServer(root / "served") as server:
        bare, work = make_repo(root, server)
        source: dict[str, Any] = {
            "name": "packs",
            "type": "git",
            "url": server.url("packs.git"),
            "ref": {"branch": "main"},
            "path": "packs",
        }
        if interval is not None:
            source["interval"] = interval
        daemon = DaemonProcess(root / "daemon", [source])
        latencies, push_times = [], []
        with running(daemon):
            daemon.wait_pack(PACK, "1.0.0")
            if mode == "trigger":
                install_hook(bare, daemon.config_path)
            for i in range(1, pushes + 1):
                if mode == "polling":
                    time.sleep(random.uniform(0, interval or DEFAULT_INTERVAL))
                else:
                    daemon.wait_idle()
                version = f"1.0.{i}"
                manifest = work / "packs" / PACK / "pack.yaml"
                manifest.write_text(
                    manifest.read_text().replace(f"version: 1.0.{i - 1}", f"version: {version}")
                )
                git("commit", "-q", "-am", version, cwd=work)
                started = time.monotonic()
                git("push", "-q", "origin", "main", cwd=work)
                pushed = time.monotonic()
                _, seen = daemon.wait_pack(PACK, version, timeout=(interval or 60) * 3 + 60)
                latencies.append(seen - started)
                push_times.append(pushed - started)
            triggered = len(daemon.events("source.triggered"))
    return {
        "mode": mode,
        "interval_s": interval if interval is not None else DEFAULT_INTERVAL,
        "pushes": pushes,
        "latency": summary(latencies),
        "push": summary(push_times),
        "triggered": triggered,
        "latencies": latencies,
    }


def run(quick: bool) -> Result:
    trigger_pushes, poll_pushes = (1, 1) if quick else (10, 3)
    poll_interval = 1.0 if quick else None  # None: the source's default
    results = []
    with scratch("push-trigger") as root:
        results.append(measure(root, "trigger", trigger_pushes, 3600))
    with scratch("push-poll") as root:
        results.append(measure(root, "polling", poll_pushes, poll_interval))
    rows = [
        [
            r["mode"],
            f"{r['interval_s']:.0f}",
            r["pushes"],
            f"{r['latency']['median'] * 1000:.0f}",
            f"{r['latency']['p95'] * 1000:.0f}",
            f"{r['push']['median'] * 1000:.0f}",
            f"{(r['latency']['median'] - r['push']['median']) * 1000:.0f}",
        ]
        for r in results
    ]
    trig, poll = results
    metrics = {
        "trigger_p50_s": trig["latency"]["median"],
        "trigger_p95_s": trig["latency"]["p95"],
        "trigger_push_s": trig["push"]["median"],
        "polling_p50_s": poll["latency"]["median"],
        "polling_p95_s": poll["latency"]["p95"],
        "polling_interval_s": float(poll["interval_s"]),
        "polling_over_trigger": poll["latency"]["median"] / trig["latency"]["median"],
    }
    notes = [
        "latency: `git push` over git:// -> status file says the new version is active; "
        "push: the `git push` command itself (with the trigger, it includes the hook running "
        "`attuned trigger`, a Python process start)",
        "after push: latency - push, the daemon's share once the push returned",
        f"polling: expected latency is about interval/2 + jitter/2 + fetch + test; "
        f"{poll_pushes} pushes sample it, they do not pin it down",
    ]
    if quick:
        notes.append("--quick: polling at a 1 s interval, not the default 60 s")
    return {
        "name": "push_latency",
        "title": "2. Push-to-active latency over a local git daemon",
        "params": {"trigger_pushes": trigger_pushes, "polling_pushes": poll_pushes},
        "tables": [
            {
                "columns": [
                    "mode",
                    "poll interval s",
                    "pushes",
                    "p50 ms",
                    "p95 ms",
                    "push ms",
                    "after push ms",
                ],
                "rows": rows,
            }
        ],
        "metrics": metrics,
        "targets": [],
        "notes": notes,
        "raw": results,
    }


if __name__ == "__main__":
    main(run, __doc__)
