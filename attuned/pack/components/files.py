"""Reading one component file and the checks that concern it alone: its ref, its paths.

A path a component names (an entry point, a workflow file) must stay inside the pack; a
pack listed without symlinks is checked from the names alone, sparing a resolve() each.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from attuned.errors import Problem, ValidationFailed
from attuned.pack.components.models import ActionSpec, Component, SensorSpec, is_native
from attuned.pack.content import PackFile
from attuned.pack.manifest import PackManifest
from attuned.yamlfile import line_map, locate, read_yaml

_BINARY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_REF_PART = re.compile(r"^[^.\s]+$")


class ComponentFiles:
    """The state of reading one pack's components, and what reading one file needs: the
    problems found so far (each with its line), the file's data, its checked paths."""

    def __init__(
        self, pack_dir: Path, manifest: PackManifest, files: list[PackFile] | None = None
    ) -> None:
        self.pack_dir = pack_dir
        self.root = str(pack_dir)
        self.manifest = manifest
        self.pack_ref = manifest.ref
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []
        self.components: list[Component] = []
        # the pack's regular files, when listing found no symlink: a plain relative path
        # among them is inside the pack and a file, with no resolve() (an lstat per part)
        self.listed = None if files is None else frozenset(f.relpath for f in files)
        self._real_root: Path | None = None

    def problem(self, path: Path, message: str, loc: tuple[str | int, ...] = ()) -> None:
        line = locate(line_map(path), loc) if loc else None
        self.problems.append(
            Problem(path, message, line=line, field=".".join(map(str, loc)) if loc else None)
        )

    def read(self, path: Path) -> dict[str, Any] | None:
        try:
            data = read_yaml(path)
        except ValidationFailed as exc:
            self.problems.extend(exc.problems)
            return None
        if not isinstance(data, dict):
            kind = "empty" if data is None else f"a {type(data).__name__}"
            self.problem(path, f"expected a mapping at the top, found {kind}")
            return None
        return data

    def rel(self, path: Path) -> str:
        """`path` relative to the pack root (`path` may be resolved already)."""
        text = str(path)
        if text.startswith(self.root + "/"):
            return text[len(self.root) + 1 :]
        if path.is_relative_to(self.pack_dir):
            return path.relative_to(self.pack_dir).as_posix()
        return path.relative_to(self.pack_dir.resolve()).as_posix()

    # -- checks of one file -------------------------------------------------------------------

    def check_ref(self, path: Path, ref: str, loc: tuple[str, ...] = ("ref",)) -> bool:
        namespace, dot, name = ref.partition(".")
        if ref != ref.lower():
            self.problem(path, f"{ref!r} must be lower-case (Attune refuses it)", loc)
        elif not dot or "." in name or not _REF_PART.match(namespace) or not _REF_PART.match(name):
            self.problem(
                path, f"{ref!r} must be '<pack>.<name>' with exactly one dot, no spaces", loc
            )
        elif namespace != self.pack_ref:
            self.problem(
                path,
                f"{ref!r} is in the namespace of pack {namespace!r}, not {self.pack_ref!r}",
                loc,
            )
        else:
            return True
        return False

    def check_entry_point(self, path: Path, spec: ActionSpec | SensorSpec) -> None:
        """A native runner's entry point is a binary the platform provides: a bare name.
        Any other is a file of the pack, relative to the component's directory (Attune) or
        to the pack root."""
        entry_point = spec.entry_point
        if not entry_point or (isinstance(spec, ActionSpec) and spec.workflow_file):
            return
        if "\0" in entry_point:
            self.problem(path, "entry_point contains a NUL byte", ("entry_point",))
            return
        if is_native(spec.runner):
            if not _BINARY_NAME.match(entry_point):
                self.problem(
                    path,
                    f"{entry_point!r}: a {spec.runner} entry point names a binary the platform "
                    "provides (letters, digits, '.', '_', '+', '-'), not a path",
                    ("entry_point",),
                )
            return
        if self.listed_file(path.parent, entry_point):
            return
        found = self.inside_pack(path, path.parent, entry_point, ("entry_point",))
        if found is None:
            return
        for base in (path.parent, self.pack_dir):
            if (base / entry_point).resolve().is_file():
                return
        self.problem(path, f"{entry_point!r} does not exist in the pack", ("entry_point",))

    def listed_file(self, base: Path, relative: str) -> bool:
        """Whether `relative` (to `base`, else to the pack root) names one of the pack's
        listed files, judged from names alone. Only a plain path (no `.`, `..`, empty or
        absolute part) qualifies: with no symlink in the pack, it resolves to itself.
        False means "ask the file system", never "missing"."""
        if self.listed is None or relative.startswith("/"):
            return False
        if any(part in ("", ".", "..") for part in relative.split("/")):
            return False
        inner = str(base)
        if inner == self.root:
            return relative in self.listed
        if not inner.startswith(self.root + "/"):
            return False
        return f"{inner[len(self.root) + 1 :]}/{relative}" in self.listed or (
            relative in self.listed
        )

    def inside_pack(
        self, path: Path, base: Path, relative: str, loc: tuple[str, ...]
    ) -> Path | None:
        if self._real_root is None:
            self._real_root = self.pack_dir.resolve()
        root = self._real_root
        try:
            candidate = (base / relative).resolve()
        except (OSError, RuntimeError) as exc:  # a symlink loop, an unreadable directory
            self.problem(path, f"{relative!r} cannot be resolved: {exc}", loc)
            return None
        if not candidate.is_relative_to(root):
            self.problem(path, f"{relative!r} points outside the pack", loc)
            return None
        return candidate
