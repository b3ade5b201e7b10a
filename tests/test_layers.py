"""The package's shape stays the one docs/architecture.md draws: imports only go downwards,
no module outgrows one screenful of jobs, no function outgrows one reading.

The walk is over the source (ast), so an import inside a function or under TYPE_CHECKING counts
as much as one at the top: a lazy import is still a dependency."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import REPO

PACKAGE = REPO / "attuned"

# bottom to top: a module may import its own part and the parts below it, never one above
LAYERS = (
    "attuned",  # attuned/__init__.py: the version
    "errors",
    "durations",
    "faults",
    "yamlfile",
    "results",
    "pack",
    "settings",
    "report",
    "systemd",
    "testing",
    "envs",
    "config",
    "store",
    "notify",
    "registry",
    "cluster",
    "reconcile",
    "cli",
    "__main__",
)
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
EXEMPT = ("store/migrations/",)  # each migration is one long, frozen step


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, dotted
    target: str  # the imported module, dotted
    line: int


def part_of(module: str) -> str:
    """`attuned.store.outbox` -> `store`; `attuned` -> `attuned`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, root: Path) -> Iterator[Import]:
    module = module_name(path, root)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                targets = [".".join([*base, node.module] if node.module else base)]
            else:
                targets = [node.module or ""]
        else:
            continue
        for target in targets:
            if target == root.name or target.startswith(root.name + "."):
                yield Import(module, target, node.lineno)


def upward_imports(root: Path) -> list[str]:
    rank = {name: index for index, name in enumerate(LAYERS)}
    found = []
    for path in sorted(root.rglob("*.py")):
        for imp in imports_of(path, root):
            own, other = part_of(imp.module), part_of(imp.target)
            if own not in rank:
                found.append(f"{imp.module}: part {own!r} has no place in LAYERS")
            elif other not in rank:
                found.append(f"{imp.module}:{imp.line} imports {imp.target}: no place in LAYERS")
            elif rank[other] > rank[own]:
                found.append(f"{imp.module}:{imp.line} imports {imp.target} (upwards)")
    return found


def checked_sources(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*.py")):
        if not any(part in path.as_posix() for part in EXEMPT):
            yield path


def oversized(root: Path) -> list[str]:
    found = []
    for path in checked_sources(root):
        text = path.read_text()
        lines = text.count("\n")
        if lines > MAX_MODULE_LINES:
            found.append(f"{path.relative_to(root.parent)}: {lines} lines")
        for node in ast.walk(ast.parse(text, str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    where = f"{path.relative_to(root.parent)}:{node.lineno}"
                    found.append(f"{where} {node.name}(): {length} lines")
    return found


def test_imports_only_go_downwards() -> None:
    assert upward_imports(PACKAGE) == []


def test_no_module_or_function_outgrows_its_limit() -> None:
    assert oversized(PACKAGE) == []


def test_every_part_of_the_package_has_a_layer() -> None:
    parts = {part_of(module_name(path, PACKAGE)) for path in PACKAGE.rglob("*.py")}
    assert parts <= set(LAYERS), sorted(parts - set(LAYERS))


def make_package(root: Path, files: dict[str, str]) -> Path:
    package = root / "attuned"
    for name, text in files.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return package


def test_the_walk_finds_upward_imports_however_they_are_written(tmp_path: Path) -> None:
    package = make_package(
        tmp_path,
        {
            "__init__.py": "",
            "pack/__init__.py": "",
            "pack/loader.py": "from attuned.errors import X\n",  # downwards: fine
            "pack/reader.py": "def f():\n    from ..store import db\n",  # relative, lazy
            "store/__init__.py": "",
            "store/db.py": "from . import models\nimport attuned.cli.main\n",
            "errors.py": "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from attuned.registry import R\n",
        },
    )
    assert upward_imports(package) == [
        "attuned.errors:3 imports attuned.registry (upwards)",
        "attuned.pack.reader:2 imports attuned.store (upwards)",
        "attuned.store.db:2 imports attuned.cli.main (upwards)",
    ]


def test_the_size_check_names_long_modules_and_functions(tmp_path: Path) -> None:
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES))
    package = make_package(
        tmp_path,
        {
            "short.py": "def f():\n    return 1\n",
            "long.py": "def g():\n" + body + "\n" * (MAX_MODULE_LINES - MAX_FUNCTION_LINES),
            "store/migrations/versions/0001.py": "def upgrade():\n" + body,
        },
    )
    assert oversized(package) == [
        f"attuned/long.py: {MAX_MODULE_LINES + 1} lines",
        f"attuned/long.py:1 g(): {MAX_FUNCTION_LINES + 1} lines",
    ]
