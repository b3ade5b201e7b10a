"""Building one environment, step by step: make room, make the venv, ask where it installs,
install the requirements, inherit the runner's packages, publish the marker. The environment
is built at its final path (console scripts embed it in their shebangs); a build that fails
removes what it made, and only the marker, written last, makes it complete."""

from __future__ import annotations

import subprocess
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from attuned.envs.python.commands import BuildCommands, BuildLog, BuildPlace
from attuned.envs.python.keys import EnvironmentKeys, probe
from attuned.envs.python.layout import (
    BUILD_PREFIX,
    FORMAT,
    KEY_LENGTH,
    PIP_CACHE,
    RUNNER_PTH,
    remove_env,
    write_marker,
)
from attuned.errors import EnvironmentFailed
from attuned.report.log import Event, get_logger
from attuned.testing.staging import remove_tree

log = get_logger()


class EnvironmentBuild:
    """One build of the environment `key` at `env_dir`; the caller holds its lock exclusively."""

    def __init__(
        self,
        keys: EnvironmentKeys,
        *,
        root: Path,
        hidden_paths: tuple[Path, ...],
        env_dir: Path,
        key: str,
        requirements: list[str],
        pack: str,
        cancel: threading.Event | None,
    ) -> None:
        self.started = time.monotonic()
        self.keys = keys
        self.interpreter = keys.interpreter()
        self.root = root
        self.hidden_paths = hidden_paths
        self.env_dir = env_dir
        self.key = key
        self.requirements = requirements
        self.pack = pack
        self.cancel = cancel
        self.log = BuildLog()
        self.fields = dict(env=key[:KEY_LENGTH], pack=pack, requirements=len(requirements))

    def run(self) -> None:
        """Builds it, logging `env_created` or `env_failed`. Raises EnvironmentFailed (with
        the build's log) when it cannot be built."""
        self._make_room()
        build = Path(
            tempfile.mkdtemp(prefix=f"{BUILD_PREFIX}{self.key[:KEY_LENGTH]}-", dir=self.root)
        )
        try:
            duration_ms = self._build(build)
        except BaseException as exc:
            self._failed(exc)
            if isinstance(exc, OSError):
                raise self.log.failure(f"{type(exc).__name__}: {exc}") from exc
            raise
        finally:
            remove_tree(build)
        log.info(Event.ENV_CREATED, **self.fields, duration_ms=duration_ms, path=str(self.env_dir))

    def _make_room(self) -> None:
        if self.env_dir.exists():  # a crash or a failed removal left it half made
            self.log.note(f"removing the incomplete environment {self.env_dir}")
            remove_env(self.env_dir)
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / PIP_CACHE).mkdir(exist_ok=True)
        self.env_dir.mkdir()

    def _build(self, build: Path) -> int:
        """The steps, in order; returns how long the build took (ms)."""
        requirements_file = self._prepare(build)
        sources = self.keys.sources()
        self.log.note(
            "pip sources: "
            + (", ".join(f"{k}={v}" for k, v in sorted(sources.items())) or "pip's defaults")
        )
        place = BuildPlace(
            root=self.root,
            settings=self.keys.settings,
            testing=self.keys.testing,
            hidden_paths=self.hidden_paths,
            interpreter=self.interpreter,
            build=build,
            env_dir=self.env_dir,
        )
        commands = BuildCommands(place, self.started, self.log, self.cancel)
        commands.run("python -m venv", [self.interpreter.path, "-m", "venv", str(self.env_dir)])
        purelib = self._purelib()
        self._install(commands, requirements_file)
        self._inherit_runner_packages(purelib)
        duration_ms = round((time.monotonic() - self.started) * 1000)
        self._publish(sources, duration_ms)
        return duration_ms

    def _prepare(self, build: Path) -> Path:
        """The build's private HOME and TMPDIR, and its requirements file."""
        for private in ("home", "tmp"):
            (build / private).mkdir()
        requirements_file = build / "requirements.txt"
        requirements_file.write_text("".join(f"{r}\n" for r in self.requirements))
        self.log.note(f"requirements: {', '.join(self.requirements)}")
        return requirements_file

    def _purelib(self) -> Path:
        """Where the new environment installs pure-Python packages; asked before pip puts
        anything of the pack's choosing into it."""
        python = self.env_dir / "bin" / "python"
        script = "import sysconfig; print(sysconfig.get_path('purelib'))"
        try:
            done = probe(self.keys.testing, [str(python), "-I", "-c", script], check=True)
        except (OSError, subprocess.SubprocessError) as exc:
            raise self.log.failure(f"the new environment's python cannot run: {exc}") from None
        return Path(done.stdout.strip())

    def _install(self, commands: BuildCommands, requirements_file: Path) -> None:
        commands.run(
            "pip install",
            [
                str(self.env_dir / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "--no-input",
                "--disable-pip-version-check",
                "--progress-bar",
                "off",
                "-r",
                str(requirements_file),
            ],
        )

    def _inherit_runner_packages(self, purelib: Path) -> None:
        site_packages = self.interpreter.site_packages
        if self.keys.settings.inherit_runner_packages and site_packages:
            # after pip: pip would take these packages as installed already
            (purelib / RUNNER_PTH).write_text("".join(f"{p}\n" for p in site_packages))

    def _publish(self, sources: dict[str, str], duration_ms: int) -> None:
        """The marker, written last: from now on the environment is complete."""
        write_marker(
            self.env_dir,
            {
                "format": FORMAT,
                "key": self.key,
                "interpreter": self.interpreter.path,
                "python_version": self.interpreter.version.split()[0],
                "requirements": self.requirements,
                "sources": sources,
                "inherit_runner_packages": self.keys.settings.inherit_runner_packages,
                "created_at": datetime.now(UTC).isoformat(),
                "created_for": self.pack,
                "duration_ms": duration_ms,
            },
        )

    def _failed(self, exc: BaseException) -> None:
        """Removes what the build made, and logs why it failed."""
        remove_env(self.env_dir)
        message = exc.message if isinstance(exc, EnvironmentFailed) else str(exc)
        log.warning(
            Event.ENV_FAILED,
            **self.fields,
            error=message,
            duration_ms=round((time.monotonic() - self.started) * 1000),
        )
