"""A pack's Python dependencies: meta.python_dependencies plus requirements.txt, refused
options and local paths named by file and line, one normalized list."""

from __future__ import annotations

from pathlib import Path

import pytest

from attuned.errors import ValidationFailed
from attuned.pack.loader import load_pack
from attuned.pack.requirements import declared_requirements, normalize, stored_requirements
from tests.conftest import PackFactory, write


def test_meta_and_requirements_txt_add_up_sorted_and_deduplicated(
    make_pack: PackFactory,
) -> None:
    pack = make_pack(
        "deps",
        meta={"python_dependencies": ["requests>=2", "PyYAML  ==6.0"]},
        files={
            "requirements.txt": """\
                # a comment
                requests>=2          # also in pack.yaml

                attrs==23.1 ; python_version >= "3.8"
                long-name \\
                    >=1.0
                pkg==1.0 --hash=sha256:abc --hash sha256:def
                git+https://example.org/x.git#egg=x
            """
        },
    )
    assert declared_requirements(pack, load_pack(pack).manifest.meta) == [
        "PyYAML ==6.0",
        'attrs==23.1 ; python_version >= "3.8"',
        "git+https://example.org/x.git#egg=x",
        "long-name >=1.0",
        "pkg==1.0 --hash=sha256:abc --hash sha256:def",
        "requests>=2",
    ]
    assert stored_requirements(pack) == declared_requirements(pack, load_pack(pack).manifest.meta)


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("-r other.txt", "pip option '-r' is not allowed"),
        ("--index-url https://evil.example/simple", "pip option '--index-url' is not allowed"),
        ("--extra-index-url=https://evil.example/simple", "'--extra-index-url' is not allowed"),
        ("-f https://evil.example/wheels", "pip option '-f' is not allowed"),
        ("-e git+https://example.org/x.git", "pip option '-e' is not allowed"),
        ("--trusted-host evil.example", "pip option '--trusted-host' is not allowed"),
        ("foo==1 --global-option=--x", "'--global-option' is not allowed after a requirement"),
        ("./vendor/lib", "is a local path"),
        ("/opt/lib.whl", "is a local path"),
        ("foo @ file:///tmp/foo.whl", "is a local path"),
    ],
)
def test_option_lines_and_local_paths_are_refused_with_file_and_line(
    make_pack: PackFactory, line: str, why: str
) -> None:
    pack = make_pack("deps", files={"requirements.txt": f"ok==1.0\n\n{line}\n"})
    with pytest.raises(ValidationFailed) as caught:
        load_pack(pack)
    [problem] = caught.value.problems
    assert str(problem).startswith(f"{pack / 'requirements.txt'}:3: ")
    assert why in str(problem)


def test_bad_meta_python_dependencies_name_the_field_and_line(make_pack: PackFactory) -> None:
    pack = make_pack(
        "deps", meta={"python_dependencies": ["fine==1", "--index-url=https://x/simple", 3]}
    )
    with pytest.raises(ValidationFailed) as caught:
        load_pack(pack)
    shown = [str(p) for p in caught.value.problems]
    manifest = pack / "pack.yaml"
    assert shown[0].startswith(f"{manifest}:")
    assert "meta.python_dependencies[1]: pip option '--index-url' is not allowed" in shown[0]
    assert "meta.python_dependencies[2]: 3 is not a string" in shown[1]


def test_meta_python_dependencies_must_be_a_list(make_pack: PackFactory) -> None:
    pack = make_pack("deps", meta={"python_dependencies": "requests"})
    with pytest.raises(ValidationFailed, match=r"meta.python_dependencies: must be a list"):
        load_pack(pack)


def test_requirements_txt_that_is_not_text_is_refused(make_pack: PackFactory) -> None:
    pack = make_pack("deps")
    (pack / "requirements.txt").write_bytes(b"ok==1\n\xff\xfe\n")
    with pytest.raises(ValidationFailed, match=r"requirements.txt:2: not UTF-8 text"):
        load_pack(pack)


def test_no_dependencies_is_an_empty_list(make_pack: PackFactory, tmp_path: Path) -> None:
    pack = make_pack("plain")
    assert declared_requirements(pack, {}) == []
    write(tmp_path / "broken" / "pack.yaml", "ref: [")
    assert stored_requirements(tmp_path / "broken") is None


def test_normalize_is_order_and_whitespace_insensitive() -> None:
    assert normalize(["b==1", " a  >=2 ", "b==1", ""]) == ["a >=2", "b==1"]
