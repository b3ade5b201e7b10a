"""The daemon's status file read fast: `attuned status` runs every few seconds under
monitoring, and `attuned show` reads it too. The file is read as plain JSON when its shape
is this version's (the daemon wrote it so). pydantic (60 ms) is imported only for a file whose
shape is not (an older or newer daemon's, a damaged one): its models fill the defaults, or
say what is wrong.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from attuned.errors import AttunedError

# the fields of each object in the status file, in the order attuned.report.status's models
# declare (and write) them; a test holds this to the models
SHAPE: dict[str, tuple[str, ...]] = {
    "status": (
        "daemon",
        "updated_at",
        "last_reconcile",
        "sources",
        "packs",
        "conflicts",
        "notify",
    ),
    "daemon": (
        "version",
        "pid",
        "started_at",
        "phase",
        "config_file",
        "error",
        "next_retry_at",
        "config_reload_failed",
        "role",
        "node",
        "leader",
    ),
    "last_reconcile": ("started_at", "finished_at", "duration_ms", "trigger", "counts"),
    "source": (
        "name",
        "type",
        "location",
        "readable",
        "last_scan",
        "candidates",
        "revision",
        "error",
        "error_since",
        "invalid",
    ),
    "pack": (
        "state",
        "version",
        "digest",
        "source",
        "active_since",
        "desired_version",
        "reason",
        "last_test",
        "last_error",
        "last_error_at",
    ),
    "last_test": (
        "status",
        "passed",
        "total",
        "at",
        "version",
        "regressions",
        "reason",
        "failed_cases",
    ),
    "sink": (
        "name",
        "type",
        "target",
        "dispatching",
        "pending",
        "delivered",
        "dead",
        "last_error",
        "last_error_at",
        "last_delivered_at",
        "problem",
    ),
}


def read(path: Path) -> dict[str, Any]:
    """The status file as attuned.report.status.Status.model_dump(mode="json") gives it: the
    parsed JSON itself when its shape is this version's (the daemon wrote it so), else
    through the model."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise AttunedError(f"cannot read the status file {path}: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    return data if _current(data) else through_model(path, text)


def through_model(path: Path, text: str) -> dict[str, Any]:
    """The status file as attuned.report.status's models read it: what this version's shape
    lacks filled with defaults, or an error naming the first fields that are wrong."""
    from pydantic import ValidationError

    from attuned.report.status import Status

    try:
        return Status.model_validate_json(text).model_dump(mode="json")
    except ValidationError as exc:  # one line: the first few fields that are wrong
        problems = exc.errors(include_url=False)
        why = "; ".join(
            ".".join(map(str, e["loc"])) + f": {e['msg']}" if e["loc"] else e["msg"]
            for e in problems[:3]
        ) + (f" (and {len(problems) - 3} more)" if len(problems) > 3 else "")
        raise AttunedError(f"{path} is not a status file: {why}") from None


def _current(data: Any) -> bool:
    """Whether every object in `data` has exactly the fields SHAPE gives it, in its order."""

    def fits(value: Any, kind: str) -> bool:
        return isinstance(value, dict) and tuple(value) == SHAPE[kind]

    def each(values: Any, kind: str) -> bool:
        return isinstance(values, list) and all(fits(v, kind) for v in values)

    if not fits(data, "status") or not fits(data["daemon"], "daemon"):
        return False
    if data["last_reconcile"] is not None and not fits(data["last_reconcile"], "last_reconcile"):
        return False
    packs = data["packs"]
    if not isinstance(packs, dict) or not all(fits(p, "pack") for p in packs.values()):
        return False
    tests = [p["last_test"] for p in packs.values() if p["last_test"] is not None]
    return (
        each(tests, "last_test")
        and each(data["sources"], "source")
        and each(data["notify"], "sink")
    )
