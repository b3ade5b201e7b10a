"""The names under the environments root (drawn in the package docstring) and the small reads
and writes of them that the build and the store share, so both agree on one layout."""

from __future__ import annotations

import contextlib
import json
import os
import re
from pathlib import Path
from typing import Any

from attuned.testing.staging import remove_tree

MARKER = ".attuned-env.json"
LAST_USED = ".attuned-last-used"
LOCKS = ".locks"
PIP_CACHE = ".pip-cache"
BUILD_PREFIX = ".build-"
RUNNER_PTH = "_attuned_runner_packages.pth"
KEY_LENGTH = 16
FORMAT = 1  # bump when the layout of an environment changes: every key changes with it
KEY_NAME = re.compile(r"^[0-9a-f]{16}$")


def touch(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.touch()
        os.utime(path)


def read_marker(env_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((env_dir / MARKER).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_marker(env_dir: Path, data: dict[str, Any]) -> None:
    tmp = env_dir / f"{MARKER}.tmp"
    with tmp.open("w") as handle:
        json.dump(data, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, env_dir / MARKER)


def remove_env(env_dir: Path) -> None:
    """The marker first: a removal cut short leaves an incomplete environment, never one
    that looks complete."""
    with contextlib.suppress(FileNotFoundError):
        (env_dir / MARKER).unlink()
    if env_dir.exists():
        remove_tree(env_dir)


def last_used(env_dir: Path) -> float:
    """When the environment was last used or made; an incomplete one: last changed."""
    times = []
    for path in (env_dir / LAST_USED, env_dir / MARKER):
        with contextlib.suppress(OSError):
            times.append(path.stat().st_mtime)
    if not times:
        with contextlib.suppress(OSError):
            times.append(env_dir.stat().st_mtime)
    return max(times, default=0.0)


def size(root: Path) -> int:
    total = 0
    for directory, _dirs, files in os.walk(root):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(directory, name)).st_size
    return total
