"""Errors raised by the registry library; all derive from RegistryError."""

from __future__ import annotations


class RegistryError(Exception):
    """Base class of every error the registry raises."""


class RegistryCorrupt(RegistryError, ValueError):
    """A registry file that cannot be read as a registry.

    Keeps the file, the JSON line and column (1-based, 0 when the fault is
    not at one place) and the reason as fields.
    """

    def __init__(self, path: str, reason: str, line: int = 0, column: int = 0):
        self.path = path
        self.reason = reason
        self.line = line
        self.column = column
        where = f"{path}:{line}:{column}" if line else path
        super().__init__(f"{where}: corrupt registry: {reason}")


class RegistryUnavailable(RegistryError, TimeoutError):
    """A lock or a backend could not be reached in time."""

    def __init__(self, what: str, waited: float, reason: str = ""):
        self.what = what
        self.waited = waited
        self.reason = reason
        detail = f": {reason}" if reason else ""
        super().__init__(f"{what} not reachable after {waited:g} s{detail}")


class RegistryLocationError(RegistryError, ValueError):
    """A registry location (path or URL) that no backend can open."""

    def __init__(self, location: str, reason: str):
        self.location = location
        self.reason = reason
        super().__init__(f"{location}: {reason}")


class RegistryWriteError(RegistryError, OSError):
    """The registry could not be written; the previous content is intact."""

    def __init__(self, path: str, reason: str):
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: cannot write registry: {reason}")


class WatcherStopped(RegistryError):
    """Raised by Watcher.next() once the watcher has been stopped."""

    def __init__(self, service: str = ""):
        self.service = service
        super().__init__(
            f"watcher of {service!r} stopped" if service else "watcher stopped"
        )
