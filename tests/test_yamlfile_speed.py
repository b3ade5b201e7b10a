"""Hostile YAML is refused fast: an operator saw a 1 MiB dense manifest take 5 s to refuse.

Each class of file built to make parsing slow is refused, with one problem naming the file
and the limit (and the line, where there is one), in under 50 ms, through `load_pack` (what
the daemon runs) and `line_map` (what places errors). Timings take the best of 3 tries, so a
busy 2-core machine does not fail them; the refusals measure 0.1-10 ms, and took up to 5.6 s
before the byte pre-scan and the C pre-parse.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from attuned.errors import Problem, ValidationFailed
from attuned.pack.loader import load_pack
from attuned.yamlfile import (
    MAX_ALIAS_NODES,
    MAX_MANIFEST_BYTES,
    MAX_MARKS,
    MAX_YAML_BYTES,
    line_map,
)

BUDGET = 0.050  # seconds, the bound
MIB = 1 << 20
MANIFEST = "ref: hello\nlabel: Hello\ndescription: d\nversion: 1.0.0\n"
ACTION = "actions/a.yaml"
ACTION_HEAD = (
    "ref: hello.a\nlabel: A\ndescription: d\nrunner_type: shell\nentry_point: a.sh\n"
    "parameters:\n  type: object\n  properties:\n"
)
DENSE = f"too many keys and items: more than the {MAX_MARKS} a YAML file may have"


def filled(head: str, unit: str, tail: str, size: int = MIB - 64) -> str:
    """`head`, `unit` repeated, `tail`: `size` bytes at most."""
    return head + unit * ((size - len(head) - len(tail)) // len(unit)) + tail


def ordinary_action(size: int) -> str:
    """A valid action of about `size` bytes, of the kind a big real one holds."""
    param = (
        "    p{i}:\n      type: string\n      default: world\n"
        "      description: The name of the thing to greet, as the greeting line shows it\n"
    )
    count = (size - len(ACTION_HEAD)) // len(param.format(i=1000))
    return ACTION_HEAD + "".join(param.format(i=i) for i in range(count))


def billion_laughs() -> str:
    lines = ['l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, 9):
        lines.append(f"l{level}: &l{level} [{','.join([f'*l{level - 1}'] * 9)}]")
    return MANIFEST + "meta:\n  " + "\n  ".join(lines) + "\n"


BIG = ordinary_action(480 * 1024)  # under the caps: only libyaml's C pass is fast on it
BIG_LINES = BIG.count("\n")
# (file, its text, what the problem says after `<path>`)
HOSTILE = {
    "dense manifest, 1 MiB flow list": (
        "pack.yaml",
        filled(MANIFEST + "meta: [", "1,", "1]\n"),
        f"more than the {MAX_MANIFEST_BYTES} a pack.yaml may have",
    ),
    "dense manifest under its size cap": (
        "pack.yaml",
        filled(MANIFEST + "meta: [", "1,", "1]\n", MAX_MANIFEST_BYTES),
        DENSE,
    ),
    "manifest, one 1 MiB scalar": (
        "pack.yaml",
        filled(MANIFEST + "meta: '", "x", "'\n"),
        f"more than the {MAX_MANIFEST_BYTES} a pack.yaml may have",
    ),
    "flow list of tiny ints": (ACTION, filled("x: [", "1,", "1]\n"), DENSE),
    "flow mapping of short keys": (ACTION, filled("x: {", "a: 1, ", "b: 1}\n"), DENSE),
    "flow list of tiny strings": (ACTION, filled("x: [", "a, ", "a]\n"), DENSE),
    "many short keys": (ACTION, "".join(f"k{i}: 1\n" for i in range(MIB // 12)), DENSE),
    "many small list items": (ACTION, filled("x:\n", "- a\n", ""), DENSE),
    "many duplicate keys": (ACTION, filled("", "a: 1\n", ""), DENSE),
    "many aliases": (ACTION, filled("x: &x 1\ny: [", "*x, ", "*x]\n"), DENSE),
    "one long line of [[[[": (ACTION, "x: " + "[" * (MIB - 64) + "\n", DENSE),
    "10,000 nested lists": (
        ACTION,
        "x: " + "[" * 10_000 + "]" * 10_000 + "\n",
        ":1: invalid YAML: exceeded maximum nesting depth",
    ),
    "10,000 nested mappings": (
        ACTION,
        "x: " + "{a: " * 10_000 + "1" + "}" * 10_000 + "\n",
        ":1: invalid YAML: exceeded maximum nesting depth",
    ),
    "billion laughs": (
        "pack.yaml",
        billion_laughs(),
        f":10: aliases expand to more than {MAX_ALIAS_NODES} nodes (an alias bomb?)",
    ),
    "a tab at the end of a big file": (
        ACTION,
        BIG + "\tx: 1\n",
        f":{BIG_LINES + 1}: invalid YAML: found a tab character that violates indentation",
    ),
    "a control character at the end of a big file": (
        ACTION,
        BIG + "x: \x07\n",
        f":{BIG_LINES + 1}: invalid YAML: character '\\x07': control characters are not allowed",
    ),
    "a NUL at the end of 1 MiB": (
        ACTION,
        filled("x: '", "y", "'\n\0"),
        ":2: binary content (a NUL byte), not YAML text",
    ),
}


def make_pack(root: Path, name: str, text: str) -> Path:
    """A pack in `root` whose file `name` holds `text` (the others valid); that file's path."""
    files = {"pack.yaml": MANIFEST, ACTION: ordinary_action(1000), "actions/a.sh": "echo hi\n"}
    files[name] = text
    for rel, content in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(content.encode())
    return root / name


def best_of_3(call: Callable[[], object]) -> tuple[float, object]:
    """The fastest of three runs of `call`, and what the last returned or raised."""
    best = float("inf")
    outcome: object = None
    for _ in range(3):
        start = time.perf_counter()
        try:
            outcome = call()
        except ValidationFailed as exc:
            outcome = exc.problems
        best = min(best, time.perf_counter() - start)
    return best, outcome


@pytest.mark.parametrize(("name", "text", "expected"), HOSTILE.values(), ids=list(HOSTILE))
def test_each_hostile_class_is_refused_fast(
    tmp_path: Path, name: str, text: str, expected: str
) -> None:
    path = make_pack(tmp_path, name, text)
    seconds, problems = best_of_3(lambda: load_pack(tmp_path))
    assert isinstance(problems, list), "expected a refusal"
    [problem] = problems
    assert isinstance(problem, Problem)
    shown = str(problem)
    assert "\n" not in shown
    if expected == DENSE:  # the count differs by class
        assert shown.startswith(f"{path}: too many keys and items: "), shown
        assert shown.endswith(f"more than the {MAX_MARKS} a YAML file may have"), shown
    else:
        assert shown.startswith(str(path)) and shown.endswith(expected), shown
    assert seconds < BUDGET, f"{seconds * 1000:.1f} ms to refuse"
    seconds, lines = best_of_3(lambda: line_map(path))
    assert lines == {}  # placing errors in it builds nothing either
    assert seconds < BUDGET, f"line_map: {seconds * 1000:.1f} ms"


def test_a_big_scalar_within_the_limits_is_read_fast(tmp_path: Path) -> None:
    text = ACTION_HEAD.replace("description: d", "description: '" + "x" * (MIB - 400) + "'")
    assert len(text) <= MAX_YAML_BYTES
    make_pack(tmp_path, ACTION, text)
    seconds, pack = best_of_3(lambda: load_pack(tmp_path))
    assert not isinstance(pack, list), pack
    assert seconds < BUDGET, f"{seconds * 1000:.1f} ms to read"


def test_a_large_ordinary_component_still_loads(tmp_path: Path) -> None:
    text = ordinary_action(200 * 1024)
    assert len(text) > 190 * 1024
    make_pack(tmp_path, ACTION, text)
    pack = load_pack(tmp_path)
    [action] = [c for c in pack.components if c.ref == "hello.a"]
    assert len(action.definition["parameters"]["properties"]) == text.count("\n    p")
