"""Crash anywhere: change the desired state, run a reconcile pass that SIGKILLs itself at a
random fault point, run a clean pass, and check the invariants every time.

Each pass runs in a forked child (the same code as `attuned reconcile --once`, without paying
the interpreter's start-up per pass). ATTUNED_CRASH_ITERATIONS raises the count (CI: 100).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlmodel import select

from attuned import faults
from attuned.config import load_config
from attuned.pack.content import digest, list_files
from attuned.pack.loader import load_pack
from attuned.store import outbox_admin, registered_packs
from attuned.store.database import Database
from attuned.store.models import PackRevision, TestRun
from tests.notify.receiver import SECRET, Receiver, serve

ITERATIONS = int(os.environ.get("ATTUNED_CRASH_ITERATIONS", "100"))
REFS = [f"pack{i}" for i in range(5)]
PASSING = "#!/bin/sh\necho 'Total Tests: 1'\necho 'Passed: 1'\necho 'Failed: 0'\n"
FAILING = "#!/bin/sh\necho 'Total Tests: 1'\necho 'Passed: 0'\necho 'Failed: 1'\nexit 1\n"


def _child(config_path: str, fault: str, log_path: str) -> None:
    from attuned.reconcile.daemon import Daemon
    from attuned.report.log import configure_logging

    faults.arm(fault)
    with open(log_path, "a") as log:
        configure_logging("warning", log, json=True)
        code = Daemon(load_config(Path(config_path))).run_once()
    os._exit(code)


def run_pass(config: Path, fault: str, log: Path) -> int | None:
    process = multiprocessing.get_context("fork").Process(
        target=_child, args=(str(config), fault, str(log))
    )
    process.start()
    process.join(timeout=120)
    assert not process.is_alive(), "a reconcile pass hung"
    return process.exitcode


def write_pack(folder: Path, ref: str, version: str, passing: bool, salt: int) -> None:
    staging = folder / f".{ref}"
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "tests").mkdir(parents=True)
    (staging / "actions").mkdir()
    manifest = {
        "ref": ref,
        "label": ref,
        "description": "crash loop",
        "version": version,
        "testing": {"runners": {"t": {"type": "script", "entry_point": "tests/run.sh"}}},
    }
    (staging / "pack.yaml").write_text(yaml.safe_dump(manifest))
    (staging / "tests/run.sh").write_text(PASSING if passing else FAILING)
    for n in range(6):  # enough files for mid_copy to land between two of them
        (staging / "actions" / f"a{n}.yaml").write_text(
            f"ref: {ref}.a{n}\nrunner_type: shell\n# {salt}\n"
        )
    target = folder / ref
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)


def mutate(
    rng: random.Random, folder: Path, state: dict[str, dict[str, Any]], iteration: int
) -> str:
    """One random change to the desired state; returns what it did."""
    ref = rng.choice(REFS)
    present = (folder / ref).exists()
    if not present:
        write_pack(folder, ref, "1.0.0", True, iteration)
        state[ref] = {"minor": 0}
        return f"add {ref}"
    choice = rng.choice(["upgrade", "upgrade", "fail", "reinstall", "remove"])
    if choice == "remove":
        shutil.rmtree(folder / ref)
        return f"remove {ref}"
    if choice in ("upgrade", "fail"):
        state[ref]["minor"] += 1
    write_pack(folder, ref, f"1.{state[ref]['minor']}.0", choice != "fail", iteration)
    return f"{choice} {ref}"


def test_crash_anywhere_then_recover(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seed = int(os.environ.get("ATTUNED_CRASH_SEED", random.randrange(1 << 30)))
    print(f"\ncrash loop: seed {seed}, {ITERATIONS} iterations")
    rng = random.Random(seed)
    folder = tmp_path / "packs.d"
    folder.mkdir()
    state_dir = tmp_path / "state"
    config = tmp_path / "attuned.yaml"
    monkeypatch.setenv("ATTUNED_TEST_WEBHOOK_SECRET", SECRET)  # the passes inherit it
    with serve(Receiver()) as receiver:
        config.write_text(
            yaml.safe_dump(
                {
                    "state_dir": str(state_dir),
                    "reconcile": {"retry_initial": 0.01, "retry_max": 0.01, "keep_versions": 2},
                    "testing": {"kill_grace": 0.2},
                    "sources": [{"name": "local", "path": str(folder)}],
                    "notify": [
                        {
                            "name": "hook",
                            "type": "webhook",
                            "url": receiver.url,
                            "secret_env": "ATTUNED_TEST_WEBHOOK_SECRET",
                            "retry_initial": 0.01,
                            "retry_max": 0.01,
                        }
                    ],
                }
            )
        )
        crash_loop(rng, folder, config, receiver)


def crash_loop(rng: random.Random, folder: Path, config: Path, receiver: Receiver) -> None:
    log = config.parent / "passes.log"
    expected: dict[str, str] = {}  # ref -> digest of its last content that passed its tests
    versions: dict[str, dict[str, Any]] = {}
    killed: Counter[str] = Counter()
    for iteration in range(ITERATIONS):
        change = ", ".join(
            mutate(rng, folder, versions, iteration) for _ in range(rng.randint(1, 2))
        )
        for ref in REFS:
            entry = folder / ref
            if not entry.exists():
                expected.pop(ref, None)
            elif (entry / "tests/run.sh").read_text() == PASSING:
                expected[ref] = load_pack(entry).digest
        fault = f"{rng.choice(faults.POINTS)}@{rng.choice((1, 1, 1, 2))}"
        before = len(receiver.received)
        code = run_pass(config, fault, log)
        if code == -9:
            killed[fault.partition("@")[0]] += 1
        assert run_pass(config, "", log) in (0, 4), f"iteration {iteration} ({change}): recovery"
        where = f"iteration {iteration} ({change}, {fault})"
        check_invariants(config, expected, where)
        check_events(config, receiver, before, resent=fault.startswith("after_send"), where=where)
    print(f"killed at: {dict(killed)}")
    assert sum(killed.values()) >= ITERATIONS // 4  # the faults really fired


def check_invariants(config_path: Path, expected: dict[str, str], where: str) -> None:
    config = load_config(config_path)
    database = Database(config.database_url)
    try:
        with database.read() as session:
            packs = {p.ref: p.digest for p in registered_packs.managed_heads(session)}
            revisions = Counter((r.ref, r.digest) for r in session.exec(select(PackRevision)))
            runs = session.exec(select(TestRun)).all()
    finally:
        database.dispose()
    # the final state equals the desired state
    assert packs == expected, where
    # every registered pack's served files match its recorded digest; nothing else is served
    store = config.packs_path
    served = {p.name for p in store.iterdir() if p.is_symlink()} if store.exists() else set()
    assert served == set(packs), where
    for ref, recorded in packs.items():
        root = (store / ref).resolve()
        assert digest(root, list_files(root)) == recorded, f"{where}: {ref} served wrong files"
    # one stored test execution per activation, none duplicated, none lost
    registered = Counter((r.pack_ref, r.pack_digest) for r in runs if r.outcome == "registered")
    assert registered == revisions, where
    rolled_back = Counter((r.pack_ref, r.pack_digest) for r in runs if r.outcome == "rolled_back")
    assert all(n == 1 for n in rolled_back.values()), f"{where}: a failing run repeated"
    # no pack left in a transitional state
    status = json.loads(config.status_path.read_text())
    states = {ref: p["state"] for ref, p in status["packs"].items()}
    assert "pending" not in states.values(), f"{where}: {states}"


def check_events(
    config_path: Path, receiver: Receiver, before: int, *, resent: bool, where: str
) -> None:
    """No event lost, none invented, none sent twice but for a kill between a send and its
    record (then with the same id); and the outbox tells exactly the stored history."""
    config = load_config(config_path)
    database = Database(config.database_url)
    try:
        with database.read() as session:
            stored = outbox_admin.listing(session, limit=100_000)
            runs = {r.id for r in session.exec(select(TestRun))}
            activations = len(session.exec(select(PackRevision)).all())
    finally:
        database.dispose()
    ids = {row.event.id for row in stored}
    assert all(row.state == "delivered" for row in stored), f"{where}: undelivered"
    received = receiver.ids()
    assert set(received) == ids, (
        f"{where}: lost {ids - set(received)}, invented {set(received) - ids}"
    )
    this_pass = received[before:]
    if not resent:  # a kill anywhere else never sends an event twice
        assert len(set(this_pass)) == len(this_pass), f"{where}: sent twice"
        assert not set(this_pass) & set(received[:before]), f"{where}: sent again"
    told_runs = {
        row.event.data["tests"]["test_run_id"]
        for row in stored
        if row.event.name == "pack.test.finished"
    }
    assert told_runs == runs, f"{where}: test runs and their events differ"
    activated = sum(
        row.event.name in ("pack.registered", "pack.upgraded", "pack.reinstalled") for row in stored
    )
    assert activated == activations, f"{where}: activations and their events differ"
