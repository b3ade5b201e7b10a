"""The error tree in errors.py's docstring is the tree of classes, exit codes included."""

from __future__ import annotations

import importlib
import pkgutil
import re

import attuned
from attuned import errors
from attuned.errors import AttunedError

TREE_LINE = re.compile(r"^\s*[|+\- ]*(?P<name>[A-Z]\w+)\s+(?P<code>\d+)\s", re.MULTILINE)


def import_every_module() -> None:
    for info in pkgutil.walk_packages(attuned.__path__, "attuned."):
        if ".migrations" not in info.name and info.name != "attuned.__main__":
            importlib.import_module(info.name)


def subclasses(cls: type[AttunedError]) -> dict[str, tuple[str | None, int]]:
    found: dict[str, tuple[str | None, int]] = {}
    for sub in cls.__subclasses__():
        found[sub.__name__] = (cls.__name__, int(sub.exit_code))
        found.update(subclasses(sub))
    return found


def documented_tree() -> dict[str, tuple[str | None, int]]:
    """name -> (parent, exit code), from the indentation of the docstring's tree."""
    tree: dict[str, tuple[str | None, int]] = {}
    parents: list[tuple[int, str]] = []
    for match in TREE_LINE.finditer(errors.__doc__ or ""):
        depth = match.start("name") - match.start()
        while parents and parents[-1][0] >= depth:
            parents.pop()
        tree[match["name"]] = (parents[-1][1] if parents else None, int(match["code"]))
        parents.append((depth, match["name"]))
    return tree


def test_the_docstring_tree_is_the_class_tree_with_its_exit_codes() -> None:
    import_every_module()
    actual = {"AttunedError": (None, AttunedError.exit_code), **subclasses(AttunedError)}
    assert documented_tree() == actual
