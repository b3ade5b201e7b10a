"""Hostile and broken pack files: whatever is written, loading ends in ValidationFailed or a Pack.

Property tests (hypothesis) feed bytes, text, YAML-looking token soup and generated YAML
structures to the manifest and component loaders; explicit cases pin the limits of
`attuned.yamlfile` (size, nesting, aliases, duplicate keys, encoding) and odd file system
entries inside a pack. No test measures time: a bomb that was not refused would hang the run.
"""

from __future__ import annotations

import os
import string
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attuned.errors import Problem, ValidationFailed
from attuned.pack.components import load_components
from attuned.pack.loader import load_pack
from attuned.pack.manifest import PackManifest, load_manifest
from attuned.yamlfile import (
    MAX_ALIAS_NODES,
    MAX_ALIASES,
    MAX_DEPTH,
    MAX_MANIFEST_BYTES,
    MAX_MARKS,
    MAX_YAML_BYTES,
    line_map,
    read_yaml,
)

MANIFEST = "ref: hello\nlabel: Hello\ndescription: d\nversion: 1.0.0\n"
# examples per property test: enough to find the classes of crash, small enough for < 20 s;
# ATTUNED_HYPOTHESIS_EXAMPLES=2000 for a longer hunt (docs/reliability-input.md has figures)
EXAMPLES = int(os.environ.get("ATTUNED_HYPOTHESIS_EXAMPLES", "100"))
PROPERTY = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # no .hypothesis/ in the work tree; a failure prints its example
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
_TEXT = st.text(max_size=12)


# --- helpers ---------------------------------------------------------------------------


@contextmanager
def pack_dir(
    manifest: bytes | str = MANIFEST, files: dict[str, bytes | str] | None = None
) -> Iterator[Path]:
    """A throwaway pack (hypothesis calls a test many times: tmp_path would be shared)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "pack"
        root.mkdir()
        for rel, content in {"pack.yaml": manifest, **(files or {})}.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            data = content.encode() if isinstance(content, str) else content
            path.write_bytes(data)
        yield root


def outcome(load: Callable[[], object]) -> list[Problem] | None:
    """None when it loaded; its problems when refused; any other exception fails the test."""
    try:
        load()
    except ValidationFailed as exc:
        assert exc.problems, "a refusal says why"
        for problem in exc.problems:
            assert problem.file is not None and problem.message
            assert "\n" not in str(problem), "one problem, one log line"
        return exc.problems
    return None


def refused(root: Path) -> list[str]:
    problems = outcome(lambda: load_pack(root))
    assert problems is not None, "expected a refusal"
    return [str(p) for p in problems]


def manifest_object() -> PackManifest:
    return PackManifest.model_validate(yaml.safe_load(MANIFEST))


# --- strategies ------------------------------------------------------------------------

MANIFEST_FIELDS = [*PackManifest.model_fields, "future_key"]
COMPONENT_FIELDS = [
    "name",
    "ref",
    "description",
    "enabled",
    "runner_type",
    "entry_point",
    "parameters",
    "class_name",
    "trigger_types",
    "trigger",
    "action",
    "criteria",
    "type",
    "properties",
    "required",
    "default",
    "minimum",
    "enum",
]
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | _TEXT
    | st.sampled_from(["hello", "1.0.0", "hello.greet", "core", ">=1.0.0", "tests/run.sh"])
)
keys = st.sampled_from([*MANIFEST_FIELDS, *COMPONENT_FIELDS]) | _TEXT
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=20,
)
manifests = st.builds(
    lambda base, extra: {**base, **extra},
    st.just(yaml.safe_load(MANIFEST)),
    st.dictionaries(st.sampled_from(MANIFEST_FIELDS), values, max_size=5),
)
components = st.dictionaries(st.sampled_from(COMPONENT_FIELDS) | _TEXT, values, max_size=6)
# pieces of YAML syntax, glued at random: mostly invalid, now and then something odd but valid
TOKENS = [
    "- ",
    ": ",
    "? ",
    "&a ",
    "*a ",
    "&b ",
    "*b ",
    "<<: ",
    "{",
    "}",
    "[",
    "]",
    ", ",
    "\n",
    "  ",
    "\t",
    "'",
    '"',
    "#",
    "|",
    ">",
    "---\n",
    "...\n",
    "%YAML 1.1\n",
    "%TAG ! tag:x,2000:\n",
    "!!int ",
    "!!float ",
    "!!binary ",
    "!!set ",
    "!!omap ",
    "!!timestamp ",
    "!!python/name:os ",
    "!local ",
    "2001-13-45",
    "0x",
    "1e999",
    ".nan",
    "~",
    "null",
    "yes",
    "ref",
    "version",
    "1.0.0",
    "hello",
    "\\x00",
    "\\u",
    "\ufeff",
    "\u2028",
    "é",
]
token_soup = st.lists(st.sampled_from(TOKENS), max_size=40).map("".join)
COMPONENT_FILES = [
    "actions/a.yaml",
    "rules/r.yaml",
    "sensors/s.yaml",
    "triggers/t.yml",
    "workflows/w.yaml",
    "custom_kind/c.yaml",
]


# --- property tests: pack.yaml ---------------------------------------------------------


@PROPERTY
@given(st.binary(max_size=400))
def test_any_bytes_as_pack_yaml(data: bytes) -> None:
    with pack_dir(data) as root:
        outcome(lambda: load_manifest(root))
        outcome(lambda: load_pack(root))


@PROPERTY
@given(st.text(max_size=300))
def test_any_text_as_pack_yaml(text: str) -> None:
    with pack_dir(text) as root:
        outcome(lambda: load_pack(root))


@PROPERTY
@given(token_soup)
def test_yaml_token_soup_as_pack_yaml(text: str) -> None:
    with pack_dir(MANIFEST + text) as root:
        outcome(lambda: load_pack(root))
    with pack_dir(text) as root:
        outcome(lambda: load_pack(root))


@PROPERTY
@given(manifests)
def test_generated_manifests(data: dict[str, Any]) -> None:
    with pack_dir(yaml.safe_dump(data)) as root:
        outcome(lambda: load_pack(root))


@PROPERTY
@given(values)
def test_any_yaml_value_as_pack_yaml(data: Any) -> None:
    with pack_dir(yaml.safe_dump(data)) as root:
        problems = outcome(lambda: load_pack(root))
    assert problems is not None, "nothing but a complete manifest loads"


# --- property tests: component files ---------------------------------------------------


@PROPERTY
@given(st.sampled_from(COMPONENT_FILES), components)
def test_generated_components(name: str, data: dict[str, Any]) -> None:
    with pack_dir(files={name: yaml.safe_dump(data), "actions/run.sh": "#!/bin/sh\n"}) as root:
        outcome(lambda: load_components(root, manifest_object()))
        outcome(lambda: load_pack(root))


@PROPERTY
@given(st.sampled_from(COMPONENT_FILES), st.binary(max_size=300) | token_soup.map(str.encode))
def test_garbage_components(name: str, data: bytes) -> None:
    with pack_dir(files={name: data}) as root:
        outcome(lambda: load_components(root, manifest_object()))
        outcome(lambda: load_pack(root))


# --- explicit cases: the content of one file -------------------------------------------


def billion_laughs(levels: int = 9) -> str:
    lines = ['l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, levels):
        refs = ",".join([f"*l{level - 1}"] * 9)
        lines.append(f"l{level}: &l{level} [{refs}]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ref: [unclosed\n", "pack.yaml:2: invalid YAML"),
        ("ref: hello\n  label: x\n", "pack.yaml:2: invalid YAML"),
        ("\tref: hello\n", "pack.yaml:1: invalid YAML"),
        ("a: 1\n---\nb: 2\n", "pack.yaml:2: invalid YAML"),
        ("ref: *nowhere\n", "pack.yaml:1: invalid YAML"),
        ("ref: !!python/object:os.system x\n", "pack.yaml:1: invalid YAML"),
        ("ref: hello\nwhen: 2001-13-45\n", "pack.yaml:2: cannot read this timestamp"),
        ("ref: !!int abc\n", "pack.yaml:1: cannot read this int"),
        ("ref: 1" + "0" * 5000 + "\n", "pack.yaml:1: cannot read this int"),
        ("{[1]: x}\n", "pack.yaml:1: invalid YAML: found unhashable key"),
        ("!!set : x\n", "pack.yaml:1: invalid YAML: found unhashable key"),  # found by hypothesis
    ],
)
def test_invalid_yaml(text: str, expected: str) -> None:
    with pack_dir(text) as root:
        [problem] = refused(root)
    assert problem.startswith(str(root / "pack.yaml")) and expected in problem


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("version: 1.0\n", "version: 1.0 was read as a number"),
        ("tags: yes\n", "tags: Input should be a valid list"),
        ("testing: []\n", "testing: Input should be a valid dictionary"),
        ("dependencies: {a: b}\n", "dependencies: Input should be a valid list"),
        ("config: {x: !!binary aGk=}\n", None),  # bytes inside free-form config are kept
    ],
)
def test_wrong_types(extra: str, expected: str | None) -> None:
    manifest = MANIFEST.replace("version: 1.0.0\n", "") if extra.startswith("version") else MANIFEST
    with pack_dir(manifest + extra) as root:
        problems = outcome(lambda: load_pack(root))
    if expected is None:
        assert problems is None
    else:
        assert problems is not None and any(expected in str(p) for p in problems), problems


@pytest.mark.parametrize("text", ["", "~\n", "- a\n- b\n", "just text\n", "42\n"])
def test_a_manifest_that_is_not_a_mapping(text: str) -> None:
    with pack_dir(text) as root:
        [problem] = refused(root)
    assert "expected a mapping at the top" in problem


def test_billion_laughs_is_refused_by_its_expansion() -> None:
    with pack_dir(MANIFEST + "meta:\n  " + billion_laughs().replace("\n", "\n  ")) as root:
        [problem] = refused(root)
    assert f"aliases expand to more than {MAX_ALIAS_NODES} nodes" in problem
    assert problem.startswith(f"{root / 'pack.yaml'}:")


def test_billion_laughs_in_a_component_and_in_line_map() -> None:
    with pack_dir(files={"actions/a.yaml": billion_laughs()}) as root:
        [problem] = refused(root)
        assert "an alias bomb?" in problem and "actions/a.yaml:" in problem
        assert line_map(root / "actions/a.yaml") == {}  # placing errors cannot expand it


def test_recursive_alias_is_refused() -> None:
    with pack_dir(MANIFEST + "meta: &m {self: *m}\n") as root:
        [problem] = refused(root)
    assert "recursive alias" in problem


def test_aliases_within_the_limits_are_fine() -> None:
    text = MANIFEST + "meta:\n  base: &base {a: 1, b: 2}\n  one: {<<: *base, b: 3}\n  two: *base\n"
    with pack_dir(text) as root:
        assert load_pack(root).manifest.meta["one"] == {"a": 1, "b": 3}


def test_too_many_aliases() -> None:
    refs = ", ".join(["*x"] * (MAX_ALIASES + 1))
    with pack_dir(MANIFEST + f"meta: {{x: &x 1, y: [{refs}]}}\n") as root:
        [problem] = refused(root)
    assert f"more than {MAX_ALIASES} aliases" in problem


@pytest.mark.parametrize(
    ("name", "cap", "kind"),
    [
        ("pack.yaml", MAX_MANIFEST_BYTES, "a pack.yaml"),
        ("actions/a.yaml", MAX_YAML_BYTES, "a YAML file"),
    ],
)
def test_a_huge_file_is_refused_before_parsing(name: str, cap: int, kind: str) -> None:
    # valid YAML, so only the cap can refuse it (60 bytes a key: not too dense either)
    huge = MANIFEST + "meta:\n" + "".join(f"  k{i}: {'x' * 60}\n" for i in range(cap // 64))
    assert len(huge) > cap
    with pack_dir(files={name: huge}) as root:
        [problem] = refused(root)
    assert problem == f"{root / name}: {len(huge)} bytes, more than the {cap} {kind} may have"


def test_files_just_under_the_caps_load() -> None:
    text = MANIFEST + "meta: {blob: '" + "x" * (MAX_MANIFEST_BYTES - len(MANIFEST) - 20) + "'}\n"
    assert len(text) <= MAX_MANIFEST_BYTES
    big = "ref: hello.a\nrunner_type: shell\nentry_point: a.sh\ndescription: '"
    big += "x" * (MAX_YAML_BYTES - len(big) - 2) + "'\n"
    assert len(big) == MAX_YAML_BYTES
    with pack_dir(text, {"actions/a.yaml": big, "actions/a.sh": "echo\n"}) as root:
        pack = load_pack(root)
    assert len(pack.manifest.meta["blob"]) > MAX_MANIFEST_BYTES - 100
    assert len(pack.components[0].definition["description"]) > MAX_YAML_BYTES - 100


def test_a_dense_file_is_refused_before_parsing() -> None:
    # under the size cap, but each node would cost PyYAML microseconds: seconds in all
    dense = "x: [" + "1," * MAX_MARKS + "1]\n"  # one `:`, one `[`, the commas
    with pack_dir(files={"actions/a.yaml": dense}) as root:
        [problem] = refused(root)
    assert problem == (
        f"{root / 'actions/a.yaml'}: too many keys and items: {MAX_MARKS + 2} of "
        f"`:` `,` `-` `?` `[` `{{`, more than the {MAX_MARKS} a YAML file may have"
    )


def test_a_syntax_error_is_placed_by_bytes_not_characters() -> None:
    # libyaml reports a bad character at a UTF-8 byte offset: 2 bytes per `é`
    text = MANIFEST + "label: " + "é" * 40 + "\n" + "meta: {a: 1}\n" * 3 + "x: \x07\n"
    with pack_dir(text) as root:
        [problem] = refused(root)
    assert problem.startswith(f"{root / 'pack.yaml'}:9: invalid YAML: character '\\x07'")


@pytest.mark.parametrize(
    ("depth", "expected"),
    [
        (10_000, "invalid YAML: exceeded maximum nesting depth"),  # libyaml's own cap (1000)
        (500, f"nested more than {MAX_DEPTH} levels deep"),
        (MAX_DEPTH, f"nested more than {MAX_DEPTH} levels deep"),
    ],
)
def test_deep_nesting(depth: int, expected: str) -> None:
    for nested in ("[" * depth + "]" * depth, "{a: " * depth + "1" + "}" * depth):
        with pack_dir(MANIFEST + f"meta: {{x: {nested}}}\n") as root:
            [problem] = refused(root)
        assert problem.startswith(f"{root / 'pack.yaml'}:5: ") and expected in problem


def test_nesting_just_under_the_limit_loads() -> None:
    # root mapping, `meta` value, `x` value: three levels before the lists
    nested = "[" * (MAX_DEPTH - 3) + "]" * (MAX_DEPTH - 3)
    with pack_dir(MANIFEST + f"meta: {{x: {nested}}}\n") as root:
        load_pack(root)


def test_deep_nesting_through_aliases() -> None:
    half = MAX_DEPTH // 2 + 1
    nested = "[" * half + "]" * half
    with pack_dir(MANIFEST + f"meta: {{a: &a {nested}, b: {'[' * half}*a{']' * half}}}\n") as root:
        [problem] = refused(root)
    assert "levels deep (through aliases)" in problem


def test_duplicate_keys_name_the_second_line() -> None:
    text = MANIFEST + "label: Again\n"
    with pack_dir(text) as root:
        [problem] = refused(root)
    assert problem == f"{root / 'pack.yaml'}:5: duplicate key 'label' (first on line 2)"


def test_duplicate_keys_nested_and_in_components() -> None:
    with pack_dir(MANIFEST + "meta:\n  a: 1\n  b: 2\n  a: 3\n") as root:
        assert refused(root) == [f"{root / 'pack.yaml'}:8: duplicate key 'a' (first on line 6)"]
    with pack_dir(files={"actions/a.yaml": "runner_type: shell\nname: x\nname: y\n"}) as root:
        assert refused(root) == [
            f"{root / 'actions/a.yaml'}:3: duplicate key 'name' (first on line 2)"
        ]


def test_a_key_with_a_newline_cannot_forge_a_log_line() -> None:
    """Found by hypothesis: the key lands in the problem's field name, escaped."""
    with pack_dir(MANIFEST + 'conf_schema: {"a\\nb": 5}\n') as root:
        [problem] = refused(root)
    assert problem.startswith(f"{root / 'pack.yaml'}:5: conf_schema.fields['a\\nb']: ")


def test_a_merge_key_may_be_overridden() -> None:
    with pack_dir(MANIFEST + "meta:\n  d: &d {a: 1}\n  e:\n    <<: *d\n    a: 2\n") as root:
        assert load_pack(root).manifest.meta["e"] == {"a": 2}


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\x7fELF\x02\x01\x01\x00\x00", "pack.yaml:1: binary content (a NUL byte), not YAML text"),
        (MANIFEST.encode() + b"meta: {a: \x00}\n", "pack.yaml:5: binary content (a NUL byte)"),
        (
            MANIFEST.encode() + b"label: caf\xe9\n",
            "pack.yaml:5: not UTF-8 text (byte 0xe9: invalid continuation byte)",
        ),
        (b"\xff\xfer\x00e\x00f\x00", "binary content"),  # UTF-16: NUL bytes
        (bytes(range(256)) * 4, "binary content"),
        pytest.param(  # a named id: every pytest-xdist worker collects the same test
            os.urandom(64).replace(b"\x00", b"\x01") + b"\xff", "not UTF-8 text", id="random"
        ),
    ],
)
def test_binary_and_non_utf8_content(data: bytes, expected: str) -> None:
    with pack_dir(data) as root:
        [problem] = refused(root)
    assert expected in problem


def test_a_byte_order_mark_is_fine() -> None:
    with pack_dir("\ufeff" + MANIFEST) as root:
        assert load_pack(root).ref == "hello"


# --- explicit cases: what sits in the pack folder --------------------------------------


@pytest.mark.parametrize(
    "name", ["bad\nname.txt", "tab\there.sh", "esc\x1b[31m.txt", "actions/x\r.yaml"]
)
def test_file_names_with_control_characters(name: str) -> None:
    with pack_dir(files={name: "x: 1\n"}) as root:
        problems = refused(root)
    assert f"{root}: file name {name!r} has a control character; rename it" in problems


def test_a_directory_name_with_a_newline_is_one_problem() -> None:
    with pack_dir(files={"docs/a\nb/one.txt": "1", "docs/a\nb/two.txt": "2"}) as root:
        problems = refused(root)
    assert problems == [f"{root}: file name 'docs/a\\nb' has a control character; rename it"]


@pytest.mark.parametrize("raw", [b"caf\xe9.txt", b"actions/\xff.yaml", b"\xc3(/x.txt"])
def test_file_names_that_are_not_utf8(raw: bytes) -> None:
    with pack_dir() as root:
        path = os.fsencode(root) + b"/" + raw
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(b"runner_type: shell\n")
        problems = refused(root)
    assert f"{root}: a file name is not UTF-8 text; rename it" in problems


def test_a_fifo_named_like_a_component_does_not_hang() -> None:
    with pack_dir() as root:
        (root / "actions").mkdir()
        os.mkfifo(root / "actions/a.yaml")
        problems = refused(root)
    assert f"{root / 'actions/a.yaml'}: not a regular file (directory, FIFO or device)" in problems
    assert f"{root / 'actions/a.yaml'}: not a regular file (device, FIFO or socket)" in problems


def test_a_fifo_as_pack_yaml() -> None:
    with pack_dir() as root:
        (root / "pack.yaml").unlink()
        os.mkfifo(root / "pack.yaml")
        assert refused(root) == [f"{root / 'pack.yaml'}: no pack.yaml in the pack directory"]
        # read_yaml itself, which the config loader and ref hints also use
        with pytest.raises(ValidationFailed, match="not a regular file"):
            read_yaml(root / "pack.yaml")


def test_a_device_as_a_component() -> None:
    with pack_dir() as root:
        (root / "actions").mkdir()
        os.symlink("/dev/zero", root / "actions/zero.yaml")
        problems = refused(root)
    assert (
        f"{root / 'actions/zero.yaml'}: not a regular file (directory, FIFO or device)" in problems
    )


def test_an_unreadable_file() -> None:
    """As root, chmod 000 blocks nothing; a directory named like a YAML file cannot be read."""
    with pack_dir() as root:
        (root / "actions/a.yaml").mkdir(parents=True)
        (root / "actions/a.yaml/x").write_text("x")
        problems = refused(root)
    assert f"{root / 'actions/a.yaml'}: not a regular file (directory, FIFO or device)" in problems


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a chmod 000 file anyway")
def test_a_permission_denied_file() -> None:
    with pack_dir(files={"actions/a.yaml": "runner_type: shell\n"}) as root:
        (root / "actions/a.yaml").chmod(0)
        try:
            problems = refused(root)
        finally:
            (root / "actions/a.yaml").chmod(0o644)
    assert f"{root / 'actions/a.yaml'}: cannot read: Permission denied" in problems


def test_symlink_loops_inside_a_pack() -> None:
    with pack_dir() as root:
        (root / "actions").mkdir()
        os.symlink("loop.yaml", root / "actions/loop.yaml")
        os.symlink("b", root / "a")
        os.symlink("a", root / "b")
        os.symlink(".", root / "actions/self")
        problems = refused(root)
    assert (
        f"{root / 'actions/loop.yaml'}: cannot read: Too many levels of symbolic links" in problems
    )
    for name in ("a", "b", "actions/loop.yaml", "actions/self"):
        assert any(p.startswith(f"{root / name}: symbolic link") for p in problems), name


def test_an_entry_point_that_is_a_symlink_loop() -> None:
    with pack_dir(
        files={"actions/a.yaml": "ref: hello.a\nrunner_type: shell\nentry_point: loop.sh\n"}
    ) as root:
        os.symlink("loop.sh", root / "actions/loop.sh")
        problems = refused(root)
    assert any("entry_point" in p and "cannot be resolved" in p for p in problems), problems


def test_an_entry_point_with_a_nul_byte() -> None:
    with pack_dir(
        files={"actions/a.yaml": 'ref: hello.a\nrunner_type: shell\nentry_point: "a\\0b"\n'}
    ) as root:
        problems = refused(root)
    assert any("entry_point contains a NUL byte" in p for p in problems), problems


def test_every_printable_name_is_fine() -> None:
    """The name checks refuse control characters only, not unusual but harmless names."""
    name = "docs/" + string.punctuation.replace("/", "") + " é ü 漢字.txt"
    with pack_dir(files={name: "x"}) as root:
        assert load_pack(root).ref == "hello"
