"""Attune's own tables (PostgreSQL schema `attune`), as attuned reads and writes them.

`tables` describes them, `schema` finds or creates them, `rows` maps a pack to their rows
(the one place that knows Attune's columns; `execution_rows` does the same for a test run),
`writer` puts those rows into the database the way Attune's loader does (with `runtimes`
resolving runner types and `removals` deciding what may go), and `reader` answers the
questions the rest of attuned asks.
"""
