"""An idle daemon with a directory source and no sinks holds only what it uses.

Every module imported stays in memory for the daemon's lifetime (issue 18: idle RSS), so the
git source (pygit2), PostgreSQL and the cluster (psycopg), the sinks (httpx, pika), the test
runners and migrations (alembic, which loads mako and pygments) are imported where they are
first needed. This runs the real daemon (`Daemon.run`: watches, scheduler, loop) in a fresh
interpreter and reads `sys.modules` once it is idle after its first pass.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import EXAMPLES

# not needed by an idle daemon with a directory source, no sinks and no test to run
HEAVY = (
    "pygit2",
    "attuned.reconcile.sources.git",
    "psycopg",
    "attuned.cluster",
    "httpx",
    "pika",
    "tenacity",
    "attuned.notify.dispatcher",
    "attuned.notify.sinks",
    "attuned.testing.runners",
    "attuned.testing.formats",
    "attuned.testing.sandbox",
    "attuned.testing.process",
    "attuned.testing.suites",
    "xml.etree",
)
# a schema change needs alembic; a start on an up-to-date schema does not
MIGRATIONS = ("alembic", "mako", "pygments")

IDLE_DAEMON = """
import json, sys, threading, time
from pathlib import Path
from attuned.config import load_config
from attuned.reconcile.daemon import Daemon

daemon = Daemon(load_config(Path(sys.argv[1])))
seen = {}

def when_idle():
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if daemon.last_reconcile is not None and daemon.phase == "idle":
            break
        time.sleep(0.05)
    seen["modules"] = sorted(sys.modules)
    seen["packs"] = {ref: p.state for ref, p in daemon.packs.items()}
    seen["phase"] = daemon.phase
    daemon.requests.ask(stop=True)

threading.Thread(target=when_idle, daemon=True).start()
rc = daemon.run()
print(json.dumps({"rc": rc, **seen}))
"""


def idle_daemon(config: Path) -> dict[str, object]:
    """Run `attuned run`'s daemon on `config` until it is idle after its first pass; what it
    had imported then, its packs' states and its phase."""
    done = subprocess.run(
        [sys.executable, "-c", IDLE_DAEMON, str(config)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        cwd=config.parent,
    )
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


def heavy_in(modules: object, names: tuple[str, ...]) -> list[str]:
    assert isinstance(modules, list)
    return [m for m in modules if any(m == n or m.startswith(f"{n}.") for n in names)]


@pytest.mark.e2e  # starts the daemon
def test_an_idle_directory_daemon_imports_no_git_database_driver_sink_or_runner(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "packs.d"
    folder.mkdir()
    config = tmp_path / "attuned.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "state_dir": str(tmp_path / "state"),
                "log": {"level": "warning"},
                "sources": [{"name": "local", "path": str(folder), "skip_tests": True}],
            }
        )
    )

    first = idle_daemon(config)  # a new state directory: the schema is created

    assert first["rc"] == 0 and first["phase"] == "idle" and first["packs"] == {}
    assert heavy_in(first["modules"], HEAVY) == []

    shutil.copytree(EXAMPLES / "hello", folder / "hello")
    restarted = idle_daemon(config)  # the schema is current; a pack is registered untested

    assert restarted["rc"] == 0 and restarted["packs"] == {"hello": "active"}
    assert heavy_in(restarted["modules"], HEAVY + MIGRATIONS) == []
    # the guard sees what it guards: the modules the daemon does use are there
    assert heavy_in(restarted["modules"], ("watchdog", "apscheduler", "sqlalchemy")) != []
