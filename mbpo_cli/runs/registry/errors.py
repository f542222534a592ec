"""What can go wrong with the registry, as callers catch it: a problem the user can act on, a database that cannot be
reached for now, and a SQLite file deleted or replaced under a running process."""


class RegistryError(Exception):
    """A registry problem that the user can act on; the message is one line."""


class RegistryUnavailable(RegistryError):
    """The database cannot be reached for now (a server down or restarting, a network cut, a SQLite file locked
    past every retry): the same write may succeed later."""


class RegistryLost(RuntimeError):
    """The registry's database file was deleted or replaced while this process used it (one line; exit 1)."""
