"""The Python dependencies a pack declares: `meta.python_dependencies` in pack.yaml and the
lines of `requirements.txt`, checked at load and normalized into one sorted list.

A pack lists requirement specifiers only. Options (`-r`, `-e`, `--index-url`, `-f` ...) are
refused: where packages come from is the operator's decision (`environments:` in
attuned.yaml), and a pack must not redirect it. Local paths are refused too: the same line
would mean different content in different packs, so environments could not be shared.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from attuned.errors import Problem, ValidationFailed
from attuned.yamlfile import kept, line_map, locate, read_yaml

REQUIREMENTS_NAME = "requirements.txt"
MANIFEST_NAME = "pack.yaml"  # as attuned.pack.manifest.MANIFEST_NAME (no import: no cycle)
MAX_REQUIREMENTS_BYTES = 256 * 1024
META_FIELD = "meta.python_dependencies"
# a `#` at the start or after whitespace starts a comment (pip's rule: `url#egg=` is no comment)
_COMMENT = re.compile(r"(^|\s+)#.*$")
_LOCAL = re.compile(r"^(\.{1,2}/|/|~|file:)|\s@\s*file:", re.IGNORECASE)
_ALLOWED_OPTION = "--hash"  # per-requirement hash checking does not redirect anything


def _check(spec: str) -> tuple[str | None, str | None]:
    """(normalized requirement, None) or (None, why it is refused)."""
    tokens = spec.split()
    if not tokens:
        return None, "empty requirement"
    if tokens[0].startswith("-"):
        option = tokens[0].split("=", 1)[0]
        return None, (
            f"pip option {option!r} is not allowed: list requirement specifiers only; "
            "indexes and find-links are configured by the operator (environments: in "
            "attuned.yaml)"
        )
    # pip's rule: the requirement ends at the first token that starts with "-"
    cut = next((i for i, t in enumerate(tokens) if t.startswith("-")), len(tokens))
    requirement, options = " ".join(tokens[:cut]), tokens[cut:]
    if _LOCAL.search(requirement):
        return None, (
            f"{requirement!r} is a local path: build a wheel and ask the operator to add "
            "its directory to environments.find_links"
        )
    i = 0
    while i < len(options):
        option = options[i].split("=", 1)[0]
        if option != _ALLOWED_OPTION:
            return None, f"pip option {option!r} is not allowed after a requirement (only --hash)"
        if "=" not in options[i]:
            i += 1  # `--hash sha256:...`
        i += 1
    return " ".join(tokens), None


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, text) with comments stripped and `\\` continuations joined."""
    lines: list[tuple[int, str]] = []
    pending: str | None = None
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = _COMMENT.sub("", raw)
        if pending is None:
            start = number
        joined = line if pending is None else f"{pending} {line.strip()}"
        if joined.endswith("\\"):
            pending = joined[:-1]
            continue
        pending = None
        if joined.strip():
            lines.append((start, joined.strip()))
    if pending is not None and pending.strip():
        lines.append((start, pending.strip()))
    return lines


def _read_requirements_file(path: Path) -> tuple[str | None, list[Problem]]:
    """The file's text (None when there is no such file); problems for what cannot be read."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None, []
    except OSError as exc:
        return None, [Problem(path, f"cannot read: {exc.strerror}")]
    if not stat.S_ISREG(info.st_mode):
        return None, [Problem(path, "not a regular file")]
    if info.st_size > MAX_REQUIREMENTS_BYTES:
        return None, [
            Problem(path, f"{info.st_size} bytes, more than the {MAX_REQUIREMENTS_BYTES} allowed")
        ]
    try:
        data = path.read_bytes()[: MAX_REQUIREMENTS_BYTES + 1]
    except OSError as exc:
        return None, [Problem(path, f"cannot read: {exc.strerror}")]
    kept(path, data)
    try:
        return data.decode("utf-8"), []
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return None, [Problem(path, "not UTF-8 text", line)]


def _from_meta(manifest_path: Path, meta: Mapping[str, Any]) -> tuple[list[str], list[Problem]]:
    deps = meta.get("python_dependencies")
    if deps is None:
        return [], []
    found: list[str] = []
    refused: list[tuple[tuple[str | int, ...], str]] = []
    if not isinstance(deps, list):
        refused.append((("meta", "python_dependencies"), "must be a list of pip requirements"))
    else:
        for index, item in enumerate(deps):
            where: tuple[str | int, ...] = ("meta", "python_dependencies", index)
            if not isinstance(item, str):
                refused.append((where, f"{item!r} is not a string (a pip requirement)"))
                continue
            requirement, why = _check(item)
            if why is not None:
                refused.append((where, why))
            elif requirement is not None:
                found.append(requirement)
    problems: list[Problem] = []
    if refused:
        lines = line_map(manifest_path)
        for where, why in refused:
            field = META_FIELD + "".join(f"[{p}]" for p in where[2:])
            problems.append(Problem(manifest_path, why, locate(lines, where), field))
    return found, problems


def _from_file(path: Path) -> tuple[list[str], list[Problem]]:
    text, problems = _read_requirements_file(path)
    if text is None:
        return [], problems
    found: list[str] = []
    for number, line in _logical_lines(text):
        requirement, why = _check(line)
        if why is not None:
            problems.append(Problem(path, why, number))
        elif requirement is not None:
            found.append(requirement)
    return found, problems


def normalize(requirements: list[str]) -> list[str]:
    """Sorted, without duplicates, whitespace collapsed: the same set, the same list."""
    return sorted({" ".join(r.split()) for r in requirements if r.strip()})


def _collect(pack_dir: Path, meta: Mapping[str, Any]) -> tuple[list[str], list[Problem]]:
    from_meta, problems = _from_meta(pack_dir / MANIFEST_NAME, meta)
    from_file, more = _from_file(pack_dir / REQUIREMENTS_NAME)
    return normalize(from_meta + from_file), problems + more


def requirement_problems(pack_dir: Path, meta: Mapping[str, Any]) -> list[Problem]:
    """What is wrong with the pack's declared Python dependencies (for validation)."""
    return _collect(pack_dir, meta)[1]


def declared_requirements(pack_dir: Path, meta: Mapping[str, Any]) -> list[str]:
    """The pack's Python requirements, normalized; ValidationFailed naming file and line."""
    requirements, problems = _collect(pack_dir, meta)
    if problems:
        raise ValidationFailed(problems)
    return requirements


def stored_requirements(pack_dir: Path) -> list[str] | None:
    """The requirements of a pack already in the store or a snapshot (read without the rest
    of the validation, for garbage collection); None when they cannot be read."""
    try:
        data = read_yaml(pack_dir / MANIFEST_NAME)
    except ValidationFailed:
        return None
    meta = data.get("meta") if isinstance(data, dict) else None
    try:
        return declared_requirements(pack_dir, meta if isinstance(meta, dict) else {})
    except ValidationFailed:
        return None
