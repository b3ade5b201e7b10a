"""A pack's components (actions, sensors, triggers, rules, ...), loaded and checked.

Each component gets the ref `<pack>.<name>`. Kinds attuned knows get a model that checks what
matters for registration (an action's entry point exists, a rule's refs resolve); any other
component directory is kept as a generic component so nothing an author wrote is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from attuned.errors import Problem, ValidationFailed
from attuned.pack.manifest import PackManifest
from attuned.yamlfile import line_map, locate, problems_from, read_yaml

# directory name -> component kind, as Attune names them
KNOWN_KINDS: dict[str, str] = {
    "actions": "action",
    "sensors": "sensor",
    "triggers": "trigger",
    "rules": "rule",
    "workflows": "workflow",
    "policies": "policy",
    "permission_sets": "permission_set",
    "caches": "cache",
}
# directories that hold no components: tests, docs, and the like
NOT_COMPONENTS = frozenset({"tests", "test", "docs", "lib", "etc", "files", "templates", "icons"})


class _Definition(BaseModel):
    """Fields every component may carry; the rest is kept as written."""

    model_config = ConfigDict(extra="allow")

    name: str | None = None
    ref: str | None = None
    description: str | None = None
    enabled: bool = True

    @field_validator("name", "ref")
    @classmethod
    def _no_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be empty")
        return value


class ActionDefinition(_Definition):
    runner_type: str
    entry_point: str | None = None
    parameters: dict[str, Any] | None = None


class SensorDefinition(_Definition):
    entry_point: str
    class_name: str | None = None
    trigger_types: list[Any] | None = None


class TriggerDefinition(_Definition):
    parameters_schema: dict[str, Any] | None = None
    payload_schema: dict[str, Any] | None = None


class RuleDefinition(_Definition):
    trigger: dict[str, Any] | str
    action: dict[str, Any] | str
    criteria: dict[str, Any] | None = None


class WorkflowDefinition(_Definition):
    pass


_MODELS: dict[str, type[_Definition]] = {
    "action": ActionDefinition,
    "sensor": SensorDefinition,
    "trigger": TriggerDefinition,
    "rule": RuleDefinition,
}


@dataclass(frozen=True)
class Component:
    kind: str
    name: str
    ref: str
    file: str  # relative to the pack root
    definition: dict[str, Any] = field(default_factory=dict)


def _ref_of(rule_part: dict[str, Any] | str, key: str) -> str | None:
    if isinstance(rule_part, str):
        return rule_part
    value = rule_part.get(key) or rule_part.get("ref")
    return str(value) if value is not None else None


class _Loader:
    def __init__(self, pack_dir: Path, manifest: PackManifest) -> None:
        self.pack_dir = pack_dir
        self.manifest = manifest
        self.problems: list[Problem] = []
        self.components: list[Component] = []

    def problem(self, path: Path, message: str, loc: tuple[str, ...] = ()) -> None:
        line = locate(line_map(path), loc) if loc else None
        self.problems.append(
            Problem(path, message, line=line, field=".".join(loc) if loc else None)
        )

    def load(self) -> list[Component]:
        root = self.pack_dir
        for directory in sorted(p for p in root.iterdir() if p.is_dir()):
            if directory.name.startswith(".") or directory.name in NOT_COMPONENTS:
                continue
            kind = KNOWN_KINDS.get(directory.name)
            if kind is None and not any(directory.glob("*.yaml")):
                continue  # a helper directory, not a component directory
            for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
                self.load_one(path, kind or directory.name)
        self.check_rules()
        self.check_unique()
        if self.problems:
            raise ValidationFailed(self.problems)
        return self.components

    def load_one(self, path: Path, kind: str) -> None:
        try:
            data = read_yaml(path)
        except ValidationFailed as exc:
            self.problems.extend(exc.problems)
            return
        if not isinstance(data, dict):
            self.problem(path, "expected a mapping at the top")
            return
        model = _MODELS.get(kind, _Definition)
        try:
            definition = model.model_validate(data)
        except ValidationError as exc:
            self.problems.extend(problems_from(exc, path))
            return
        pack_ref = self.manifest.ref
        name = definition.name or path.stem
        if definition.ref:
            namespace, _, short = definition.ref.rpartition(".")
            if namespace and namespace != pack_ref:
                self.problem(
                    path,
                    f"{definition.ref!r} is in pack {namespace!r}'s namespace, not {pack_ref!r}",
                    ("ref",),
                )
                return
            name = short if namespace else definition.ref
        if "." in name:
            self.problem(path, f"component name {name!r} must not contain '.'", ("name",))
            return
        if isinstance(definition, ActionDefinition | SensorDefinition):
            self.check_entry_point(path, definition.entry_point)
        self.components.append(
            Component(
                kind=kind,
                name=name,
                ref=f"{pack_ref}.{name}",
                file=path.relative_to(self.pack_dir).as_posix(),
                definition=data,
            )
        )

    def check_entry_point(self, path: Path, entry_point: str | None) -> None:
        """An entry point is relative to the component's directory (Attune) or the pack root."""
        if not entry_point:
            return
        if "\0" in entry_point:
            self.problem(path, "entry_point contains a NUL byte", ("entry_point",))
            return
        root = self.pack_dir.resolve()
        for base in (path.parent, self.pack_dir):
            try:
                candidate = (base / entry_point).resolve()
            except (OSError, RuntimeError) as exc:  # a symlink loop, an unreadable directory
                self.problem(path, f"{entry_point!r} cannot be resolved: {exc}", ("entry_point",))
                return
            if not candidate.is_relative_to(root):
                self.problem(path, f"{entry_point!r} points outside the pack", ("entry_point",))
                return
            if candidate.is_file():
                return
        self.problem(path, f"{entry_point!r} does not exist in the pack", ("entry_point",))

    def check_rules(self) -> None:
        """A rule's trigger and action must be in this pack or a declared dependency."""
        own = {c.ref for c in self.components}
        allowed = {self.manifest.ref} | {d.ref for d in self.manifest.dependencies}
        for component in self.components:
            if component.kind != "rule":
                continue
            path = self.pack_dir / component.file
            trigger = component.definition.get("trigger", {})
            action = component.definition.get("action", {})
            for loc, ref in (
                ("trigger", _ref_of(trigger, "type")),
                ("action", _ref_of(action, "ref")),
            ):
                if not ref:
                    self.problem(path, "needs a ref", (loc,))
                    continue
                namespace = ref.rpartition(".")[0]
                if namespace == self.manifest.ref and ref not in own:
                    self.problem(path, f"{ref!r} is not defined in this pack", (loc,))
                elif namespace not in allowed:
                    why = (
                        f"{ref!r} belongs to pack {namespace!r}, which is not a declared dependency"
                    )
                    self.problem(path, why, (loc,))

    def check_unique(self) -> None:
        seen: dict[tuple[str, str], str] = {}
        for component in self.components:
            key = (component.kind, component.ref)
            if key in seen:
                self.problem(
                    self.pack_dir / component.file,
                    f"{component.kind} {component.ref!r} is also defined in {seen[key]}",
                )
            seen[key] = component.file


def load_components(pack_dir: Path, manifest: PackManifest) -> list[Component]:
    """Every component of the pack, or ValidationFailed listing each bad file."""
    return _Loader(pack_dir, manifest).load()


def external_refs(components: list[Component], pack_ref: str) -> set[str]:
    """Refs the pack's rules use from other packs (checked against the database at register)."""
    refs = set()
    for component in components:
        if component.kind != "rule":
            continue
        for part, key in (("trigger", "type"), ("action", "ref")):
            ref = _ref_of(component.definition.get(part, {}), key)
            if ref and ref.rpartition(".")[0] != pack_ref:
                refs.add(ref)
    return refs
