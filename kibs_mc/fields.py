"""Declared settings: a dataclass field with its allowed range or choices, and the check.

Every schema of kibs-mc (the pipeline's in ``kibs_mc.config``, each model's in its own module)
declares its ranges next to the field with :func:`setting`; :func:`validate` then checks them, so
a bad value fails before any work starts with its full key, its value and what is allowed. A leaf
module (it imports only ``kibs_mc.errors``) so that models can declare their schemas without
importing the configuration package that composes them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import field
from typing import Any

from omegaconf import MISSING

from kibs_mc.errors import ConfigError

__all__ = ["setting", "validate"]


def setting(  # noqa: PLR0913 - keyword-only options of one declaration
    default: Any = MISSING,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    choices: Sequence[Any] | None = None,
    default_factory: Any = None,
    hint: str | None = None,
) -> Any:
    """A dataclass field with its allowed range or choices, checked by :func:`validate`;
    ``hint`` ends the refusal's "allowed" text (where the allowed value lies elsewhere)."""
    meta = {"ge": ge, "gt": gt, "le": le, "lt": lt, "choices": choices, "hint": hint}
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


def _allowed_text(meta: dict[str, Any], integer: bool = False) -> str:
    if meta.get("choices") is not None:
        hint = f" ({meta['hint']})" if meta.get("hint") else ""
        return "allowed: one of " + ", ".join(repr(c) for c in meta["choices"]) + hint

    def fmt(x: float) -> str:
        return str(int(x)) if integer else f"{x:g}"

    low = (
        f"[{fmt(meta['ge'])}"
        if meta.get("ge") is not None
        else (f"({fmt(meta['gt'])}" if meta.get("gt") is not None else "(-inf")
    )
    high = (
        f"{fmt(meta['le'])}]"
        if meta.get("le") is not None
        else (f"{fmt(meta['lt'])})" if meta.get("lt") is not None else "inf)")
    )
    kind = "an integer" if integer else "a finite number"
    return f"allowed: {kind} in {low}, {high}"


def _check_field(key: str, value: Any, meta: dict[str, Any]) -> None:
    if value is None:
        return
    if meta.get("choices") is not None:
        if value not in meta["choices"]:
            raise ConfigError(key, value, _allowed_text(meta))
        return
    bounds = [meta.get(b) for b in ("ge", "gt", "le", "lt")]
    if all(b is None for b in bounds) or isinstance(value, bool):
        return
    integer = isinstance(value, int)
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(key, value, _allowed_text(meta))
    ok = (
        (meta["ge"] is None or value >= meta["ge"])
        and (meta["gt"] is None or value > meta["gt"])
        and (meta["le"] is None or value <= meta["le"])
        and (meta["lt"] is None or value < meta["lt"])
    )
    if not ok:
        raise ConfigError(key, value, _allowed_text(meta, integer))


def validate(obj: Any, path: str = "") -> None:
    """Check every declared range and choice, then each dataclass's own ``check`` method."""
    if dataclasses.is_dataclass(obj):
        for f in dataclasses.fields(obj):
            key = f"{path}.{f.name}" if path else f.name
            value = getattr(obj, f.name)
            _check_field(key, value, dict(f.metadata))
            validate(value, key)
        check = getattr(obj, "check", None)
        if callable(check):
            check(path)
    elif isinstance(obj, list):
        for i, item in enumerate(obj):
            validate(item, f"{path}[{i}]")
