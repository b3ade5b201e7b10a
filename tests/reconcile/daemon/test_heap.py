"""heap.release: what a large pass freed goes back to the system (issue 18: idle RSS)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.pool import QueuePool

from attuned.reconcile.daemon import heap
from attuned.registry import Registry
from attuned.store.database import Database
from attuned.store.packstore import PackStore
from attuned.testing import TestExecutor
from tests.conftest import PackFactory

GLIBC = os.confstr("CS_GNU_LIBC_VERSION") is not None if hasattr(os, "confstr") else False

FREED_BUT_RESIDENT = """
import gc
from attuned.reconcile.daemon import heap

def rss_mib():
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmRSS"))
    return int(line.split()[1]) / 1024

blocks = [bytes(2000) for _ in range(40_000)]  # 80 MB in glibc's heap (not pymalloc's)
pin = bytes(2000)  # above them: the top of the heap stays in use, so free() returns nothing
del blocks
gc.collect()
freed = rss_mib()
trimmed = heap.release(None)
print(freed, rss_mib(), trimmed)
"""


def pooled(database: Database) -> int:
    """Connections the engine's pool holds open, idle."""
    pool = database.engine.pool
    assert isinstance(pool, QueuePool)
    return pool.checkedin()


@pytest.mark.skipif(not GLIBC, reason="malloc_trim is glibc's")
def test_memory_freed_inside_the_heap_goes_back_to_the_system() -> None:
    done = subprocess.run(
        [sys.executable, "-c", FREED_BUT_RESIDENT],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    freed, released, trimmed = done.stdout.split()

    assert trimmed == "True"
    assert float(freed) - float(released) > 60  # of the 80 MB freed but still resident


def test_release_empties_the_sqlite_pool_and_the_registry_works_on(
    database: Database, tmp_path: Path, make_pack: PackFactory
) -> None:
    registry = Registry(database, PackStore(tmp_path / "packs"), TestExecutor())
    registry.register(make_pack("first"), skip_tests=True)
    before = pooled(database)
    assert before >= 1

    heap.release(registry)

    # SQLite: each pooled connection holds up to 2 MiB of page cache the next pass refills;
    # PostgreSQL: the server holds the cache, and a reconnection costs a round trip
    assert pooled(database) == (0 if database.is_sqlite else before)
    registry.register(make_pack("second"), skip_tests=True)
    assert [p.name for p in sorted((tmp_path / "packs").iterdir()) if p.is_symlink()] == [
        "first",
        "second",
    ]
