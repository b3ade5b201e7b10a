"""Pack environments: the runtimes a pack needs, checked before its tests, and one cached
Python virtual environment per set of dependencies, shared by every pack that declares it."""
