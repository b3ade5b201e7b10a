"""Load YAML into pydantic models with errors that name the file, line and field.

The fast C loader builds the data; the (slower) node tree that knows line numbers is
composed only when there is an error to place.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from attuned.errors import Problem, ValidationFailed

try:  # the C loader is ~10x faster; fall back where libyaml is missing
    _Loader: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
except AttributeError:  # pragma: no cover - depends on the PyYAML build
    _Loader = yaml.SafeLoader

ModelT = TypeVar("ModelT", bound=BaseModel)
Loc = tuple[str | int, ...]


def read_yaml(path: Path) -> Any:
    """Parse one YAML file; a syntax error becomes a Problem with its line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValidationFailed([Problem(path, "file not found")]) from None
    except UnicodeDecodeError as exc:
        raise ValidationFailed([Problem(path, f"not UTF-8 text ({exc.reason})")]) from None
    except OSError as exc:
        raise ValidationFailed([Problem(path, f"cannot read: {exc.strerror}")]) from None
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a safe loader
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        raise ValidationFailed(
            [Problem(path, f"invalid YAML: {exc.problem or exc.context}", line=line)]
        ) from None
    except yaml.YAMLError as exc:
        raise ValidationFailed([Problem(path, f"invalid YAML: {exc}")]) from None


def line_map(path: Path) -> dict[Loc, int]:
    """Map each key path in the document to the 1-based line where its value starts."""
    try:
        root = yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return {}
    lines: dict[Loc, int] = {}

    def walk(node: yaml.Node, loc: Loc) -> None:
        lines[loc] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                child = (*loc, str(key.value))
                # point at the key: that is where an editor takes the reader
                lines[child] = key.start_mark.line + 1
                walk_children(value, child)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                walk(item, (*loc, index))

    def walk_children(node: yaml.Node, loc: Loc) -> None:
        keep = lines[loc]
        walk(node, loc)
        lines[loc] = keep

    if root is not None:
        walk(root, ())
    return lines


def locate(lines: dict[Loc, int], loc: Sequence[str | int]) -> int | None:
    """The line of the deepest known prefix of `loc` (a missing key points at its parent)."""
    probe: Loc = tuple(loc)
    while probe:
        if probe in lines:
            return lines[probe]
        probe = probe[:-1]
    return lines.get(())


def field_name(loc: Sequence[str | int]) -> str:
    """Render a pydantic location the way a YAML author thinks of it: `runners.shell.type`."""
    parts: list[str] = []
    for part in loc:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        elif parts:
            parts.append(f".{part}")
        else:
            parts.append(str(part))
    return "".join(parts)


def problems_from(exc: PydanticValidationError, path: Path, prefix: Loc = ()) -> list[Problem]:
    """Turn a pydantic error into Problems with lines looked up in `path`."""
    lines = line_map(path)
    problems = []
    for err in exc.errors(include_url=False):
        # drop pydantic's internal location parts (union tags, function validators)
        loc = tuple(
            p
            for p in err["loc"]
            if not (isinstance(p, str) and ("[" in p or p.startswith("function-")))
        )
        full = (*prefix, *loc)
        message = err["msg"]
        if message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        if err["type"] == "missing":
            message = "required field is missing"
        elif err["type"] == "extra_forbidden":
            message = "unknown field"
        problems.append(
            Problem(path, message, line=locate(lines, full), field=field_name(full) or None)
        )
    return problems


def load_model(path: Path, model: type[ModelT], data: Any = None) -> ModelT:
    """Validate the YAML file (or already parsed `data` from it) as `model`."""
    if data is None:
        data = read_yaml(path)
    if not isinstance(data, dict):
        kind = "empty" if data is None else f"a {type(data).__name__}"
        raise ValidationFailed([Problem(path, f"expected a mapping at the top, found {kind}", 1)])
    try:
        return model.model_validate(data)
    except PydanticValidationError as exc:
        raise ValidationFailed(problems_from(exc, path)) from None
