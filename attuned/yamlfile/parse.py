"""Parse one YAML file into data, or into the node tree that knows its lines.

libyaml parses the whole text in C first, building nothing, so a syntax error anywhere is
refused before any node exists.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from attuned.errors import Problem, ValidationFailed
from attuned.yamlfile.limits import MAX_DEPTH, Refused
from attuned.yamlfile.loader import CParser, Loader
from attuned.yamlfile.text import read_text


def _parse_in_c(text: str) -> None:
    """Run libyaml's parser over the whole text, building no Python object (0.1 us an event,
    against 3 us a composed node): a syntax error or a bad character at the end of a big file
    is refused before any node is built. Its errors are the ones composing would raise."""
    if CParser is not None:
        CParser(text).raw_parse()


def _yaml_problem(path: Path, text: str, exc: yaml.YAMLError) -> Problem:
    line: int | None = None
    if isinstance(exc, yaml.MarkedYAMLError):
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        what = str(exc.problem or exc.context)
        message = what if isinstance(exc, Refused) else f"invalid YAML: {what}"
    elif isinstance(exc, yaml.reader.ReaderError):  # a character YAML does not allow
        if CParser is not None:  # libyaml counts UTF-8 bytes, the Python reader characters
            line = text.encode().count(b"\n", 0, exc.position) + 1
        else:  # pragma: no cover - depends on the PyYAML build
            line = text.count("\n", 0, exc.position) + 1
        message = f"invalid YAML: character {chr(exc.character)!r}: {exc.reason}"
    else:
        message = f"invalid YAML: {exc}"
    return Problem(path, " ".join(message.split()), line=line)  # one problem, one log line


def read_yaml(path: Path) -> Any:
    """Parse one YAML file; a syntax error or a refused construct is a Problem with its line."""
    text = read_text(path)
    try:
        _parse_in_c(text)
        return yaml.load(text, Loader=Loader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        raise ValidationFailed([_yaml_problem(path, text, exc)]) from None
    except RecursionError:  # pragma: no cover - only the pure-Python parser recurses this deep
        raise ValidationFailed(
            [Problem(path, f"nested more than {MAX_DEPTH} levels deep")]
        ) from None


def compose(path: Path) -> yaml.Node | None:
    """The checked node tree of `path` (line numbers), None when it cannot be had."""
    try:
        text = read_text(path)
        _parse_in_c(text)
    except (ValidationFailed, yaml.YAMLError):
        return None
    loader = Loader(text)
    try:
        return loader.get_single_node()  # type: ignore[no-any-return]
    except (yaml.YAMLError, RecursionError):
        return None
    finally:
        loader.dispose()
