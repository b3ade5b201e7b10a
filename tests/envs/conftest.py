"""Pack environments for real: wheels written by hand into a local directory, pip installing
from it with --no-index (no network), environments shared by the tests of a session."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from attuned.envs.python import PythonEnvironments
from attuned.pack.loader import Pack, load_pack
from attuned.settings.envs import EnvironmentSettings
from attuned.settings.testing import ExecutorSettings
from tests.envs.wheels import build_wheel

TESTING = ExecutorSettings(kill_grace=0.3, default_timeout=60)

# a unittest, a pytest and a script runner, each importing the library
IMPORTS_LIB = {
    "tests/test_lib.py": """\
        import unittest

        import attuned_fixture_lib


        class Lib(unittest.TestCase):
            def test_version(self):
                self.assertEqual(attuned_fixture_lib.VERSION, "{version}")
    """,
    "tests/pytest_lib.py": """\
        import attuned_fixture_lib


        def test_version():
            assert attuned_fixture_lib.VERSION == "{version}"
    """,
    "tests/run.sh": """\
        set -e
        python3 -c "import attuned_fixture_lib, sys; print('lib', attuned_fixture_lib.VERSION)"
        echo "env $VIRTUAL_ENV"
    """,
}
RUNNERS = {
    "unit": {"type": "unittest", "entry_point": "tests/test_lib.py"},
    "py": {"type": "pytest", "entry_point": "tests/pytest_lib.py"},
    "shell": {"type": "script", "entry_point": "tests/run.sh"},
}


@dataclass(frozen=True)
class Wheels:
    directory: Path

    def settings(self, **changes: Any) -> EnvironmentSettings:
        fields: dict[str, Any] = {
            "find_links": (str(self.directory),),
            "no_index": True,
            "create_timeout": 120,
        }
        return EnvironmentSettings(**(fields | changes))


@pytest.fixture(scope="session")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Wheels:
    """attuned_fixture_lib 1.0 and 2.0."""
    directory = tmp_path_factory.mktemp("wheels")
    build_wheel(directory, "1.0")
    build_wheel(directory, "2.0")
    return Wheels(directory)


@pytest.fixture(scope="session")
def shared_envs(tmp_path_factory: pytest.TempPathFactory, wheels: Wheels) -> PythonEnvironments:
    """One environments root for the session: each dependency set is built once (~5 s)."""
    return PythonEnvironments(tmp_path_factory.mktemp("envs"), wheels.settings(), TESTING)


def write_pack(
    root: Path,
    ref: str = "uses-lib",
    *,
    version: str = "1.0",
    deps: list[str] | None = None,
    requirements_txt: str | None = None,
    runners: Mapping[str, Any] | None = None,
    files: Mapping[str, str] | None = None,
    **manifest: Any,
) -> Pack:
    """A pack whose tests import attuned_fixture_lib and expect `version` of it."""
    pack_dir = root / ref
    data: dict[str, Any] = {
        "ref": ref,
        "label": ref,
        "description": "imports attuned_fixture_lib",
        "version": "1.0.0",
        "testing": {"enabled": True, "runners": dict(runners or RUNNERS)},
        **manifest,
    }
    if deps is not None:
        data["meta"] = {"python_dependencies": deps}
    contents = {k: v.format(version=version) for k, v in IMPORTS_LIB.items()} | dict(files or {})
    if requirements_txt is not None:
        contents["requirements.txt"] = requirements_txt
    for relative, text in contents.items():
        path = pack_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    (pack_dir / "pack.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return load_pack(pack_dir)
