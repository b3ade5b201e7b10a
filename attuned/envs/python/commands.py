"""How each command of a build runs: pip runs the build code of source distributions, which
packs choose, so every command gets a scrubbed environment, its own process session, the
build's one deadline, and bubblewrap (with network) when tests are sandboxed. What the commands
print is kept, redacted, for the error a failed build reports."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from attuned.envs.python.keys import Interpreter
from attuned.envs.python.layout import PIP_CACHE
from attuned.errors import EnvironmentFailed
from attuned.settings.envs import EnvironmentSettings, redact_url
from attuned.settings.testing import ExecutorSettings

if TYPE_CHECKING:  # what builds an environment is imported by the first build (BuildCommands)
    from attuned.testing.process import ProcessOutcome

_KIB = 1024
# what pip needs from the daemon's environment to reach an index: proxies and CA bundles
PASSED_THROUGH = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "PIP_CERT",
)


@dataclass
class BuildLog:
    """What the build's commands printed, redacted, one header per command."""

    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)

    def add(self, command: str, outcome: ProcessOutcome | None, limit: int) -> None:
        self.stdout.append(f"$ {command}\n")
        if outcome is not None:
            self.stdout.append(redact_url(outcome.stdout.text(limit)))
            err = redact_url(outcome.stderr.text(limit))
            if err:
                self.stderr.append(f"$ {command}\n{err}")

    def note(self, text: str) -> None:
        self.stdout.append(f"# {text}\n")

    def failure(self, message: str, outcome: ProcessOutcome | None = None) -> EnvironmentFailed:
        from attuned.testing.process import Ending

        return EnvironmentFailed(
            message,
            stdout="".join(self.stdout),
            stderr="".join(self.stderr),
            build_exit_code=outcome.returncode if outcome else None,
            cancelled=outcome is not None and outcome.ending is Ending.CANCELLED,
        )


@dataclass(frozen=True)
class BuildPlace:
    """Where one build happens and with which settings: what its commands need to know."""

    root: Path  # the environments root (pip's cache is under it)
    settings: EnvironmentSettings
    testing: ExecutorSettings
    hidden_paths: tuple[Path, ...]
    interpreter: Interpreter
    build: Path  # the build's private directory: HOME, TMPDIR, requirements
    env_dir: Path


class BuildCommands:
    """Runs the build's commands: one deadline for all of them, sandboxed like the tests
    (with network), in a scrubbed environment, each in its own session."""

    def __init__(
        self,
        place: BuildPlace,
        started: float,
        build_log: BuildLog,
        cancel: threading.Event | None,
    ) -> None:
        self.place = place
        self.deadline = started + place.settings.create_timeout
        self.log = build_log
        self.cancel = cancel
        self.limit = place.testing.output_limit_kib * _KIB
        from attuned.testing.sandbox import launch_for

        launch = launch_for(place.testing.model_copy(update={"run_as": None}))
        if isinstance(launch, str):
            raise build_log.failure(launch)
        self.sandboxed = launch.sandboxed

    def environment(self) -> dict[str, str]:
        place = self.place
        env = {name: os.environ[name] for name in PASSED_THROUGH if name in os.environ}
        env |= {
            "PATH": os.pathsep.join((str(place.env_dir / "bin"), place.testing.path)),
            "HOME": str(place.build / "home"),
            "TMPDIR": str(place.build / "tmp"),
            "LANG": place.testing.lang,
            "PIP_CONFIG_FILE": os.devnull,  # the host's pip.conf would change what is built
            "PIP_CACHE_DIR": str(place.root / PIP_CACHE),
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "PIP_NO_INPUT": "1",
            "PYTHONNOUSERSITE": "1",
        }
        return env | place.settings.pip_sources()

    def argv(self, argv: list[str]) -> list[str]:
        if not self.sandboxed:
            return argv
        from attuned.testing.sandbox import bwrap_argv, readable_roots

        place = self.place
        readable = readable_roots(place.testing, place.interpreter.path)
        readable += place.settings.local_sources()
        resolv = Path("/etc/resolv.conf").resolve()  # often a link into /run (private)
        readable.append(resolv.parent)
        return bwrap_argv(
            argv,
            cwd=place.build,
            writable=(place.env_dir, place.build, place.root / PIP_CACHE),
            hidden=place.hidden_paths,
            readable=readable,
            network=True,
        )

    def run(self, name: str, argv: list[str]) -> None:
        from attuned.testing.executor import unwrap_sandbox
        from attuned.testing.process import run_process

        remaining = self.deadline - time.monotonic()
        timeout_text = (
            f"{name} timed out: creating the environment took longer than "
            f"{self.place.settings.create_timeout:g} s (environments.create_timeout)"
        )
        if remaining <= 0:
            self.log.add(" ".join(argv), None, self.limit)
            raise self.log.failure(timeout_text)
        outcome = run_process(
            self.argv(argv),
            cwd=self.place.build,
            env=self.environment(),
            timeout=remaining,
            kill_grace=self.place.testing.kill_grace,
            capture_limit=self.limit,
            cancel=self.cancel,
            spare_leader_from_term=self.sandboxed,
        )
        if self.sandboxed:
            outcome = unwrap_sandbox(outcome)
        self.log.add(" ".join(argv), outcome, self.limit)
        self._check(name, argv, outcome, timeout_text)

    def _check(
        self, name: str, argv: list[str], outcome: ProcessOutcome, timeout_text: str
    ) -> None:
        """Raises the failure (with the log so far) unless the command ran to exit code 0."""
        from attuned.testing.process import Ending
        from attuned.testing.suites import describe_signal

        if outcome.ending is Ending.TIMED_OUT:
            raise self.log.failure(timeout_text, outcome)
        if outcome.ending is Ending.CANCELLED:
            raise self.log.failure(f"{name} was cancelled before it finished", outcome)
        if outcome.ending is Ending.NOT_STARTED:
            raise self.log.failure(f"could not start {argv[0]}: {outcome.start_error}", outcome)
        if outcome.signal is not None:
            raise self.log.failure(
                f"{name} was killed by signal {describe_signal(outcome.signal)}", outcome
            )
        if outcome.returncode != 0:
            why = _last_error(outcome)
            label = "pip" if name.startswith("pip") else name
            raise self.log.failure(
                f"{label} exited {outcome.returncode}" + (f": {why}" if why else ""), outcome
            )


def _last_error(outcome: ProcessOutcome) -> str:
    """The line that says what went wrong: pip's last `ERROR:` line, else the last line."""
    for text in (outcome.stderr.text(), outcome.stdout.text()):
        lines = [line.strip() for line in redact_url(text).splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("ERROR:")]
        if errors or lines:
            line = (errors or lines)[-1]
            return line if len(line) <= 300 else line[:297] + "..."
    return ""
