"""Errors the supervisor reports to a user; the CLI maps each to an exit code."""

from __future__ import annotations


class CorralError(Exception):
    """Base class of every error that the CLI shows as one line."""

    exit_code = 1


class ConfigError(CorralError, ValueError):
    """A configuration that cannot be used; nothing was started.

    `place` is a YAML position (`line 4, column 7`) or a key path such as
    `services.api.readiness.http`; `hint` is the fix where one is known.
    """

    exit_code = 2

    def __init__(self, path: str, place: str, message: str, hint: str = ""):
        self.path = path
        self.place = place
        self.message = message
        self.hint = hint
        where = f"{path}: {place}" if place else path
        tail = f" ({hint})" if hint else ""
        super().__init__(f"{where}: {message}{tail}")


class UsageError(CorralError, ValueError):
    """A command line that cannot be carried out as given."""

    exit_code = 2


class NotRunning(CorralError):
    """No supervisor is running for the configuration a command names."""

    exit_code = 1


class StartFailed(CorralError):
    """One or more services could not be brought up."""

    exit_code = 1
