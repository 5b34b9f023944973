"""Errors that end a run with one clear message and no traceback: exit status 2 for bad input
(:class:`UserError`), 1 for work that failed for good (:class:`ExecutionError`)."""

from __future__ import annotations

import re
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


def first_line(exc: BaseException) -> str:
    """The first line of an error's message, without terminal colour codes (the type's name
    when the message is empty); for a failed Ray task, of the task's own exception (callers
    name the type, e.g. ``RayTaskError(ValueError)``)."""
    cause = getattr(exc, "cause", None)  # a RayTaskError wraps the task's exception
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(cause if isinstance(cause, BaseException) else exc)).strip()
    return text.splitlines()[0] if text else type(exc).__name__
