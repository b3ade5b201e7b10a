"""ssh host keys for libgit2, which only reads `<its home>/.ssh/known_hosts`.

pygit2 hands the certificate callback no host key to check, and libgit2's home directory is
one setting for the whole process. So every ssh source registers its `known_hosts_file`, and
their union is written to `<home>/.ssh/known_hosts` of a home directory owned by attuned,
which becomes libgit2's home. The limit: a host key listed for one source is trusted for that
host by every source. Unknown or changed keys are refused, never trusted on first use.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pygit2

_lock = threading.Lock()
_files: dict[str, Path] = {}  # source name -> its known_hosts_file
_home: Path | None = None


def register(source: str, known_hosts_file: Path, home: Path) -> None:
    """Trust the keys in `known_hosts_file`; `home` becomes libgit2's home directory."""
    global _home
    with _lock:
        _files[source] = known_hosts_file
        if _home is None:
            _home = home
            home.mkdir(parents=True, exist_ok=True)
            pygit2.settings.homedir = str(home)


def unregister(source: str) -> None:
    with _lock:
        _files.pop(source, None)


def refresh() -> None:
    """Rewrite the merged known_hosts from the registered files, if it changed.

    Read at every ssh poll, so an operator's edit of a known_hosts_file counts at once. An
    unreadable file contributes nothing: its hosts are then refused, which is the safe side.
    """
    with _lock:
        if _home is None:
            return
        parts = []
        for name in sorted(_files):
            try:
                text = _files[name].read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            parts.append(f"# {name}: {_files[name]}\n{text.rstrip()}\n")
        merged = "".join(parts)
        target = _home / ".ssh" / "known_hosts"
        try:
            if target.read_text(encoding="utf-8") == merged:
                return
        except OSError:
            pass
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = target.with_name(f".known_hosts.{os.getpid()}.tmp")
        tmp.write_text(merged, encoding="utf-8")
        os.replace(tmp, target)
