"""A pack's components, read as Attune's loader reads them and checked more strictly.

Attune's loader (crates/common/src/pack_registry/loader.rs) reads, in this order,
`permission_sets/`, `runtimes/`, `triggers/`, `actions/`, `rules/` and `sensors/` (the
`*.yaml`/`*.yml` files at the top of each), then workflows from `workflows/` and
`actions/workflows/`. Where Attune silently skips a file (no `ref`, a ref outside the pack,
a rule whose trigger or action is missing), attuned refuses it with a problem that names the
file, line and field: a pack registers completely or not at all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    ValidationError,
    field_validator,
)

from attuned.errors import Problem, ValidationFailed
from attuned.pack.content import PackFile
from attuned.pack.manifest import PackManifest
from attuned.pack.workflows import WorkflowSpec, definition_of, task_problems
from attuned.yamlfile import line_map, locate, problems_from, read_yaml

# kind -> directory, in Attune's load order; workflows come after them
DIRECTORIES: dict[str, str] = {
    "permission_set": "permission_sets",
    "runtime": "runtimes",
    "trigger": "triggers",
    "action": "actions",
    "rule": "rules",
    "sensor": "sensors",
}
WORKFLOW_DIRECTORIES = ("workflows", "actions/workflows")
KINDS = (*DIRECTORIES, "workflow")
# directories Attune reads that attuned does not register (yet): said, not silently dropped
NOT_REGISTERED = {"queues": "work queues"}
# directories that hold no components: tests, docs, code and the like
NOT_COMPONENTS = frozenset(
    {"tests", "test", "docs", "lib", "etc", "files", "templates", "icons", "bin", "scripts"}
)
NATIVE_RUNNERS = frozenset({"native", "builtin", "standalone"})
_BINARY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_REF_PART = re.compile(r"^[^.\s]+$")


class _Spec(BaseModel):
    """Fields every component file has; anything else is kept as written (Attune ignores
    keys it does not know)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    ref: str
    label: str | None = None
    description: str | None = None

    @field_validator("ref", mode="before")
    @classmethod
    def _ref_text(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            raise ValueError("must not be empty")
        return value.strip() if isinstance(value, str) else value


class PermissionSetSpec(_Spec):
    grants: list[Any] = Field(default_factory=list)


class RuntimeVersionSpec(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    version: str
    execution_config: dict[str, Any] = Field(default_factory=dict)
    distributions: dict[str, Any] = Field(default_factory=dict)
    is_default: bool = False
    meta: dict[str, Any] = Field(default_factory=dict)


class RuntimeSpec(_Spec):
    name: str | None = None
    aliases: list[str] = Field(default_factory=list)
    distributions: dict[str, Any] = Field(default_factory=dict)
    installation: Any = None
    execution_config: dict[str, Any] = Field(default_factory=dict)
    versions: list[RuntimeVersionSpec] | None = None


class TriggerSpec(_Spec):
    enabled: bool = True
    parameters: Any = None
    output: Any = None


Retention = Literal["versions", "days", "hours", "minutes"]


class _Placement(_Spec):
    """What actions and sensors share: where they run and how long their logs are kept."""

    runner_type: str | None = None
    entry_point: str | None = None
    parameters: Any = None
    runtime_version: str | None = None
    worker_selector: dict[str, Any] = Field(default_factory=dict)
    worker_tolerations: list[Any] = Field(default_factory=list)
    worker_affinity: dict[str, Any] = Field(default_factory=dict)
    log_retention_policy: Retention | None = None
    log_retention_limit: PositiveInt | None = None
    artifact_retention_policy: Retention | None = None
    artifact_retention_limit: PositiveInt | None = None


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


class ActionSpec(_Placement):
    workflow_file: str | None = None
    output: Any = None
    parameter_delivery: Literal["stdin", "file"] = "stdin"
    parameter_format: Literal["dotenv", "json", "yaml"] = "json"
    output_format: Literal["text", "json", "yaml", "jsonl"] = "text"
    required_worker_runtimes: dict[str, Any] = Field(default_factory=dict)
    accesses_mcp: bool = False
    default_execution_permission_set_refs: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)

    _case_blind = field_validator(
        "parameter_delivery", "parameter_format", "output_format", mode="before"
    )(_lower)

    @property
    def runner(self) -> str | None:
        """The runner that picks the action's runtime: none for a workflow action."""
        return None if self.workflow_file else (self.runner_type or "shell")


class RuleSpec(_Spec):
    trigger_ref: str
    action_ref: str
    enabled: bool = True
    conditions: Any = Field(default_factory=dict)
    action_params: Any = Field(default_factory=dict)
    trigger_params: Any = Field(default_factory=dict)
    permission_set_refs: str | list[str] | None = Field(
        default=None, validation_alias=AliasChoices("permission_set_refs", "permission_set_ref")
    )

    @field_validator("permission_set_refs", mode="after")
    @classmethod
    def _no_empty_refs(cls, value: str | list[str] | None) -> str | list[str] | None:
        refs = [value] if isinstance(value, str) else value or []
        if any(not r.strip() for r in refs):
            raise ValueError("permission set refs must not be empty")
        return value


class SensorSpec(_Placement):
    enabled: bool = True
    config: Any = Field(default_factory=dict)
    trigger_types: list[str] | None = None
    trigger_type: str | None = None

    @property
    def runner(self) -> str:
        return self.runner_type or "native"

    def triggers(self, pack_ref: str) -> list[str]:
        """The triggers it fires, qualified (a bare name is one of the pack's own)."""
        names = self.trigger_types if self.trigger_types is not None else []
        if self.trigger_types is None and self.trigger_type:
            names = [self.trigger_type]
        return [qualify(pack_ref, n) for n in names]


_SPECS: dict[str, type[_Spec]] = {
    "permission_set": PermissionSetSpec,
    "runtime": RuntimeSpec,
    "trigger": TriggerSpec,
    "action": ActionSpec,
    "rule": RuleSpec,
    "sensor": SensorSpec,
}


@dataclass(frozen=True)
class Workflow:
    """A workflow definition row to be: from an action's `workflow_file` (`action` names
    it) or a standalone file (then a companion action of the same ref is made, as Attune's
    workflow registrar does)."""

    ref: str
    label: str
    description: str | None
    version: str
    parameters: Any
    output: Any
    tags: list[str]
    definition: dict[str, Any]
    file: str  # relative to the pack root
    action: str | None = None  # the action that links it; None: standalone
    entrypoint: str = ""  # the companion action's entrypoint (standalone only)


@dataclass(frozen=True)
class Component:
    kind: str
    ref: str
    file: str  # relative to the pack root
    spec: Any  # the kind's validated model (`_SPECS`), or a Workflow
    definition: dict[str, Any] = field(default_factory=dict)  # the file as written

    @property
    def name(self) -> str:
        return self.ref.rpartition(".")[2]


def standalone_workflow(
    ref: str, name: str, file: str, spec: WorkflowSpec, data: dict[str, Any]
) -> Workflow:
    """A workflow file no action links, as Attune's registrar makes it: labelled with its
    file name unless it says otherwise, with a companion action of its ref."""
    label = spec.label or name
    return Workflow(
        ref=ref,
        label=label,
        description=spec.description,
        version=spec.version,
        parameters=spec.parameters,
        output=spec.output,
        tags=list(spec.tags),
        definition=definition_of(
            data, ref=ref, label=label, description=spec.description, tags=spec.tags
        ),
        file=file,
        entrypoint=f"workflows/{name}.workflow.yaml",
    )


def qualify(pack_ref: str, ref: str) -> str:
    """Attune's rule for rule and sensor references: a bare name is the pack's own."""
    return ref if "." in ref else f"{pack_ref}.{ref}"


def generate_label(name: str) -> str:
    """Attune's label for a component without one: `http_request` -> `Http Request`."""
    return " ".join(word[:1].upper() + word[1:] for word in name.split("_"))


def is_native(runner: str | None) -> bool:
    return (runner or "").lower() in NATIVE_RUNNERS


class _Loader:
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
            spec = _SPECS[kind].model_validate(data)
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

    # -- workflows --------------------------------------------------------------------------

    def load_linked_workflow(
        self, path: Path, action_ref: str, spec: ActionSpec, data: dict[str, Any]
    ) -> None:
        """`workflow_file` is relative to `actions/`; the action's fields win (Attune)."""
        assert spec.workflow_file is not None
        target = self.inside_pack(path, path.parent, spec.workflow_file, ("workflow_file",))
        if target is None:
            return
        if not target.is_file():
            self.problem(
                path, f"{spec.workflow_file!r} does not exist in the pack", ("workflow_file",)
            )
            return
        workflow, problems = self.read_workflow(target)
        self.problems.extend(problems)  # the action would be registered broken: refuse
        if workflow is None:
            return
        wf_spec, wf_data = workflow
        ref = wf_spec.ref or action_ref
        label = wf_spec.label or spec.label or generate_label(action_ref.rpartition(".")[2])
        description = (
            wf_spec.description if wf_spec.description is not None else spec.description or ""
        )
        tags = wf_spec.tags or list(spec.tags)
        if not self.check_ref(target, ref):
            return
        self.components.append(
            Component(
                "workflow",
                ref,
                self.rel(target),
                Workflow(
                    ref=ref,
                    label=label,
                    description=description,
                    version=wf_spec.version,
                    parameters=data.get("parameters", wf_spec.parameters),
                    output=data.get("output", wf_spec.output),
                    tags=tags,
                    definition=definition_of(
                        wf_data, ref=ref, label=label, description=description, tags=tags
                    ),
                    file=self.rel(target),
                    action=action_ref,
                ),
                wf_data,
            )
        )

    def load_workflow(self, path: Path) -> None:
        """A standalone workflow: its ref defaults to `<pack>.<file name>` (without a
        `.workflow` suffix), its label to the file name (Attune's registrar)."""
        workflow, problems = self.read_workflow(path)
        # Attune's workflow sync skips a standalone file its parser refuses and registers
        # the rest of the pack (even its own core pack has one): warn, as loudly as a problem
        self.warnings.extend(
            Problem(
                p.file, f"not registered (Attune's parser refuses it): {p.message}", p.line, p.field
            )
            for p in problems
        )
        if workflow is None:
            return
        spec, data = workflow
        name = path.stem.removesuffix(".workflow")
        ref = spec.ref or f"{self.pack_ref}.{name}"
        if not self.check_ref(path, ref):
            return
        made = standalone_workflow(ref, name, self.rel(path), spec, data)
        self.components.append(Component("workflow", ref, made.file, made, data))

    def read_workflow(
        self, path: Path
    ) -> tuple[tuple[WorkflowSpec, dict[str, Any]] | None, list[Problem]]:
        """The workflow, or None and why Attune's parser would refuse it."""
        before = len(self.problems)
        data = self.read(path)
        problems = self.problems[before:]
        del self.problems[before:]
        if data is None:
            return None, problems
        try:
            spec = WorkflowSpec.model_validate(data)
        except ValidationError as exc:
            return None, problems_from(exc, path)
        lines = line_map(path)
        for where, message in task_problems(spec.tasks):
            loc = tuple(int(part) if part.isdigit() else part for part in where.split("."))
            problems.append(Problem(path, message, locate(lines, loc), ".".join(map(str, loc))))
        return (None if problems else (spec, data)), problems

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


def references(component: Component, pack_ref: str) -> list[tuple[str, str, str]]:
    """(field, kind, qualified ref) of every trigger and action a rule or sensor names."""
    spec = component.spec
    if isinstance(spec, RuleSpec):
        return [
            ("trigger_ref", "trigger", qualify(pack_ref, spec.trigger_ref)),
            ("action_ref", "action", qualify(pack_ref, spec.action_ref)),
        ]
    if isinstance(spec, SensorSpec):
        field_name = "trigger_types" if spec.trigger_types is not None else "trigger_type"
        return [(field_name, "trigger", ref) for ref in spec.triggers(pack_ref)]
    return []


def external_refs(components: list[Component], pack_ref: str) -> dict[str, set[str]]:
    """Triggers and actions of other packs that rules and sensors use, by kind (checked
    against Attune's tables at registration)."""
    refs: dict[str, set[str]] = {"trigger": set(), "action": set()}
    for component in components:
        for _field, kind, ref in references(component, pack_ref):
            if ref.rpartition(".")[0] != pack_ref:
                refs[kind].add(ref)
    return refs
