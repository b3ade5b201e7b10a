"""One Python virtual environment per set of dependencies, built once and shared.

```
<environments.path>/                 default <state_dir>/envs
  3f2a9c0d1e2b4a5f/                  a venv; the name is the first 16 hex digits of its key
    .attuned-env.json                written last: without it the directory is incomplete
    .attuned-last-used               touched whenever a pack's tests use it
  .locks/3f2a9c0d1e2b4a5f.lock       flock: shared while used, exclusive while built/removed
  .build-3f2a9c0d1e2b4a5f-xxxx/      HOME, TMPDIR and requirements of a build in progress
  .pip-cache/                        pip's download and wheel cache, shared by all builds
```

The key is a sha256 over the interpreter (as configured, its real path and version), the
normalized requirements, where pip looks (credentials redacted, so a rotated token does not
rebuild everything) and the runner packages it inherits. Packs with the same requirements
share one environment. An environment is built at its final path (console scripts embed it in
their shebangs) by `python -m venv` and `pip install`, in a scrubbed environment, in its own
process session with a deadline, and under bubblewrap (with network) when tests are
sandboxed: pip runs the build code of source distributions, which packs choose.

The modules, bottom up: `layout` (the names above), `locks` (the flock), `keys` (the
interpreter and the key), `commands` (how a build command runs), `build` (the steps of one
build) and `store` (`PythonEnvironments`: use, list, collect).
"""

from attuned.envs.python.store import PythonEnvironments

__all__ = ["PythonEnvironments"]
