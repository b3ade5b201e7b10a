"""The scrubbed environment of a test process: nothing of the daemon's leaks in."""

from __future__ import annotations

from pathlib import Path

from attuned.testing.settings import ExecutorSettings


def scrubbed_environment(
    settings: ExecutorSettings,
    *,
    pack_ref: str,
    pack_version: str,
    pack_dir: Path,
    home: Path,
    tmpdir: Path,
) -> dict[str, str]:
    """Only these variables: the daemon's own (database URLs, tokens) never reach a test."""
    return {
        "PATH": settings.path,
        "HOME": str(home),
        "LANG": settings.lang,
        "TMPDIR": str(tmpdir),
        "ATTUNE_PACK_REF": pack_ref,
        "ATTUNE_PACK_VERSION": pack_version,
        "ATTUNE_PACK_DIR": str(pack_dir),
    }
