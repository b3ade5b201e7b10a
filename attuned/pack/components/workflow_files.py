"""Workflow files, linked from an action or standalone, read as Attune's registrar reads them.

A linked workflow that Attune's parser would refuse leaves its action broken, so it is a
problem; a standalone one Attune skips, with the rest of the pack registered, so it is a
warning.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from attuned.errors import Problem
from attuned.pack.components.files import ComponentFiles
from attuned.pack.components.models import ActionSpec, Component, Workflow, generate_label
from attuned.pack.workflows import WorkflowSpec, definition_of, task_problems
from attuned.yamlfile import line_map, locate, problems_from


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


class WorkflowFiles(ComponentFiles):
    """Reading component files, plus the workflow files they link or the pack holds."""

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
