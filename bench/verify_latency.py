"""Scenario 12: what signed-commit verification adds to push-to-active, per commit.

Three git sources follow three copies of one repository, in the same run and interleaved
(one push to each in turn): verification off, SSH signatures (an allowed-signers file) and
OpenPGP signatures (a keyring and a fingerprint allow-list). Every commit is signed (the
author's cost, not measured) and pushed, and the source polled: the poll (list refs, fetch,
verify, export the 20-file pack, snapshot) is timed, and so is the check alone (`git
verify-commit` against the cache, a new commit each time). The verification is the only step
that differs, so `added ms` is its share of push-to-active.
Goal: <= 20 ms per commit.

    python bench/verify_latency.py [--quick]
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from common import Result, main, scratch, summary
from common import write_pack as write_pack_files

from attuned.reconcile.snapshots import SnapshotStore
from attuned.reconcile.sources.git import GitSource
from attuned.reconcile.sources.git_verify import Verifier
from attuned.settings.git import GitSourceConfig
from tests.reconcile.sources.git_servers import PackRepo
from tests.reconcile.sources.signing import GpgKey, Key, SshKey, commit

PACK = "signed"
GOAL_MS = 20.0


def verify_settings(kind: str, root: Path, ssh: SshKey, gpg: GpgKey) -> dict[str, Any] | None:
    if kind == "ssh":
        signers = root / "allowed_signers"
        signers.write_text(ssh.allowed_line())
        return {"ssh_allowed_signers": str(signers)}
    if kind == "gpg":
        keyring = gpg.export(root / "keyring.gpg")
        return {"gpg_keyring": str(keyring), "gpg_fingerprints": [gpg.fingerprint]}
    return None


class Lane:
    """One source (off, ssh or gpg) following its own copy of the repository."""

    def __init__(self, root: Path, kind: str, ssh: SshKey, gpg: GpgKey) -> None:
        self.kind = kind
        self.repo = PackRepo(root / "repo")
        self.key: Key = gpg if kind == "gpg" else ssh
        write_pack_files(self.repo.work / "packs" / PACK, PACK, "1.0.0")
        commit(self.repo, "1.0.0", {}, self.key)
        verify = verify_settings(kind, root, ssh, gpg)
        config = GitSourceConfig.model_validate(
            {"name": kind, "type": "git", "url": str(self.repo.bare), "ref": {"branch": "main"}}
            | {"path": "packs", "jitter": 0}
            | ({"verify": verify} if verify else {})
        )
        state = root / "state"
        self.cache = state / "git" / f"{kind}.git"
        store = SnapshotStore(state / "snapshots", racy_window_ns=0)
        self.source = GitSource(
            config, store, cache_dir=state / "git", work_dir=state / "work", prune=True
        )
        self.checker = Verifier(config.verify) if config.verify is not None else None
        self.polls: list[float] = []
        self.checks: list[float] = []
        self.source.scan()

    def push_and_poll(self, i: int) -> None:
        """Push version 1.0.i, signed; time the poll that activates it, then the check alone."""
        manifest = self.repo.work / "packs" / PACK / "pack.yaml"
        text = manifest.read_text()
        manifest.write_text(text.replace(f"version: 1.0.{i - 1}", f"version: 1.0.{i}"))
        sha = commit(self.repo, f"1.0.{i}", {}, self.key)
        self.source.retry_now()
        started = time.perf_counter()
        result = self.source.scan()
        self.polls.append(time.perf_counter() - started)
        if result.revision != sha or result.state.error is not None:
            raise AssertionError(f"{self.kind}: {sha} not activated: {result.state.error}")
        if self.checker is not None:
            started = time.perf_counter()
            verdict = self.checker.check(self.cache, sha)
            self.checks.append(time.perf_counter() - started)
            assert verdict.ok, verdict.reason

    def close(self) -> dict[str, Any]:
        self.source.close()
        if self.checker is not None:
            self.checker.close()
        checks = summary(self.checks) if self.checks else None
        return {"kind": self.kind, "poll": summary(self.polls), "check": checks}


def run(quick: bool) -> Result:
    commits = 3 if quick else 30
    with scratch("verify") as root:
        ssh = SshKey(root / "keys", "alice", "alice@example.com")
        gpg = GpgKey("Alice <alice@example.com>")
        try:
            lanes = [Lane(root / kind, kind, ssh, gpg) for kind in ("off", "ssh", "gpg")]
            for i in range(1, commits + 1):  # interleaved: the machine's load hits all three
                for lane in lanes:
                    lane.push_and_poll(i)
            results = [lane.close() for lane in lanes]
        finally:
            gpg.close()
    off = results[0]["poll"]["median"]
    rows = []
    for r in results:
        poll = r["poll"]["median"]
        check = f"{r['check']['median'] * 1000:.1f}" if r["check"] else "-"
        rows.append(
            [
                r["kind"],
                commits,
                f"{poll * 1000:.1f}",
                f"{r['poll']['p95'] * 1000:.1f}",
                f"{(poll - off) * 1000:.1f}",
                check,
                f"{poll / off:.2f}",
            ]
        )
    ssh_r, gpg_r = results[1], results[2]
    metrics = {
        "off_poll_p50_s": off,
        "ssh_poll_p50_s": ssh_r["poll"]["median"],
        "gpg_poll_p50_s": gpg_r["poll"]["median"],
        "ssh_check_p50_s": ssh_r["check"]["median"],
        "gpg_check_p50_s": gpg_r["check"]["median"],
        "ssh_over_off": ssh_r["poll"]["median"] / off,
        "gpg_over_off": gpg_r["poll"]["median"] / off,
    }
    return {
        "name": "verify_latency",
        "title": "12. Signed-commit verification: added push-to-active time per commit",
        "params": {"commits": commits},
        "tables": [
            {
                "columns": [
                    "verify",
                    "commits",
                    "poll p50 ms",
                    "poll p95 ms",
                    "added ms",
                    "check p50 ms",
                    "poll / off",
                ],
                "rows": rows,
            }
        ],
        "metrics": metrics,
        "targets": [
            {
                "target": f"{kind} check per commit (ms)",
                "value": value,
                "limit": GOAL_MS,
                "met": value <= GOAL_MS,
            }
            for kind, value in (
                ("ssh", ssh_r["check"]["median"] * 1000),
                ("gpg", gpg_r["check"]["median"] * 1000),
            )
        ],
        "notes": [
            "poll: retry_now + scan of a local bare repository: list refs, fetch the new "
            "commit, verify it, export and snapshot the changed pack",
            "added: poll p50 - the unverified poll p50, in the same run",
            "check: git verify-commit of a commit not seen before (no verdict cache), i.e. "
            "one git process running ssh-keygen -Y verify or gpg --verify",
        ],
        "raw": results,
    }


if __name__ == "__main__":
    main(run, __doc__)
