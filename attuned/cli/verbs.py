"""Every verb of `attuned`, the module that implements it and its one-line help.

A table, not imports: `attuned --help` and each verb import only the module of the verb
asked for (importing all of them, and with them SQLAlchemy, cost 0.6 s a call).
"""

from __future__ import annotations

# verb -> (module under attuned.cli, help), in the order `--help` lists them
VERBS: dict[str, tuple[str, str]] = {
    "run": ("run", "run the daemon: keep the database equal to the sources"),
    "reconcile": ("reconcile", "reconcile now: --once runs one pass here, else signals the daemon"),
    "plan": ("plan", "show what the next reconcile pass would do, changing nothing"),
    "status": ("status", "show the daemon's status file"),
    "trigger": ("trigger", "ask the daemon to poll a source now (after a push)"),
    "suspend": ("suspend", "make the daemon leave a pack alone"),
    "resume": ("suspend", "let the daemon manage a suspended pack again"),
    "register": ("register", "validate, test and register a pack directory"),
    "validate": ("validate", "check a pack without touching the database"),
    "test": ("test", "run a pack's tests without registering anything"),
    "packs": ("packs", "list registered packs"),
    "show": ("show", "show a registered pack"),
    "verify-store": (
        "verify_store",
        "hash every served pack's files again and compare them with their provenance",
    ),
    "history": ("history", "test runs of a pack, newest first (filters, one case, flaky cases)"),
    "compare": ("compare", "what changed, case by case, between two test runs of a pack"),
    "unregister": ("unregister", "remove a registered pack"),
    "events": ("events", "list events and their deliveries; redeliver; deliver now"),
    "envs": ("envs", "list or garbage-collect pack environments"),
    "db": ("db", "database schema migrations"),
    "config": ("config", "check or show the configuration"),
    "verify": ("verify", "check that a git source's commit is signed by an allowed key"),
}


def help_of(verb: str) -> str:
    return VERBS[verb][1]
