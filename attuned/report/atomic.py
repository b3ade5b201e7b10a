"""Replace a file so that readers see the old content or the new, never a mix."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def replace_text(path: Path, text: str, *, mode: int = 0o644) -> None:
    """Write a dot-named temporary file beside `path`, fsync it, chmod, rename over `path`.

    The temporary name starts with a dot and ends in `.tmp`, so collectors that read `*.prom`
    or `*.json` never pick it up. The directory must exist.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
