"""The scrubbed environment of a test process: nothing of the daemon's leaks in."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from attuned.settings.testing import ExecutorSettings


@dataclass(frozen=True)
class PackEnvironment:
    """A prepared Python virtual environment a pack's tests run in: its interpreter runs the
    unittest and pytest runners, and its `bin/` comes first on every runner's `PATH`."""

    root: Path

    @property
    def bin_dir(self) -> Path:
        return self.root / "bin"

    @property
    def python(self) -> str:
        return str(self.bin_dir / "python")


def scrubbed_environment(
    settings: ExecutorSettings,
    *,
    pack_ref: str,
    pack_version: str,
    pack_dir: Path,
    home: Path,
    tmpdir: Path,
    environment: PackEnvironment | None = None,
) -> dict[str, str]:
    """Only these variables: the daemon's own (database URLs, tokens) never reach a test."""
    env = {
        "PATH": settings.path,
        "HOME": str(home),
        "LANG": settings.lang,
        "TMPDIR": str(tmpdir),
        "ATTUNE_PACK_REF": pack_ref,
        "ATTUNE_PACK_VERSION": pack_version,
        "ATTUNE_PACK_DIR": str(pack_dir),
    }
    if environment is not None:  # what `activate` does: `python3` in a script is the env's
        env["PATH"] = os.pathsep.join((str(environment.bin_dir), settings.path))
        env["VIRTUAL_ENV"] = str(environment.root)
    return env
