"""Errors that end a run with one clear message and no traceback: exit status 2 for bad input
(:class:`UserError`), 1 for work that failed for good (:class:`ExecutionError`)."""

from __future__ import annotations

import re
from typing import Any


class UserError(Exception):
    """Bad input from the user: configuration, files, counts. The CLI exits with status 2."""


#: Longest shown value of a refused setting; a longer one is cut (e.g. a YAML alias bomb, whose
#: full text would be hundreds of megabytes). A whole message is cut at MESSAGE characters, after
#: its key and value.
SHOWN_VALUE = 200
MESSAGE = 1000


def shown(value: Any, limit: int = SHOWN_VALUE) -> str:
    """``repr(value)`` on one line and at most about ``limit`` characters: nested containers are
    abbreviated without being printed whole (``reprlib``), long text is cut with its length."""
    import reprlib

    short = reprlib.Repr()
    short.maxlevel, short.maxlist, short.maxtuple, short.maxdict, short.maxset = 3, 8, 8, 8, 8
    short.maxstring = short.maxother = short.maxlong = limit
    text = repr(value) if isinstance(value, str | int | float | bool | type(None)) else short.repr(value)
    text = text.replace("\n", "\\n")
    return text if len(text) <= limit else f"{text[: limit - 10]}... (cut)"


class ConfigError(UserError):
    """A configuration value that is not allowed, named by its full key; the value is shown on
    one line of bounded length (:func:`shown`)."""

    def __init__(self, key: str, value: Any, allowed: str, hint: str = "") -> None:
        self.key = key
        self.value = value
        self.allowed = allowed
        message = f"bad configuration: {shown(key)[1:-1]}={shown(value)} is not allowed; {allowed}."
        if hint:
            message += f" {hint}"
        super().__init__(message if len(message) <= MESSAGE else message[: MESSAGE - 10] + "... (cut)")


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


def redact_environment(message: str, sources: str) -> str:
    """``message`` without the values of the environment variables that ``sources`` (the
    overrides, a configuration's unresolved text) reads through ``${oc.env:NAME}``: each is
    shown as the interpolation instead (a token, a password or the whole ``PATH`` stays out of
    terminals and logs)."""
    import os

    for name in sorted(set(re.findall(r"\$\{oc\.env:([A-Za-z_][A-Za-z0-9_]*)", sources))):
        value = os.environ.get(name, "")
        if len(value) >= 3:  # shorter ones would blank unrelated words
            message = message.replace(value, "${oc.env:" + name + "}")
    return message
