"""Attune's own tables (PostgreSQL schema `attune`), as attuned reads and writes them.

`tables` describes them, `schema` finds or creates them, `rows` maps a pack to their rows
(the one place that knows Attune's columns), `writer` puts those rows into the database the
way Attune's loader does, and `reader` answers the questions the rest of attuned asks.
"""
