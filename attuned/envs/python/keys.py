"""Which environment a set of requirements needs: the interpreter tests run with, probed once
per version of its file, and the key that names the environment built for it.

The key is a sha256 over the interpreter (as configured, its real path and version), the
normalized requirements, where pip looks (credentials redacted, so a rotated token does not
rebuild everything) and the runner packages it inherits."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from attuned.envs.python.layout import FORMAT
from attuned.errors import EnvironmentFailed
from attuned.pack.requirements import normalize, stored_requirements
from attuned.settings.envs import EnvironmentSettings, redact_url
from attuned.settings.testing import ExecutorSettings

_PROBE_TIMEOUT = 60.0
# The interpreter's identity, and the directories it imports installed packages from: all
# of sys.path but the standard library (site-packages, dist-packages, .pth additions).
_PROBE = """\
import json, os, sys, sysconfig
std = {sysconfig.get_path("stdlib"), sysconfig.get_path("platstdlib")}
std |= {os.path.join(p, "lib-dynload") for p in set(std)}
extra = [p for p in sys.path if p and p not in std and not p.endswith(".zip") and os.path.isdir(p)]
print(json.dumps({"version": sys.version, "executable": sys.executable, "site": extra}))
"""


@dataclass(frozen=True)
class Interpreter:
    path: str  # as configured (made absolute): what tests run with
    real: str  # symlinks resolved
    version: str
    site_packages: tuple[str, ...]


def probe(
    testing: ExecutorSettings, argv: list[str], *, check: bool
) -> subprocess.CompletedProcess[str]:
    """A short question to an interpreter, with the tests' PATH and nothing else."""
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=_PROBE_TIMEOUT,
        check=check,
        stdin=subprocess.DEVNULL,
        env={"PATH": testing.path, "LANG": testing.lang},
    )


class EnvironmentKeys:
    """Works out environment keys, remembering what it learnt (the interpreter per version of
    its file, a pack's requirements per version of its files) so asking again is cheap."""

    def __init__(
        self, settings: EnvironmentSettings | None = None, testing: ExecutorSettings | None = None
    ) -> None:
        self.settings = settings or EnvironmentSettings()
        self.testing = testing or ExecutorSettings()
        self._guard = threading.Lock()
        self._interpreters: dict[tuple[str, int, int], Interpreter] = {}
        self._stored: dict[tuple[str, int, int], list[str] | None] = {}

    def interpreter(self) -> Interpreter:
        """`testing.python`, probed once per version of its file."""
        configured = self.testing.python
        found = (
            configured if "/" in configured else shutil.which(configured, path=self.testing.path)
        )
        if found is None:
            raise EnvironmentFailed(f"testing.python {configured!r} is not on PATH")
        path = os.path.abspath(found)
        try:
            info = os.stat(path)
        except OSError as exc:
            raise EnvironmentFailed(f"testing.python {path}: {exc.strerror}") from None
        cache_key = (path, info.st_mtime_ns, info.st_ino)
        with self._guard:
            known = self._interpreters.get(cache_key)
        if known is not None:
            return known
        found_interpreter = self._probe_interpreter(path)
        with self._guard:
            self._interpreters[cache_key] = found_interpreter
        return found_interpreter

    def _probe_interpreter(self, path: str) -> Interpreter:
        try:
            done = probe(self.testing, [path, "-I", "-c", _PROBE], check=False)
            data = json.loads(done.stdout) if done.returncode == 0 else None
        except (OSError, subprocess.SubprocessError, ValueError) as exc:
            raise EnvironmentFailed(f"testing.python {path} cannot be run: {exc}") from None
        if not isinstance(data, dict):
            why = done.stderr.strip().splitlines()[-1:] or [f"exit code {done.returncode}"]
            raise EnvironmentFailed(f"testing.python {path} cannot be run: {why[0]}")
        return Interpreter(
            path=path,
            real=os.path.realpath(path),
            version=str(data["version"]),
            site_packages=tuple(str(p) for p in data["site"]),
        )

    def sources(self) -> dict[str, str]:
        """Where pip looks, credentials redacted."""
        return {k: redact_url(v) for k, v in self.settings.pip_sources().items()}

    def key_for(self, requirements: Sequence[str]) -> str:
        """The full key (64 hex digits) of the environment for these requirements."""
        interpreter = self.interpreter()
        inherited = list(interpreter.site_packages) if self.settings.inherit_runner_packages else []
        material = {
            "format": FORMAT,
            "interpreter": interpreter.path,
            "real": interpreter.real,
            "version": interpreter.version,
            "requirements": normalize(list(requirements)),
            "sources": self.sources(),
            "inherit": inherited,
        }
        blob = json.dumps(material, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()

    def pack_keys(self, pack_dirs: Iterable[Path]) -> dict[Path, str]:
        """The key of the environment each stored pack directory uses (those without Python
        dependencies use none). Requirements are read once per directory version."""
        keys: dict[Path, str] = {}
        for pack_dir in pack_dirs:
            requirements = self._stored_requirements(pack_dir)
            if requirements:
                keys[pack_dir] = self.key_for(requirements)
        return keys

    def _stored_requirements(self, pack_dir: Path) -> list[str] | None:
        stamps = []
        for name in ("pack.yaml", "requirements.txt"):
            try:
                stamps.append((pack_dir / name).stat().st_mtime_ns)
            except OSError:
                stamps.append(0)
        cache_key = (str(pack_dir), stamps[0], stamps[1])
        with self._guard:
            if cache_key in self._stored:
                return self._stored[cache_key]
        requirements = stored_requirements(pack_dir)
        with self._guard:
            self._stored[cache_key] = requirements
        return requirements
