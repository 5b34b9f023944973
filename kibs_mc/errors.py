"""Errors that end a run with exit status 2 and one clear message (no traceback)."""

from __future__ import annotations

from typing import Any


class UserError(Exception):
    """Bad input from the user: configuration, files, counts. The CLI exits with status 2."""


class ConfigError(UserError):
    """A configuration value that is not allowed, named by its full key."""

    def __init__(self, key: str, value: Any, allowed: str, hint: str = "") -> None:
        self.key = key
        self.value = value
        self.allowed = allowed
        message = f"bad configuration: {key}={value!r} is not allowed; {allowed}."
        if hint:
            message += f" {hint}"
        super().__init__(message)


class ExecutionError(Exception):
    """Work that failed for good (e.g. a task whose retries are spent). The CLI exits with
    status 1 and one message; completed chunks stay on disk for ``resume=true``."""
