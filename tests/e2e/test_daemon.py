"""The daemon end to end: a real `attuned run`, real folders, real inotify, real tests."""

from __future__ import annotations

import json
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from attuned.pack.loader import load_pack
from tests.conftest import EXAMPLES, PASSING_TEST
from tests.e2e.conftest import DaemonProcess, build_pack

FAILING = "#!/bin/sh\necho 'Total Tests: 2'\necho 'Passed: 1'\necho 'Failed: 1'\nexit 1\n"


def served_version(daemon: DaemonProcess, ref: str) -> str | None:
    link = daemon.root / "state/packs" / ref
    if not link.is_symlink():
        return None
    for line in (link / "pack.yaml").read_text().splitlines():
        if line.startswith("version:"):
            return line.split(":", 1)[1].strip().strip("'\"")
    return None


def test_atomic_drop_registers_and_status_says_active(daemon: DaemonProcess) -> None:
    daemon.drop("hello")
    pack = daemon.wait_pack("hello", "active", "1.0.0")
    assert pack["source"] == "local" and pack["last_test"]["status"] == "passed"
    assert pack["active_since"] is not None and len(pack["digest"]) == 64
    assert served_version(daemon, "hello") == "1.0.0"
    listed = daemon.cli("packs", "--json")
    assert '"ref": "hello"' in listed.stdout
    [registered] = daemon.events("pack.registered")
    assert (registered["pack"], registered["source"], registered["digest"]) == (
        "hello",
        "local",
        pack["digest"],
    )
    source = daemon.status()["sources"][0]
    assert (source["name"], source["candidates"], source["error"]) == ("local", 1, None)


def test_slow_file_by_file_copy_ends_with_the_final_content(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    built = build_pack(EXAMPLES / "hello", tmp_path / "built")
    target = daemon.folder / "hello"
    for path in sorted(built.rglob("*")):  # pack.yaml first, tests last: half-written states
        dest = target / path.relative_to(built)
        if path.is_dir():
            dest.mkdir(parents=True, exist_ok=True)
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)
            time.sleep(0.3)  # longer than the quiet period: the daemon sees partial packs
    final = load_pack(target).digest
    daemon.wait_for(
        lambda s: (
            s["packs"].get("hello", {}).get("digest") == final
            and s["packs"]["hello"]["state"] == "active"
        ),
        what="the final content active",
    )
    assert served_version(daemon, "hello") == "1.0.0"
    assert (daemon.root / "state/packs/hello/triggers/arrived.yaml").is_file()


def test_upgrade_then_failing_upgrade_keeps_the_old_version(daemon: DaemonProcess) -> None:
    daemon.drop("hello")
    daemon.wait_pack("hello", "active", "1.0.0")
    daemon.drop("hello", version="1.1.0")
    daemon.wait_pack("hello", "active", "1.1.0")
    assert [e["pack"] for e in daemon.events("pack.upgraded")] == ["hello"]
    daemon.drop("hello", version="1.2.0", test_script=FAILING)
    pack = daemon.wait_pack("hello", "failed")
    assert pack["version"] == "1.1.0" and pack["desired_version"] == "1.2.0"
    assert pack["reason"].startswith("serving 1.1.0; 1.2.0 failed at ")
    assert "pass rate 0.5 is below min_pass_rate 1" in pack["last_error"]
    # the why shows in the first pass's status, not a pass later
    assert "pass rate 0.5 is below min_pass_rate 1" in pack["reason"]
    assert pack["last_test"]["reason"] == pack["last_error"].split(" failed: ", 1)[1]
    assert pack["last_test"]["failed_cases"] == ["shell::shell"]  # the simple format: one case
    assert served_version(daemon, "hello") == "1.1.0"
    [rolled_back] = daemon.events("pack.rolled_back")
    assert rolled_back["version"] == "1.2.0"
    # the same failing content is not retested on the next full pass
    daemon.signal(signal.SIGUSR1)
    daemon.wait_for(
        lambda s: (
            s["last_reconcile"]["trigger"] == "full"
            and s["last_reconcile"]["finished_at"] > pack["last_error_at"]
        ),
        what="resync",
    )
    assert len(daemon.events("pack.test.started")) == 3


def _tap(failing: str = "") -> str:
    lines = ["#!/bin/sh", "echo 1..3"]
    for number, name in enumerate(("a", "b", "c"), 1):
        verdict = "not ok" if name == failing else "ok"
        lines.append(f"echo '{verdict} {number} - {name}'")
    return "\n".join(lines) + "\n"


TAP_TESTING = {
    "testing": {
        "enabled": True,
        "runners": {
            "tap": {"type": "script", "entry_point": "tests/run_tests.sh", "result_format": "tap"}
        },
        "min_pass_rate": 0.6,
    }
}


def test_a_regressed_case_refuses_the_upgrade_and_status_names_it(daemon: DaemonProcess) -> None:
    daemon.drop("hello", test_script=_tap(), extra=TAP_TESTING)
    daemon.wait_pack("hello", "active", "1.0.0")

    daemon.drop("hello", version="1.1.0", test_script=_tap(failing="b"), extra=TAP_TESTING)

    pack = daemon.wait_pack("hello", "failed")
    assert pack["version"] == "1.0.0" and pack["desired_version"] == "1.1.0"
    assert "passed in the serving version 1.0.0 and fail now: tap::b" in pack["last_error"]
    assert pack["last_test"]["regressions"] == ["tap::b"]
    assert served_version(daemon, "hello") == "1.0.0"
    [regressed] = daemon.events("pack.test.regressed")
    assert (regressed["cases"], regressed["policy"]) == (["tap::b"], "block")
    assert "tap::b" in daemon.cli("status").stdout


def test_dependency_arriving_later_unblocks(daemon: DaemonProcess) -> None:
    daemon.drop("welcome")
    pack = daemon.wait_pack("welcome", "blocked")
    assert pack["reason"] == "needs hello >=1.0.0,<2, which no source provides"
    daemon.drop("hello")
    daemon.wait_pack("welcome", "active", "1.2.0")
    daemon.wait_pack("hello", "active", "1.0.0")


def test_removed_pack_is_pruned_but_not_when_its_source_vanishes(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    daemon = daemon_factory().start()
    daemon.drop("hello")
    daemon.drop("failing", test_script=PASSING_TEST)
    daemon.wait_pack("hello", "active")
    served = daemon.wait_pack("failing", "active")
    shutil.rmtree(daemon.folder / "failing")
    removed = daemon.wait_pack("failing", "removed")
    assert removed["source"] == "local"  # not shown as registered by hand
    assert served_version(daemon, "failing") is None
    assert daemon.events("pack.removed")[0]["pack"] == "failing"
    [planned] = [e for e in daemon.events("pack.planned") if e["action"] == "remove"]
    assert (planned["source"], planned["digest"]) == ("local", served["digest"])
    # the database is migrated before the first pass starts, not during it
    names = [e["event"] for e in daemon.events()]
    assert names.index("db.migrated") < names.index("reconcile.started")
    # "unmount" the folder: unreadable is not empty, nothing is pruned
    daemon.folder.rename(daemon.root / "unmounted")
    daemon.signal(signal.SIGUSR1)
    status = daemon.wait_for(lambda s: s["sources"][0]["error"] is not None, what="source error")
    assert "does not exist" in status["sources"][0]["error"]
    assert status["packs"]["hello"]["state"] == "kept"
    assert served_version(daemon, "hello") == "1.0.0"
    assert [p["ref"] for p in json.loads(daemon.cli("packs", "--json").stdout)] == ["hello"]


def test_deleting_or_moving_the_watched_folder_prunes_nothing_and_shows_at_once(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """`rm -rf packs.d` used to prune every pack: the pass for inotify's events read the
    entries it named, found them gone, and never looked at the folder itself."""
    daemon = daemon_factory().start()
    daemon.drop("hello")
    daemon.drop("failing", test_script=PASSING_TEST)
    daemon.wait_pack("hello", "active")
    daemon.wait_pack("failing", "active")

    def unreadable(status: dict[str, Any]) -> bool:
        return status["sources"][0]["readable"] is False

    def readable(status: dict[str, Any]) -> bool:
        return status["sources"][0]["readable"] is True

    # moved away: unreadable at once (not at the next resync), and back: read again
    daemon.folder.rename(daemon.root / "elsewhere")
    status = daemon.wait_for(unreadable, timeout=10, what="the moved folder unreadable")
    assert "does not exist" in status["sources"][0]["error"]
    (daemon.root / "elsewhere").rename(daemon.folder)
    daemon.wait_for(readable, timeout=10, what="the folder back")

    # deleted, then made again empty (its inode number may well be reused)
    shutil.rmtree(daemon.folder)
    daemon.wait_for(unreadable, timeout=10, what="the deleted folder unreadable")
    daemon.folder.mkdir()
    time.sleep(3)  # a tick, a pass for the watcher's events: time to prune, if it would
    status = daemon.wait_for(unreadable, timeout=10, what="the empty folder still refused")
    assert "is not the folder that held the packs" in status["sources"][0]["error"]
    assert {ref: p["state"] for ref, p in status["packs"].items()} == {
        "hello": "kept",
        "failing": "kept",
    }
    assert daemon.events("pack.removed") == []
    assert served_version(daemon, "hello") == "1.0.0"

    # a pack dropped in the new folder is the operator's decision: the folder is the source
    daemon.drop("hello")
    daemon.wait_pack("failing", "removed")
    assert daemon.pack("hello")["state"] == "active"  # type: ignore[index]
    assert [e["pack"] for e in daemon.events("pack.removed")] == ["failing"]


def test_sighup_adds_a_source_and_sigterm_stops_cleanly(daemon: DaemonProcess) -> None:
    second = daemon.root / "second"
    build_pack(EXAMPLES / "hello", second / "hello")
    daemon.config["sources"].append({"name": "second", "type": "directory", "path": str(second)})
    daemon.write_config()
    daemon.signal(signal.SIGHUP)
    pack = daemon.wait_pack("hello", "active")
    assert pack["source"] == "second"
    [reloaded] = daemon.events("daemon.reloaded")
    assert reloaded["sources_added"] == ["second"]
    started = time.monotonic()
    assert daemon.stop() == 0
    assert time.monotonic() - started < 10
    assert daemon.status()["daemon"]["phase"] == "stopped"


def test_a_refused_reload_shows_in_the_status_file_until_a_good_one(
    daemon: DaemonProcess,
) -> None:
    good = daemon.config_path.read_text()
    daemon.config_path.write_text(good + "no_such_key: 1\n")
    daemon.signal(signal.SIGHUP)
    refused = daemon.wait_for(
        lambda s: s["daemon"].get("config_reload_failed") is not None, what="the refusal"
    )["daemon"]["config_reload_failed"]
    assert "no_such_key" in refused["error"] and refused["at"]
    # running on the config it had, and saying so
    daemon.wait_for(
        lambda s: s["daemon"]["phase"] == "idle" and s["daemon"]["config_reload_failed"],
        what="idle on the old config",
    )
    daemon.config_path.write_text(good)
    daemon.signal(signal.SIGHUP)
    daemon.wait_for(lambda s: s["daemon"]["config_reload_failed"] is None, what="cleared")


def test_sigterm_during_a_test_run_kills_it_and_exits_quickly(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    daemon = daemon_factory()
    daemon.config["testing"]["sandbox"] = "none"  # the test reports its pid through a host file
    daemon.start()
    pid_file = daemon.root / "test.pid"
    daemon.drop("hello", test_script=f"#!/bin/sh\nsleep 60 &\necho $! > {pid_file}\nwait\n")
    daemon.wait_for(
        lambda _s: pid_file.exists() and pid_file.read_text().strip() != "", what="test start"
    )
    started = time.monotonic()
    assert daemon.stop() == 0
    assert time.monotonic() - started < 10
    assert (
        not Path(f"/proc/{pid_file.read_text().strip()}").exists()
        or Path(f"/proc/{pid_file.read_text().strip()}/stat").read_text().split(")")[1].split()[0]
        == "Z"
    )
    assert daemon.cli("packs", "--json").stdout.strip() == "[]"
    history = daemon.cli("history", "hello", "--json").stdout
    assert '"outcome": "cancelled"' in history


def test_kill_9_mid_test_then_restart_agrees(daemon_factory: Callable[..., DaemonProcess]) -> None:
    daemon = daemon_factory().start()
    daemon.drop("hello")
    daemon.wait_pack("hello", "active", "1.0.0")
    daemon.drop("hello", version="1.1.0", test_script="#!/bin/sh\nsleep 2\n" + PASSING_TEST[10:])
    daemon.wait_for(lambda _s: len(daemon.events("pack.test.started")) == 2, what="2nd test")
    daemon.kill()
    assert served_version(daemon, "hello") == "1.0.0"  # nothing half-done is visible
    restarted = daemon.start()
    pack = restarted.wait_pack("hello", "active", "1.1.0")
    assert served_version(daemon, "hello") == "1.1.0"
    shown = daemon.cli("show", "hello", "--json").stdout
    assert '"version": "1.1.0"' in shown and pack["digest"] in shown
    versions = sorted(p.name for p in (daemon.root / "state/packs/.versions").iterdir())
    assert len(versions) == 2  # 1.0.0 kept as an older version, 1.1.0 served
    assert not list((daemon.root / "state/packs/.staging").iterdir())


def test_second_daemon_on_the_same_state_dir_is_refused(daemon: DaemonProcess) -> None:
    proc = daemon.cli("reconcile", "--once")
    assert proc.returncode == 1 and "another attuned" in proc.stderr


def test_suspend_and_resume(daemon: DaemonProcess) -> None:
    daemon.drop("hello")
    daemon.wait_pack("hello", "active", "1.0.0")
    assert daemon.cli("suspend", "hello").returncode == 0
    daemon.wait_pack("hello", "suspended")
    daemon.drop("hello", version="2.0.0")
    time.sleep(1.0)
    assert daemon.pack("hello")["state"] == "suspended"  # type: ignore[index]
    assert served_version(daemon, "hello") == "1.0.0"
    assert daemon.cli("resume", "hello").returncode == 0
    daemon.wait_pack("hello", "active", "2.0.0")


def test_status_command_renders_the_file(daemon: DaemonProcess) -> None:
    daemon.drop("hello")
    daemon.wait_pack("hello", "active")
    out = daemon.cli("status").stdout
    assert "hello" in out and "active" in out and "source local" in out


def test_sigint_stops_too_and_releases_the_state_dir(daemon: DaemonProcess) -> None:
    daemon.signal(signal.SIGINT)
    assert daemon.proc is not None and daemon.proc.wait(timeout=10) == 0
    assert daemon.cli("reconcile", "--once").returncode == 0


def test_periodic_resync_repairs_drift(daemon_factory: Callable[..., DaemonProcess]) -> None:
    daemon = daemon_factory(resync_interval=1).start()
    daemon.drop("hello")
    pack = daemon.wait_pack("hello", "active")
    served = daemon.root / "state/packs/hello/actions/greet.sh"
    served.write_text("echo tampered\n")  # someone edits the store behind attuned's back
    daemon.wait_for(lambda _s: bool(daemon.events("pack.drift.repaired")), what="drift repair")
    assert "tampered" not in served.read_text()
    assert daemon.pack("hello")["digest"] == pack["digest"]  # type: ignore[index]
    assert daemon.events("pack.drift.repaired")[0]["pack"] == "hello"


def test_independent_packs_are_tested_in_parallel(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """Each pack's test waits for the other's to be running: passes only when concurrent.

    Both packs are in the folder before the daemon starts, so its first full pass plans
    them together; two renames while it runs may reach it as two passes (the watcher walks
    the first pack's directories before it reports the second, on a loaded machine for
    longer than the debounce's coalescing window), and then they are tested one by one."""
    daemon = daemon_factory()
    daemon.config["testing"]["sandbox"] = "none"  # the tests meet through a host directory
    rendezvous = daemon.root / "rendezvous"
    rendezvous.mkdir()

    def meet(me: str, other: str) -> str:
        return (
            f"#!/bin/sh\ntouch {rendezvous}/{me}\ni=0\n"
            f"while [ ! -e {rendezvous}/{other} ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done\n"
            f"[ -e {rendezvous}/{other} ] || exit 1\n" + PASSING_TEST[10:]
        )

    for name, other in (("hello", "failing"), ("failing", "hello")):
        build_pack(EXAMPLES / name, daemon.folder / f".{name}", test_script=meet(name, other))
    for name in ("hello", "failing"):  # both in place before the first pass scans the folder
        (daemon.folder / f".{name}").rename(daemon.folder / name)
    daemon.start()
    daemon.wait_pack("hello", "active")
    daemon.wait_pack("failing", "active")


def test_metrics_file_follows_the_daemon(daemon_factory: Callable[..., DaemonProcess]) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    daemon = daemon_factory()
    metrics = daemon.root / "metrics/attuned.prom"
    metrics.parent.mkdir()
    daemon.config["metrics_file"] = str(metrics)
    daemon.start()
    daemon.drop("hello")
    daemon.drop("failing")
    daemon.wait_pack("hello", "active")
    daemon.wait_pack("failing", "failed")

    def samples() -> dict[tuple[str, str], float]:
        found = {}
        for family in text_string_to_metric_families(metrics.read_text()):
            for sample in family.samples:
                label = sample.labels.get("state") or sample.labels.get("status") or ""
                found[(sample.name, label)] = sample.value
        return found

    daemon.wait_for(lambda _s: samples().get(("attuned_packs", "failed")) == 1, what="metrics")
    found = samples()
    assert found[("attuned_packs", "active")] == 1
    assert found[("attuned_test_executions_total", "passed")] == 1
    assert found[("attuned_test_executions_total", "failed")] == 1
    assert found[("attuned_reconcile_passes_total", "")] >= 1


def test_a_trigger_of_a_folder_reads_the_whole_folder(daemon: DaemonProcess) -> None:
    """`attuned trigger local` on a watched folder rescans it (a change inotify cannot see,
    say on a network filesystem, is found), not just the entries inotify reported."""
    daemon.drop("hello")
    daemon.drop("welcome")
    daemon.wait_pack("welcome", "active")
    scans = len(daemon.events("source.scanned"))
    assert daemon.cli("trigger", "local").returncode == 0
    daemon.wait_for(
        lambda _s: len(daemon.events("source.scanned")) > scans, what="the triggered scan"
    )
    scanned = daemon.events("source.scanned")[scans]
    seen = sum(scanned.get(k, 0) for k in ("cache_hits", "snapshots_reused", "snapshots_made"))
    assert seen == 2, f"both packs read (or found unchanged by stat), not 0: {scanned}"


def test_the_status_shows_a_registration_before_the_pass_ends(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """Status writes during a pass are spaced out, but none is lost: a pack registered while
    another pack's tests still run shows `active` before that pass ends."""
    daemon = daemon_factory()
    daemon.config["testing"]["sandbox"] = "none"  # the slow test waits on a host file
    release = daemon.root / "release"
    slow = (
        f"#!/bin/sh\ni=0\nwhile [ ! -e {release} ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); "
        "done\n" + PASSING_TEST[10:]
    )
    build_pack(EXAMPLES / "failing", daemon.folder / ".failing", test_script=slow)
    build_pack(EXAMPLES / "hello", daemon.folder / ".hello")
    for name in ("failing", "hello"):  # both in the first pass
        (daemon.folder / f".{name}").rename(daemon.folder / name)
    daemon.start(first_pass=False)
    status = daemon.wait_for(
        lambda s: s.get("packs", {}).get("hello", {}).get("state") == "active",
        what="hello active while failing's tests run",
    )
    assert status["daemon"]["phase"] == "reconciling", status
    assert status["packs"].get("failing", {}).get("state") != "active", status
    assert status["last_reconcile"] is None, status  # the first pass has not ended
    release.touch()
    daemon.wait_pack("failing", "active")
