"""Which files a test's code opens: a CPython audit hook (no mocks), one for the whole run
(audit hooks cannot be removed, so each test module sharing it adds none of its own)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class _Opened:
    """Files this process opens below some directories, while recording."""

    def __init__(self) -> None:
        self.paths: list[str] | None = None
        sys.addaudithook(self._hook)

    def _hook(self, event: str, args: tuple[Any, ...]) -> None:
        if event == "open" and self.paths is not None and isinstance(args[0], str | os.PathLike):
            self.paths.append(os.fspath(args[0]))

    @contextmanager
    def under(self, *directories: Path) -> Iterator[list[str]]:
        found: list[str] = []
        self.paths = []
        try:
            yield found
        finally:
            found.extend(p for p in self.paths if p.startswith(tuple(map(str, directories))))
            self.paths = None


OPENED = _Opened()
