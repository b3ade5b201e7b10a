"""Workflow files (`workflows/`, `actions/workflows/`, an action's `workflow_file`), checked
as Attune's workflow parser checks them and stored in the form Attune's executor reads.

Attune (crates/common/src/workflow/parser.rs) requires a `version` and at least one task;
each task needs a `name`, an action task an `action`, a parallel task its `tasks`, and every
transition must name a task that exists. Legacy transitions (`on_success`, `on_failure`,
`on_complete`, `on_timeout`, `decision`, task-level `publish`) are folded into `next`, as
Attune's `normalize_transitions` does before it stores a definition.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

_LEGACY = (
    ("on_success", "{{ succeeded() }}"),
    ("on_failure", "{{ failed() }}"),
    ("on_complete", None),
    ("on_timeout", "{{ timed_out() }}"),
)
TASK_TYPES = ("action", "parallel", "workflow")


class WorkflowSpec(BaseModel):
    """The top of a workflow file; tasks are checked by `task_problems`."""

    model_config = ConfigDict(extra="allow", frozen=True)

    ref: str | None = None
    label: str | None = None
    description: str | None = None
    version: str = Field(min_length=1, max_length=50)
    parameters: Any = None
    output: Any = None
    tasks: list[dict[str, Any]] = Field(min_length=1)
    tags: list[str] = Field(default_factory=list)

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            raise ValueError(f'{value!r} was read as a number; quote it (version: "{value}")')
        return value


def task_problems(tasks: list[dict[str, Any]], where: str = "tasks") -> list[tuple[str, str]]:
    """(field, message) for every task Attune's parser would refuse."""
    problems: list[tuple[str, str]] = []
    names = {t.get("name") for t in tasks if isinstance(t.get("name"), str)}
    for index, task in enumerate(tasks):
        at = f"{where}.{index}"
        name = task.get("name")
        if not isinstance(name, str) or not name.strip():
            problems.append((f"{at}.name", "every task needs a name"))
            continue
        kind = task.get("type", "action")
        if kind not in TASK_TYPES:
            problems.append((f"{at}.type", f"{kind!r} is not one of {', '.join(TASK_TYPES)}"))
            continue
        if kind == "action" and not task.get("action"):
            problems.append((f"{at}.action", f"task {name!r} of type action needs an action"))
        if kind == "parallel":
            sub = task.get("tasks")
            if not isinstance(sub, list) or not sub or not all(isinstance(s, dict) for s in sub):
                problems.append((f"{at}.tasks", f"parallel task {name!r} needs its tasks"))
            else:
                problems.extend(task_problems(sub, f"{at}.tasks"))
        wrong = [
            key
            for key, _ in _LEGACY
            if task.get(key) is not None and not isinstance(task[key], str)
        ]
        for key in wrong:  # Attune's parser reads one task name there
            problems.append(
                (f"{at}.{key}", "must be one task name; put conditional transitions in `next`")
            )
        if wrong:
            continue
        for target in _targets(task):
            if target not in names:
                problems.append((f"{at}", f"task {name!r} goes to {target!r}, which is no task"))
    return problems


def _targets(task: dict[str, Any]) -> list[str]:
    found: list[str] = []
    for transition in task.get("next") or []:
        if isinstance(transition, dict):
            found.extend(str(t) for t in transition.get("do") or [])
    found.extend(str(task[key]) for key, _ in _LEGACY if task.get(key))
    found.extend(str(b.get("next")) for b in task.get("decision") or [] if isinstance(b, dict))
    return found


def normalized(task: dict[str, Any]) -> dict[str, Any]:
    """One task with its legacy transitions folded into `next` (Attune's rules)."""
    task = dict(task)
    legacy = {key: task.pop(key, None) for key, _ in _LEGACY}
    decision = task.pop("decision", None) or []
    publish = task.pop("publish", None) or []
    if isinstance(task.get("tasks"), list):
        task["tasks"] = [normalized(t) for t in task["tasks"] if isinstance(t, dict)]
    if task.get("next"):
        return task
    transitions: list[dict[str, Any]] = []
    for key, when in _LEGACY:
        if legacy[key]:
            step: dict[str, Any] = {"do": [legacy[key]]}
            if when is not None:
                step = {"when": when, **step}
            transitions.append(step)
    for branch in decision:
        if isinstance(branch, dict):
            step = {"do": [branch.get("next")]}
            if branch.get("when") is not None:
                step = {"when": branch["when"], **step}
            transitions.append(step)
    if publish:
        succeeded = next((t for t in transitions if "succeeded()" in str(t.get("when", ""))), None)
        if succeeded is not None:
            succeeded["publish"] = publish
        elif transitions:
            transitions[0]["publish"] = publish
        else:
            transitions.append({"when": "{{ succeeded() }}", "publish": publish})
    if transitions:
        task["next"] = transitions
    return task


def definition_of(
    data: dict[str, Any], *, ref: str, label: str, description: str | None, tags: list[str]
) -> dict[str, Any]:
    """The `workflow_definition.definition` JSON: the file's graph, normalized, with the
    ref, label, description and tags the definition row gets."""
    definition = {**data, "ref": ref, "label": label, "tags": tags}
    definition["description"] = description
    definition["tasks"] = [normalized(t) for t in data.get("tasks", [])]
    return definition
