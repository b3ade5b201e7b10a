"""`runtime_deps`: is every runtime a pack declares installed on this host? Checked before
its tests run; a missing one blocks the pack with a message naming it.

Attune's names map to the command that provides them (`shell` is `sh`, `nodejs` is `node`);
`python`/`python3` is the interpreter tests run with (`testing.python`); `native` needs
nothing. Any other name is looked up as a command of that name on the tests' `PATH`. The
operator's `environments.runtimes` adds names or overrides these.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path

BUILTIN_COMMANDS: dict[str, str] = {
    "shell": "sh",
    "sh": "sh",
    "bash": "bash",
    "nodejs": "node",
    "node": "node",
    "native": "",  # compiled into the action itself: nothing to look for
}
PYTHON_NAMES = frozenset({"python", "python3"})


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _find(command: str, search_path: str) -> str | None:
    if "/" in command:
        return command if _executable(Path(command)) else None
    return shutil.which(command, path=search_path)


def missing_runtimes(
    names: Iterable[str],
    *,
    search_path: str,
    python: str,
    commands: Mapping[str, str] | None = None,
) -> list[str]:
    """One message per declared runtime that is not installed, naming it and what was
    looked for; empty when all are there."""
    overrides = {k.lower(): v for k, v in (commands or {}).items()}
    missing: list[str] = []
    for name in dict.fromkeys(n.strip() for n in names if n.strip()):
        key = name.lower()
        if key in overrides:
            command = overrides[key]
            source = "environments.runtimes"
        elif key in PYTHON_NAMES:
            if _find(python, search_path) is None:
                missing.append(
                    f"runtime {name!r} (testing.python {python!r}) is not installed on this "
                    "host: no such executable"
                )
            continue
        else:
            command = BUILTIN_COMMANDS.get(key, name)
            source = ""
        if not command:
            continue
        if _find(command, search_path) is None:
            where = "no such executable" if "/" in command else f"not found on PATH={search_path}"
            by = f", set in {source}" if source else ""
            missing.append(
                f"runtime {name!r} (command {command!r}{by}) is not installed on this host: {where}"
            )
    return missing
