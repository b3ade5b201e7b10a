"""The one place that registers and unregisters packs (the CLI and the daemon both call it).

Order of a registration, chosen so that a failure at any step leaves nothing behind:
validate -> check conflict and dependencies -> copy into an unserved version directory ->
run the tests on that copy -> one transaction (pack, components, test execution) ->
swap the store symlink. Tests run before the transaction, so a rollback is "never commit";
the test execution is stored either way, as the audit trail.

`core` holds the `Registry` and its registration steps, `upkeep` removal and upkeep,
`verdict` what the tests decide, `trial` staging and running them, `announce` the events
and log lines of each change, `dependencies` what must be registered first, `hooks` the
cluster's duties in each transaction and `wiring` the parts built from the configuration.
"""

from attuned.registry.core import Registration, Registry
from attuned.registry.hooks import CommitHooks
from attuned.registry.verdict import EnvironmentNotReady, Outcome, TestsRolledBack, Trigger

__all__ = [
    "CommitHooks",
    "EnvironmentNotReady",
    "Outcome",
    "Registration",
    "Registry",
    "TestsRolledBack",
    "Trigger",
]
