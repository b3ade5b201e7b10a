"""`attuned show REF --provenance [--json]`: the record of the served version's activation,
made by a real registration (a git source's provenance as the daemon passes it), on SQLite.
"""

from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path

import pytest

from attuned.store.provenance import Provenance
from tests.cli.inprocess import run_attuned
from tests.cli.test_history_cli import registry_of, write_config
from tests.conftest import PackFactory

COMMIT = "0123456789abcdef0123456789abcdef01234567"
TREE = "fedcba9876543210fedcba9876543210fedcba98"


@pytest.fixture
def config(tmp_path: Path, make_pack: PackFactory) -> Path:
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'attuned.db'}")
    registry = registry_of(config)
    try:
        registry.register(
            make_pack(),
            provenance=Provenance(
                origin="packs:hello",
                source="packs",
                source_revision=COMMIT,
                source_type="git",
                source_url="https://deploy:s3cret@git.example.com/packs.git",
                source_tree=TREE,
                signer="ssh SHA256:abc alice@example.com",
            ),
        )
    finally:
        registry.close()
    return config


def test_show_provenance_prints_the_record(
    config: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    done = run_attuned(["show", "hello", "--provenance", "--config", config], capsys)

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("hello 1.0.0, activated ")
    assert lines[0].endswith(f"Z on {socket.gethostname()}")
    script = (tmp_path / "state/packs/hello/tests/run_tests.sh").read_bytes()
    assert lines[2:] == [
        "  source     packs (git)",
        "  url        https://deploy:***@git.example.com/packs.git",
        f"  commit     {COMMIT}",
        f"  tree       {TREE}",
        "  signer     ssh SHA256:abc alice@example.com",
        lines[7],  # the run's id
        "  env lock   -",
        "files (2, sha256):",
        lines[10],  # pack.yaml's
        f"  {hashlib.sha256(script).hexdigest()}  tests/run_tests.sh",
    ]
    assert lines[7].startswith("  tests      passed, 2/2 passed (run ")
    assert "s3cret" not in done.stdout


def test_show_provenance_json(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    done = run_attuned(["show", "hello", "--provenance", "--json", "--config", config], capsys)

    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert {k: record[k] for k in ("pack", "version", "source", "commit", "tree", "signer")} == {
        "pack": "hello",
        "version": "1.0.0",
        "source": "packs",
        "commit": COMMIT,
        "tree": TREE,
        "signer": "ssh SHA256:abc alice@example.com",
    }
    assert record["source_url"] == "https://deploy:***@git.example.com/packs.git"
    assert record["tests"] == {"status": "passed", "passed": 2, "total": 2}
    assert isinstance(record["test_run_id"], int)
    assert sorted(record["files"]) == ["pack.yaml", "tests/run_tests.sh"]
    assert record["activated_at"].endswith("Z")
    assert (record["env_lock"], record["host"]) == (None, socket.gethostname())


def test_a_pack_never_activated_has_no_record(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    done = run_attuned(["show", "nope", "--provenance", "--config", config], capsys)

    assert done.returncode == 2
    assert done.stderr.strip() == "error: pack 'nope' has no provenance record (never activated)"
