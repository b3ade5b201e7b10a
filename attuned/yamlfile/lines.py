"""Where a key path of a YAML document is written, and how to name it to its author.

The node tree that knows line numbers is composed only when there is an error to place.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import yaml

from attuned.yamlfile.parse import compose

Loc = tuple[str | int, ...]


def line_map(path: Path) -> dict[Loc, int]:
    """Map each key path in the document to the 1-based line where its value starts."""
    root = compose(path)
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
        elif not part.isprintable():  # a key with a newline must not forge a log line
            parts.append(f"[{part!r}]")
        elif parts:
            parts.append(f".{part}")
        else:
            parts.append(str(part))
    return "".join(parts)
