"""The operator's settings, one pydantic model per part (git sources, test executor, pack
environments, notifications), kept below `attuned.config` and the parts that use them, so
the config can name every one without importing the machinery behind it."""
