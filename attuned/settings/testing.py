"""Operator-side executor settings (`testing:` in attuned.yaml): caps and resource limits."""

from __future__ import annotations

import os
import sys
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class ResourceLimits(BaseModel):
    """setrlimit values applied in each test process; None leaves the limit as inherited."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cpu_seconds: int | None = Field(default=600, gt=0)
    address_space_mb: int | None = Field(default=4096, gt=0)
    open_files: int | None = Field(default=1024, gt=0)
    processes: int | None = Field(default=512, gt=0)
    file_size_mb: int | None = Field(default=1024, gt=0)


class SandboxMode(StrEnum):
    """`auto`: bubblewrap when it works here, else none (with a warning); `bwrap`: required,
    a runner fails when it cannot be sandboxed; `none`: never."""

    AUTO = "auto"
    BWRAP = "bwrap"
    NONE = "none"


class RegressionPolicy(StrEnum):
    """What a case that passed in the serving version and fails in the candidate does:
    `block` refuses the upgrade (even above `min_pass_rate`), `warn` registers with a
    warning, `ignore` looks only at the pass rate."""

    BLOCK = "block"
    WARN = "warn"
    IGNORE = "ignore"


class HistorySettings(BaseModel):
    """The per-case test history: how much is kept, and what counts as flaky or slower."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    keep_runs: int = Field(
        default=50,
        ge=1,
        description="per-case results kept per pack (the serving version's always are)",
    )
    flaky_window: int = Field(
        default=5, ge=2, description="runs of one digest in which a changing case is flaky"
    )
    slower_percent: float = Field(
        default=50, ge=0, description="a case this much slower than its median is reported"
    )
    slower_ms: int = Field(default=100, ge=0, description="... and at least this many ms slower")


class ExecutorSettings(BaseModel):
    """How the executor runs untrusted pack tests on this host."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    python: str = Field(default=sys.executable, description="interpreter for unittest/pytest")
    default_timeout: float = Field(default=300, gt=0)
    timeout_cap: float = Field(default=3600, gt=0, description="no runner may ask for more")
    kill_grace: float = Field(default=5.0, ge=0, description="SIGTERM to SIGKILL, seconds")
    output_limit_kib: int = Field(default=64, gt=0, description="kept per stream, head+tail")
    parse_limit_mib: int = Field(
        default=16, gt=0, description="read per stream for parsing results, head+tail"
    )
    path: str = Field(
        default_factory=lambda: os.environ.get("PATH") or os.defpath,
        description="PATH given to test processes (default: the daemon's PATH)",
    )
    lang: str = Field(default="C.UTF-8", description="LANG given to test processes")
    staging_dir: Path | None = Field(
        default=None, description="where private pack copies are made (default: system temp)"
    )
    limits: ResourceLimits = Field(default_factory=ResourceLimits)
    sandbox: SandboxMode = Field(
        default=SandboxMode.AUTO, description="run each test process under bubblewrap"
    )
    hidden_paths: tuple[Path, ...] = Field(
        default=(), description="files and directories a sandboxed test must not see"
    )
    readable_paths: tuple[Path, ...] = Field(
        default=(),
        description="shown read-only to sandboxed tests although under /root, /home, /tmp ...",
    )
    regressions: RegressionPolicy = Field(
        default=RegressionPolicy.BLOCK,
        description="default for cases that passed in the serving version and fail now",
    )
    history: HistorySettings = Field(default_factory=HistorySettings)
    run_as: str | None = Field(
        default=None,
        description="user (name or uid) test processes run as, when the daemon runs as root",
    )
