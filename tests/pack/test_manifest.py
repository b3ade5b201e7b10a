"""pack.yaml loading: Attune's fields, unknown keys kept, errors that name file/line/field."""

from __future__ import annotations

from pathlib import Path

import pytest

from attuned.errors import ValidationFailed
from attuned.pack.manifest import ResultFormat, RunnerType, load_manifest
from tests.conftest import EXAMPLES, write

FULL = """\
ref: full_pack
label: Full
description: Every field
version: 2.1.0-rc.1
author: Ada
email: ada@example.org
system: false
enabled: true
conf_schema:
  type: object
  properties:
    region: {type: string, default: eu}
    retries: {type: integer, minimum: 0, maximum: 5}
  required: [retries]
config:
  retries: 3
meta:
  python_dependencies: ["requests>=2"]
tags: [net, http]
runtime_deps: [shell, python3]
dependencies:
  - core
  - http>=1.2.0
  - ssh@^1.2
  - {ref: dns, version: ">=1.0.0,<2"}
worker_selector: {zone: a}
future_key: {nested: true}
testing:
  enabled: true
  discovery: {method: directory, path: tests}
  runners:
    zeta: {type: script, entry_point: tests/z.sh}
    alpha: {type: pytest, entry_point: tests, timeout: 60, result_format: junit}
  result_path: tests/results/
  min_pass_rate: 0.8
  on_failure: warn
"""


def manifest_at(tmp_path: Path, text: str) -> Path:
    write(tmp_path / "p" / "pack.yaml", text)
    return tmp_path / "p"


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ValidationFailed) as caught:
        load_manifest(manifest_at(tmp_path, text))
    return [str(p) for p in caught.value.problems]


def test_every_field_loads(tmp_path: Path) -> None:
    loaded = load_manifest(manifest_at(tmp_path, FULL))
    m = loaded.manifest
    assert (m.ref, m.version, m.author) == ("full_pack", "2.1.0-rc.1", "Ada")
    assert m.config == {"retries": 3, "region": "eu"}  # default filled from conf_schema
    assert m.meta_python_dependencies == ["requests>=2"]
    assert [(d.ref, d.version) for d in m.dependencies] == [
        ("core", "*"),
        ("http", ">=1.2.0"),
        ("ssh", "^1.2"),
        ("dns", ">=1.0.0,<2"),
    ]
    assert m.worker_selector == {"zone": "a"}
    assert m.testing is not None
    # runners keep the order written, not alphabetical order
    assert list(m.testing.runners) == ["zeta", "alpha"]
    assert m.testing.runners["alpha"].type is RunnerType.PYTEST
    assert m.testing.runners["alpha"].result_format is ResultFormat.JUNIT
    assert m.testing.runners["zeta"].timeout == 300
    assert (m.testing.min_pass_rate, m.testing.on_failure) == (0.8, "warn")


def test_unknown_top_level_key_is_kept_and_warned(tmp_path: Path) -> None:
    loaded = load_manifest(manifest_at(tmp_path, FULL))
    assert loaded.manifest.extras == {"future_key": {"nested": True}}
    [warning] = loaded.warnings
    assert str(warning).endswith("pack.yaml:27: future_key: unknown field, kept as metadata")


def test_bad_version_names_file_line_and_field(tmp_path: Path) -> None:
    text = "ref: hello\nlabel: H\ndescription: d\n\n\n\nversion: x.y\n"
    [problem] = problems(tmp_path, text)
    assert (
        problem
        == f"{tmp_path}/p/pack.yaml:7: version: 'x.y' is not a semantic version (expected e.g. 1.0.3)"
    )


def test_unquoted_float_version_asks_for_quotes(tmp_path: Path) -> None:
    [problem] = problems(tmp_path, "ref: ab\nlabel: A\ndescription: d\nversion: 1.10\n")
    assert ":4: version:" in problem and 'quote it (version: "1.1")' in problem


@pytest.mark.parametrize("ref", ["Hello", "1abc", "a.b", "a b", "_x", ""])
def test_bad_refs_are_refused(tmp_path: Path, ref: str) -> None:
    [problem] = problems(tmp_path, f"ref: '{ref}'\nlabel: A\ndescription: d\nversion: 1.0.0\n")
    assert ":1: ref:" in problem and "is not a valid ref" in problem


@pytest.mark.parametrize("ref", ["ab", "hello_world", "my-pack2"])
def test_good_refs_load(tmp_path: Path, ref: str) -> None:
    text = f"ref: {ref}\nlabel: A\ndescription: d\nversion: 1.0.0\n"
    assert load_manifest(manifest_at(tmp_path, text)).manifest.ref == ref


def test_missing_version_is_the_one_required_field_besides_ref(tmp_path: Path) -> None:
    """Attune's register route needs `ref` and `version`; a label falls back to the ref."""
    [found] = problems(tmp_path, "ref: ab\n")
    assert found.endswith("version: required field is missing")
    text = "ref: ab\nversion: 1.0.0\n"
    manifest = load_manifest(manifest_at(tmp_path, text)).manifest
    assert (manifest.display_label, manifest.description) == ("ab", None)


def test_a_one_letter_ref_is_refused_as_attune_would(tmp_path: Path) -> None:
    [problem] = problems(tmp_path, "ref: a\nversion: 1.0.0\n")
    assert ":1: ref:" in problem and "two characters or more" in problem


def test_attunes_register_route_spellings_are_read(tmp_path: Path) -> None:
    """`name`, `config_schema`, `metadata`, `keywords`: what Attune's route reads."""
    text = (
        "ref: ab\nname: A B\nversion: 1.0.0\nconfig_schema:\n  x: {type: integer, default: 2}\n"
        "metadata: {k: v}\nkeywords: [one]\n"
    )
    manifest = load_manifest(manifest_at(tmp_path, text)).manifest
    assert manifest.display_label == "A B"
    assert manifest.config == {"x": 2} and manifest.meta == {"k": "v"}
    assert manifest.tags == ["one"] and manifest.extras == {}


def test_unknown_runner_type_fails_at_load_with_its_line(tmp_path: Path) -> None:
    text = (
        "ref: ab\nlabel: A\ndescription: d\nversion: 1.0.0\ntesting:\n  runners:\n"
        "    s:\n      type: mocha\n      entry_point: t.js\n"
    )
    [problem] = problems(tmp_path, text)
    assert ":8: testing.runners.s.type:" in problem and "'script'" in problem


def test_min_pass_rate_out_of_range(tmp_path: Path) -> None:
    text = "ref: ab\nlabel: A\ndescription: d\nversion: 1.0.0\ntesting:\n  min_pass_rate: 1.5\n"
    [problem] = problems(tmp_path, text)
    assert ":6: testing.min_pass_rate:" in problem


def test_entry_point_outside_pack_refused(tmp_path: Path) -> None:
    text = (
        "ref: ab\nlabel: A\ndescription: d\nversion: 1.0.0\ntesting:\n  runners:\n"
        "    s: {type: script, entry_point: ../../etc/passwd}\n"
    )
    [problem] = problems(tmp_path, text)
    assert "testing.runners.s.entry_point" in problem and "inside the pack" in problem


def test_bad_dependency_constraint(tmp_path: Path) -> None:
    text = "ref: ab\nlabel: A\ndescription: d\nversion: 1.0.0\ndependencies:\n  - core>=banana\n"
    [problem] = problems(tmp_path, text)
    assert ":6: dependencies[0]" in problem and "not a version constraint" in problem


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("{retries: 9}", "retries: 9 is above the maximum 5"),
        ("{retries: -1}", "retries: -1 is below the minimum 0"),
        ("{retries: three}", "retries: expected integer, got str"),
        ("{}", "retries: required by conf_schema but not set"),
    ],
)
def test_config_validated_against_flat_conf_schema(
    tmp_path: Path, config: str, message: str
) -> None:
    text = (
        "ref: ab\nlabel: A\ndescription: d\nversion: 1.0.0\nconf_schema:\n"
        "  retries: {type: integer, minimum: 0, maximum: 5, required: true}\n"
        f"config: {config}\n"
    )
    [problem] = problems(tmp_path, text)
    assert ":7: config:" in problem and message in problem


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    [problem] = problems(tmp_path, "ref: ab\nlabel: [unclosed\ndescription: d\n")
    assert problem.startswith(f"{tmp_path}/p/pack.yaml:") and "invalid YAML" in problem


def test_not_a_mapping(tmp_path: Path) -> None:
    [problem] = problems(tmp_path, "- just\n- a list\n")
    assert "expected a mapping at the top, found a list" in problem


def test_missing_directory_and_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(ValidationFailed, match="pack directory not found"):
        load_manifest(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValidationFailed, match="no pack.yaml"):
        load_manifest(tmp_path / "empty")


def test_examples_load() -> None:
    for name in ("hello", "failing", "welcome"):
        assert load_manifest(EXAMPLES / name).manifest.ref == name


def test_result_path_outside_pack_refused(tmp_path: Path) -> None:
    text = "ref: ab\nlabel: A\ndescription: d\nversion: 1.0.0\ntesting:\n  result_path: /tmp/x\n"
    [problem] = problems(tmp_path, text)
    assert ":6: testing.result_path:" in problem and "inside the pack" in problem
