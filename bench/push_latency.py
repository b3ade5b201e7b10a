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

import random
import shutil
import time
from pathlib import Path
from typing import Any

from common import REPO, DaemonProcess, Result, attuned_bin, main, running, scratch, summary
from common import write_pack as write_pack_files

from attuned.settings.git import GitSourceConfig
from tests.reconcile.sources.git_servers import GitDaemon, PackRepo, git

DEFAULT_INTERVAL = GitSourceConfig.model_fields["interval"].default
PACK = "pushed"


def make_repo(root: Path, server: GitDaemon) -> PackRepo:
    """A bare repository served over git:// (pushes go through `git daemon`, so its hooks
    run) and a working clone with one pack committed and pushed."""
    repo = PackRepo(root)
    git("remote", "set-url", "origin", server.url(repo.name), cwd=repo.work)
    write_pack_files(repo.work / "packs" / PACK, PACK, "1.0.0")
    repo.commit("first")
    repo.push("main")
    return repo


def install_hook(bare: Path, config: Path) -> None:
    """The post-receive hook as docs/operator-guide.md installs it."""
    hook = bare / "hooks" / "post-receive"
    shutil.copy(REPO / "deploy" / "git-hooks" / "post-receive", hook)
    hook.chmod(0o755)
    git("config", "attuned.source", "packs", cwd=bare)
    git("config", "attuned.config", str(config), cwd=bare)
    git("config", "attuned.bin", attuned_bin(), cwd=bare)


def measure(root: Path, mode: str, pushes: int, interval: float | None) -> dict[str, Any]:
    server = GitDaemon(root / "served", root / "git-daemon.log")
    server.base.mkdir(parents=True)
    server.start()
    try:
        repo = make_repo(root, server)
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
                install_hook(repo.bare, daemon.config_path)
            for i in range(1, pushes + 1):
                if mode == "polling":
                    time.sleep(random.uniform(0, interval or DEFAULT_INTERVAL))
                else:
                    daemon.wait_idle()
                version = f"1.0.{i}"
                manifest = repo.work / "packs" / PACK / "pack.yaml"
                manifest.write_text(
                    manifest.read_text().replace(f"version: 1.0.{i - 1}", f"version: {version}")
                )
                repo.commit(version)
                started = time.monotonic()
                repo.push("main")
                pushed = time.monotonic()
                _, seen = daemon.wait_pack(PACK, version, timeout=(interval or 60) * 3 + 60)
                latencies.append(seen - started)
                push_times.append(pushed - started)
            triggered = len(daemon.events("source.triggered"))
    finally:
        server.stop()
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
