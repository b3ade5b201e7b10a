"""Validate a YAML file as a pydantic model, with errors that name the file, line and field."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from attuned.errors import Problem, ValidationFailed
from attuned.yamlfile.lines import Loc, field_name, line_map, locate
from attuned.yamlfile.parse import read_yaml

ModelT = TypeVar("ModelT", bound=BaseModel)


def _without_tags(lines: dict[Loc, int], loc: Loc) -> Loc:
    """Drop the tag a discriminated union puts in a location (`notify[0].webhook.url`):
    right after a list index, a part the file does not have where it has the one after."""
    kept: list[str | int] = []
    for index, part in enumerate(loc):
        following = loc[index + 1] if index + 1 < len(loc) else None
        if (
            isinstance(part, str)
            and kept
            and isinstance(kept[-1], int)
            and following is not None
            and (*kept, part) not in lines
            and (*kept, following) in lines
        ):
            continue
        kept.append(part)
    return tuple(kept)


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
        full = _without_tags(lines, (*prefix, *loc))
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
