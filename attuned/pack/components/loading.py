"""Every component of a pack, read in Attune's load order and checked as a whole.

After each file is read on its own, the pack as a whole is checked: the triggers and actions
rules and sensors name exist (or belong to a declared dependency), no ref is defined twice,
and a directory Attune would not read is said, not silently dropped.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from attuned.errors import Problem, ValidationFailed
from attuned.pack.components.models import (
    DIRECTORIES,
    SPECS,
    ActionSpec,
    Component,
    SensorSpec,
    Workflow,
    qualify,
)
from attuned.pack.components.references import references
from attuned.pack.components.workflow_files import WorkflowFiles
from attuned.pack.content import PackFile
from attuned.pack.manifest import PackManifest
from attuned.yamlfile import problems_from

WORKFLOW_DIRECTORIES = ("workflows", "actions/workflows")
# directories Attune reads that attuned does not register (yet): said, not silently dropped
NOT_REGISTERED = {"queues": "work queues"}
# directories that hold no components: tests, docs, code and the like
NOT_COMPONENTS = frozenset(
    {"tests", "test", "docs", "lib", "etc", "files", "templates", "icons", "bin", "scripts"}
)


class _Loader(WorkflowFiles):
    """One pack's components: each directory in Attune's order, then the pack as a whole."""

    # -- reading ----------------------------------------------------------------------------

    def load(self) -> tuple[list[Component], list[Problem]]:
        for kind, directory in DIRECTORIES.items():
            for path in _yaml_files(self.pack_dir / directory):
                self.load_one(path, kind)
        linked = {w.spec.file for w in self.components if isinstance(w.spec, Workflow)}
        for directory in WORKFLOW_DIRECTORIES:
            for path in _yaml_files(self.pack_dir / directory):
                if path.relative_to(self.pack_dir).as_posix() not in linked:
                    self.load_workflow(path)
        self.note_unread_directories()
        self.check_references()
        self.check_unique()
        if self.problems:
            raise ValidationFailed(self.problems)
        return self.components, self.warnings

    def load_one(self, path: Path, kind: str) -> None:
        data = self.read(path)
        if data is None:
            return
        missing_ref = "ref" not in data
        if missing_ref:
            self.problem(
                path,
                f"every {kind.replace('_', ' ')} file needs its full ref, e.g. "
                f"'{self.pack_ref}.{path.stem}' (Attune's loader skips files without one)",
            )
            data = {**data, "ref": f"{self.pack_ref}.{path.stem}"}  # to name the rest too
        try:
            spec = SPECS[kind].model_validate(data)
        except ValidationError as exc:
            self.problems.extend(problems_from(exc, path))
            return
        if missing_ref:
            return
        ref = qualify(self.pack_ref, spec.ref) if kind == "rule" else spec.ref
        if not self.check_ref(path, ref):
            return
        if isinstance(spec, ActionSpec | SensorSpec):
            self.check_entry_point(path, spec)
        self.components.append(Component(kind, ref, self.rel(path), spec, data))
        if isinstance(spec, ActionSpec) and spec.workflow_file:
            self.load_linked_workflow(path, ref, spec, data)

    # -- the pack as a whole ---------------------------------------------------------------

    def note_unread_directories(self) -> None:
        known = set(DIRECTORIES.values()) | {"workflows"} | NOT_COMPONENTS
        for directory in sorted(p for p in self.pack_dir.iterdir() if p.is_dir()):
            name = directory.name
            if name.startswith(".") or name in known or not _yaml_files(directory):
                continue
            what = NOT_REGISTERED.get(name)
            message = (
                f"{what} are not registered by attuned yet (Attune's loader would)"
                if what
                else "Attune reads no components from this directory; its files are kept "
                "with the pack but not registered"
            )
            self.warnings.append(Problem(directory, message))

    def own(self, kind: str) -> set[str]:
        refs = {c.ref for c in self.components if c.kind == kind}
        if kind == "action":  # standalone workflows bring an action of their own ref
            refs |= {
                c.ref
                for c in self.components
                if isinstance(c.spec, Workflow) and c.spec.action is None
            }
        return refs

    def check_references(self) -> None:
        """Rules and sensors name triggers and actions: the pack's own must exist, others
        must belong to a declared dependency (the database is asked at registration)."""
        allowed = {self.pack_ref} | {d.ref for d in self.manifest.dependencies}
        own = {"trigger": self.own("trigger"), "action": self.own("action")}
        for component in self.components:
            path = self.pack_dir / component.file
            for loc, kind, ref in references(component, self.pack_ref):
                namespace = ref.rpartition(".")[0]
                if namespace == self.pack_ref and ref not in own[kind]:
                    self.problem(path, f"{kind} {ref!r} is not defined in this pack", (loc,))
                elif namespace not in allowed:
                    self.problem(
                        path,
                        f"{ref!r} belongs to pack {namespace!r}, which is not a declared "
                        "dependency",
                        (loc,),
                    )

    def check_unique(self) -> None:
        seen: dict[tuple[str, str], str] = {}
        for component in self.components:
            for key in {(component.kind, component.ref)} | (
                {("action", component.ref)}
                if isinstance(component.spec, Workflow) and component.spec.action is None
                else set()
            ):
                if key in seen and seen[key] != component.file:
                    self.problem(
                        self.pack_dir / component.file,
                        f"{key[0]} {component.ref!r} is also defined in {seen[key]}",
                    )
                seen.setdefault(key, component.file)


def _yaml_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    # not only regular files: a FIFO or a directory named `x.yaml` is refused when read
    return sorted(
        p
        for p in directory.iterdir()
        if p.suffix in (".yaml", ".yml") and not p.name.startswith(".")
    )


def load_components(
    pack_dir: Path, manifest: PackManifest, files: list[PackFile] | None = None
) -> tuple[list[Component], list[Problem]]:
    """Every component of the pack in Attune's load order, and warnings; or ValidationFailed
    listing each bad file. `files`: the pack's files as `list_files` found them (no
    symlink among them), which spares a resolve() per entry point."""
    return _Loader(pack_dir, manifest, files).load()
