"""A pack's Python environment inside the sandbox: it lives in the daemon's state directory,
which tests must not see, yet the test imports from it; the rest of the state directory
(database, other packs' environments) stays out of sight. pip builds it sandboxed too."""

from __future__ import annotations

from pathlib import Path

import pytest

from attuned.envs.python import PythonEnvironments
from attuned.envs.tester import PackTester
from attuned.settings.testing import SandboxMode
from attuned.testing import TestExecutor, TestStatus
from attuned.testing.sandbox import probe
from tests.envs.conftest import TESTING, Wheels, write_pack
from tests.envs.wheels import build_wheel

WHY_NOT = probe()
pytestmark = pytest.mark.skipif(WHY_NOT is not None, reason=f"no sandbox here: {WHY_NOT}")

LOOK_AROUND = """\
set -e
python3 -c "import attuned_fixture_lib; print('lib', attuned_fixture_lib.VERSION)"
echo "state: $(ls -A {state} | tr '\\n' ' ')"
echo "envs: $(ls -A {state}/envs | tr '\\n' ' ')"
echo "db: $(cat {state}/attuned.db 2>&1 || true)"
echo "other: $(cat {other}/secret.txt 2>&1 || true)"
if touch "$VIRTUAL_ENV/planted" 2>/dev/null; then echo "env writable"; fi
"""


@pytest.fixture
def wheels(tmp_path: Path) -> Wheels:
    build_wheel(tmp_path / "wheels", "1.0")
    return Wheels(tmp_path / "wheels")


@pytest.mark.slow
def test_a_sandboxed_test_imports_from_its_environment_and_sees_nothing_else_of_the_state(
    tmp_path: Path, wheels: Wheels
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "attuned.db").write_text("SECRET-ROW\n")
    other = state / "envs" / ("0" * 16)  # another pack's environment
    other.mkdir(parents=True)
    (other / "secret.txt").write_text("OTHER-PACK\n")
    # tmp_path is under /tmp, which the sandbox empties; show it, so only hiding can help
    settings = TESTING.model_copy(
        update={"sandbox": SandboxMode.BWRAP, "readable_paths": (tmp_path,)}
    )
    envs = PythonEnvironments(state / "envs", wheels.settings(), settings, hidden_paths=[state])
    pack = write_pack(
        tmp_path / "src",
        deps=["attuned_fixture_lib==1.0"],
        runners={
            "unit": {"type": "unittest", "entry_point": "tests/test_lib.py"},
            "look": {"type": "script", "entry_point": "tests/look.sh"},
        },
        files={"tests/look.sh": LOOK_AROUND.format(state=state, other=other)},
    )
    executor = TestExecutor(settings, hidden_paths=[state])

    done = PackTester(executor, envs).run(pack.path, pack.manifest)

    assert done.result.status is TestStatus.PASSED, done.result.test_suites
    env_dir = envs.path_for(envs.key_for(["attuned_fixture_lib==1.0"]))
    stdout = done.result.test_suites[1].stdout or ""
    assert "lib 1.0" in stdout
    assert "state: envs \n" in stdout  # the database is not even listed
    assert f"envs: {env_dir.name} \n" in stdout  # nor the other environment
    assert "SECRET" not in stdout and "OTHER-PACK" not in stdout
    assert "env writable" not in stdout and not (env_dir / "planted").exists()
