"""Components: kinds, refs, entry points, rule references, namespace and content rules."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from attuned.errors import ValidationFailed
from attuned.pack.loader import load_pack
from tests.conftest import EXAMPLES, PackFactory

ACTION = "name: greet\nrunner_type: shell\nentry_point: greet.sh\n"


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ValidationFailed) as caught:
        load_pack(path)
    return [str(p) for p in caught.value.problems]


def test_example_components_get_pack_qualified_refs() -> None:
    pack = load_pack(EXAMPLES / "hello")
    assert {(c.kind, c.ref, c.file) for c in pack.components} == {
        ("action", "hello.greet", "actions/greet.yaml"),
        ("trigger", "hello.arrived", "triggers/arrived.yaml"),
    }


def test_every_known_kind_and_generic_kinds(make_pack: PackFactory) -> None:
    path = make_pack(
        files={
            "actions/greet.yaml": ACTION,
            "actions/greet.sh": "echo hi\n",
            "sensors/watch.yaml": "entry_point: watch.py\nclass_name: Watch\n",
            "sensors/watch.py": "class Watch: ...\n",
            "triggers/tick.yaml": "name: tick\n",
            "rules/on_tick.yaml": "name: on_tick\ntrigger: {type: hello.tick}\naction: {ref: hello.greet}\n",
            "workflows/flow.yaml": "name: flow\ntasks: {}\n",
            "policies/limit.yaml": "name: limit\n",
            "permission_sets/ops.yaml": "name: ops\ngrants: []\n",
            "caches/tokens.yaml": "name: tokens\n",
            "dashboards/main.yaml": "name: main\n",  # unknown kind: kept as generic
            "lib/helper.py": "x = 1\n",  # not a component directory
        }
    )
    kinds = {c.kind: c.ref for c in load_pack(path).components}
    assert kinds == {
        "action": "hello.greet",
        "sensor": "hello.watch",
        "trigger": "hello.tick",
        "rule": "hello.on_tick",
        "workflow": "hello.flow",
        "policy": "hello.limit",
        "permission_set": "hello.ops",
        "cache": "hello.tokens",
        "dashboards": "hello.main",
    }


def test_action_entry_point_must_exist(make_pack: PackFactory) -> None:
    path = make_pack(files={"actions/greet.yaml": ACTION})
    [problem] = problems_of(path)
    assert problem.endswith(
        "actions/greet.yaml:3: entry_point: 'greet.sh' does not exist in the pack"
    )


def test_entry_point_escaping_the_pack_is_refused(make_pack: PackFactory) -> None:
    path = make_pack(
        files={"actions/x.yaml": "runner_type: shell\nentry_point: ../../../etc/passwd\n"}
    )
    [problem] = problems_of(path)
    assert "points outside the pack" in problem


def test_component_in_another_packs_namespace(make_pack: PackFactory) -> None:
    path = make_pack(files={"triggers/t.yaml": "ref: core.tick\n"})
    [problem] = problems_of(path)
    assert "triggers/t.yaml:1: ref:" in problem and "pack 'core'" in problem


def test_rule_refs_must_resolve(make_pack: PackFactory) -> None:
    path = make_pack(
        files={
            "rules/r.yaml": "trigger: {type: hello.nothing}\naction: {ref: other.act}\n",
        }
    )
    found = problems_of(path)
    assert any(
        "rules/r.yaml:1: trigger: 'hello.nothing' is not defined in this pack" in p for p in found
    )
    assert any(
        "rules/r.yaml:2: action: 'other.act' belongs to pack 'other', which is not a declared dependency"
        in p
        for p in found
    )


def test_rule_may_use_declared_dependency(make_pack: PackFactory) -> None:
    path = make_pack(
        files={"rules/r.yaml": "trigger: {type: core.tick}\naction: {ref: core.echo}\n"},
        dependencies=["core"],
    )
    assert [c.ref for c in load_pack(path).components] == ["hello.r"]


def test_action_missing_runner_type_names_file(make_pack: PackFactory) -> None:
    path = make_pack(files={"actions/a.yaml": "name: a\n"})
    [problem] = problems_of(path)
    assert "actions/a.yaml:1: runner_type: required field is missing" in problem


def test_all_bad_files_reported_together(make_pack: PackFactory) -> None:
    path = make_pack(files={"actions/a.yaml": "name: a\n", "triggers/b.yaml": "[1, 2\n"})
    found = problems_of(path)
    assert len(found) == 2 and any("triggers/b.yaml" in p and "invalid YAML" in p for p in found)


def test_symlink_out_of_the_pack_is_refused(make_pack: PackFactory, tmp_path: Path) -> None:
    path = make_pack()
    os.symlink("/etc/passwd", path / "passwd")
    [problem] = problems_of(path)
    assert problem.endswith("passwd: symbolic link (to '/etc/passwd') refused")


def test_symlinked_directory_is_refused(make_pack: PackFactory, tmp_path: Path) -> None:
    path = make_pack()
    (tmp_path / "outside").mkdir()
    os.symlink(tmp_path / "outside", path / "actions")
    assert any("actions: symbolic link" in p for p in problems_of(path))


def test_hard_link_and_fifo_are_refused(make_pack: PackFactory, tmp_path: Path) -> None:
    path = make_pack()
    (tmp_path / "secret").write_text("x")
    os.link(tmp_path / "secret", path / "linked")
    os.mkfifo(path / "pipe")
    found = problems_of(path)
    assert any(p.endswith("linked: hard link refused") for p in found)
    assert any(p.endswith("pipe: not a regular file (device, FIFO or socket)") for p in found)


def test_digest_follows_content_and_exec_bit(make_pack: PackFactory) -> None:
    path = make_pack(files={"README.md": "one\n"})
    first = load_pack(path).digest
    assert load_pack(path).digest == first
    (path / "README.md").write_text("two\n")
    second = load_pack(path).digest
    assert second != first
    (path / "README.md").chmod(0o755)
    assert load_pack(path).digest != second
