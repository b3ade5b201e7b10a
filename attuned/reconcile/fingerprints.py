"""Directory fingerprints: what tells the stat caches that a pack's files are as they were,
without reading them.

The snapshot store's stat cache and the drift check both ask this question for every pack
at every pass, so it lives apart from either: a walk that costs stats, never reads.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from attuned.pack.content import IGNORED_NAMES

# (relpath, mode, size, mtime_ns, ctime_ns, inode) of one file below a pack directory
FileStat = tuple[str, int, int, int, int, int]


@dataclass(frozen=True)
class Fingerprint:
    """What the stat cache compares: the directory itself and every file below it (path,
    mode, size, mtime, ctime, inode of each), kept as 16 bytes: the full rows of 1,000 packs
    cost 12 MiB, twice, in a daemon that keeps them for its lifetime, and the cache is
    written to disk (`StatCache`) so that a restart does not read every pack again."""

    device: int
    inode: int
    files: bytes
    newest_ctime_ns: int

    def settled(self, before_ns: int) -> bool:
        """Whether no file changed after `before_ns` (ctime: a write cannot set it back)."""
        return self.newest_ctime_ns < before_ns

    def to_json(self) -> list[int | str]:
        return [self.device, self.inode, self.files.hex(), self.newest_ctime_ns]

    @classmethod
    def from_json(cls, data: object) -> Fingerprint:
        """Raises ValueError/TypeError on anything but what `to_json` wrote."""
        if not isinstance(data, list) or len(data) != 4:
            raise ValueError(f"not a fingerprint: {data!r}")
        device, inode, files, newest = data
        if not all(isinstance(v, int) for v in (device, inode, newest)):
            raise ValueError(f"not a fingerprint: {data!r}")
        return cls(device, inode, bytes.fromhex(files), newest)


def fingerprint(source_dir: Path | str) -> Fingerprint | None:
    """Stat every file below `source_dir` (no content is read); None when it cannot be walked.

    This is most of what a no-op pass costs (one per pack, and one per served pack for the
    drift check), so it keeps to the floor: one `scandir` per directory, one `lstat` per file,
    and a digest of plain integers. Names go through BLAKE2; the stat values, integers only,
    through Python's tuple hash, which is the same in every process (only str and bytes hashes
    are salted) and 4x cheaper than formatting them.
    """
    rows: list[FileStat] = []
    try:
        top = os.stat(source_dir)
        pending = [str(source_dir)]
        cut = len(pending[0]) + 1
        while pending:
            with os.scandir(pending.pop()) as entries:
                for entry in entries:
                    if entry.name in IGNORED_NAMES:
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(entry.path)
                        continue
                    info = entry.stat(follow_symlinks=False)
                    rows.append(
                        (
                            entry.path[cut:],
                            info.st_mode,
                            info.st_size,
                            info.st_mtime_ns,
                            info.st_ctime_ns,
                            info.st_ino,
                        )
                    )
    except OSError:
        return None
    rows.sort()
    names = hashlib.blake2b("\0".join([row[0] for row in rows]).encode(), digest_size=8)
    values = hash(tuple([row[1:] for row in rows])) & 0xFFFF_FFFF_FFFF_FFFF
    return Fingerprint(
        top.st_dev,
        top.st_ino,
        names.digest() + values.to_bytes(8, "little"),
        max((row[4] for row in rows), default=0),
    )
