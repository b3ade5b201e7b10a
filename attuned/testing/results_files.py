"""Report files under `testing.result_path` written by one runner, told apart from files
that were already there (committed samples, an earlier runner's reports)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from attuned.pack.manifest import TestingSection

_Stamp = tuple[int, int]  # (mtime_ns, size)


@dataclass(frozen=True)
class ResultFiles:
    location: Path | None
    before: dict[Path, _Stamp] = field(default_factory=dict)

    @classmethod
    def watch(cls, pack: Path, testing: TestingSection | None) -> ResultFiles:
        """Remember what is under result_path now; ValueError when it leaves the pack."""
        if testing is None or not testing.result_path:
            return cls(None)
        relative = Path(testing.result_path)
        if relative.is_absolute() or ".." in relative.parts:
            raise ValueError(f"testing.result_path {testing.result_path!r} is not inside the pack")
        location = pack / relative
        return cls(location, _stamps(location))

    def written(self) -> tuple[Path, ...]:
        """Files new or changed since `watch`, in name order."""
        if self.location is None:
            return ()
        now = _stamps(self.location)
        return tuple(sorted(path for path, stamp in now.items() if self.before.get(path) != stamp))


def _stamps(location: Path) -> dict[Path, _Stamp]:
    if location.is_file():
        candidates = [location]
    elif location.is_dir():
        candidates = [p for p in location.rglob("*") if p.is_file() and not p.is_symlink()]
    else:
        return {}
    stamps = {}
    for path in candidates:
        try:
            info = path.stat()
        except OSError:
            continue  # unreadable: a format reading it reports that
        stamps[path] = (info.st_mtime_ns, info.st_size)
    return stamps
