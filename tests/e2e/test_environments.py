"""The daemon and pack environments: a pack whose dependency cannot be installed yet is not
served, is retried with backoff, and is served once pip finds the dependency."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.conftest import DaemonProcess
from tests.envs.conftest import write_pack
from tests.envs.wheels import build_wheel


def test_an_environment_failure_is_retried_until_the_dependency_can_be_installed(
    tmp_path: Path,
) -> None:
    wheels = tmp_path / "wheels"
    build_wheel(wheels, "1.0")  # the pack wants 2.0: not there yet
    daemon = DaemonProcess(
        tmp_path / "d", f"sqlite:///{tmp_path / 'attuned.db'}", retry_initial=0.5, retry_max=1
    )
    daemon.config["environments"] = {"find_links": [str(wheels)], "no_index": True}
    daemon.start()
    try:
        staged = write_pack(
            tmp_path / "staging", "needs-two", version="2.0", deps=["attuned_fixture_lib==2.0"]
        )
        staged.path.rename(daemon.folder / "needs-two")
        daemon.wait_for(lambda _s: bool(daemon.events("env.failed")), 60, "env.failed")
        # listed pending from the moment it is planned; then with the failure's reason
        pending = daemon.wait_for(
            lambda s: bool(s["packs"].get("needs-two", {}).get("last_error")), what="the error"
        )["packs"]["needs-two"]
        assert (pending["state"], pending["version"]) == ("pending", None)
        assert "No matching distribution found for attuned_fixture_lib==2.0" in (
            pending["last_error"] or ""
        )
        [failed, *_] = daemon.events("pack.failed")
        assert failed["failure"] == "transient"

        build_wheel(wheels, "2.0")  # the index has it now: the next retry passes

        active = daemon.wait_pack("needs-two", "active", "1.0.0", timeout=60)
        assert active["last_test"]["status"] == "passed"
        assert active["last_test"]["passed"] == 3
        [created] = daemon.events("env.created")
        assert created["pack"] == "needs-two"
        history = daemon.cli("history", "needs-two", "--json")
        assert '"outcome": "environment_failed"' in history.stdout
        assert '"status": "error"' in history.stdout
    finally:
        assert daemon.stop() == 0
