"""What the archive and follower tests share: a leader that publishes, and tree comparison."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from attuned.cluster.archives import announce, store_archive
from attuned.registry import Registry
from attuned.store.registered_packs import RegisteredPack

MAX_BYTES = 64 * 1024 * 1024


def publish(registry: Registry, path: Path) -> RegisteredPack:
    """Register as the leader does, then store the archive and announce.

    Once `Registry._commit` stores the archive itself, `store_archive` here finds it and
    returns False: the helper works with and without that hook.
    """
    record = registry.register(path, skip_tests=True, replace=True).pack
    served = registry.store.active_dir(record.ref)
    assert served is not None
    with registry.db.write() as session:
        store_archive(session, served, record.digest, max_bytes=MAX_BYTES)
        announce(session, f"{record.ref} {record.version}")
    return record


def tree(root: Path) -> dict[str, tuple[str, int, bytes]]:
    """Every entry under `root`: kind, permission bits and content (a link's target)."""
    entries: dict[str, tuple[str, int, bytes]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            info = path.lstat()
            rel = path.relative_to(root).as_posix()
            if stat.S_ISLNK(info.st_mode):
                entries[rel] = ("link", 0, os.readlink(path).encode())
            elif stat.S_ISDIR(info.st_mode):
                entries[rel] = ("dir", stat.S_IMODE(info.st_mode), b"")
            else:
                entries[rel] = ("file", stat.S_IMODE(info.st_mode), path.read_bytes())
    return entries
