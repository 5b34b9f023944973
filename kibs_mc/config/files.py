"""YAML files from the user, read as data and nothing else.

PyYAML's safe loader already refuses tags that build Python objects (``!!python/...``); this
reader also reads numbers in scientific notation without a decimal point (``2e-1``) as numbers,
as YAML 1.2 and OmegaConf do (YAML 1.1 reads them as text), and refuses a file whose aliases
expand to an absurd size (an "alias bomb": a few lines that stand for billions of values) before
anything walks it. Every failure is one :class:`~kibs_mc.errors.ConfigError` naming the file.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from kibs_mc.errors import ConfigError

#: Most values (scalars, list items, mapping entries) a file may stand for once its aliases are
#: expanded; kibs-mc's own files have hundreds.
MOST_VALUES = 1_000_000

_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?(?:[eE][-+]?[0-9]+)?
    |[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)


class _Loader(yaml.SafeLoader):
    """The safe loader with YAML 1.2's floats (``1e-3``, ``2E5``)."""


_Loader.yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


def expanded_size(data: Any, limit: int = MOST_VALUES) -> int:
    """How many values ``data`` stands for with its shared (aliased) parts counted each time
    they occur; counting stops above ``limit``."""
    memo: dict[int, int] = {}

    def size(node: Any) -> int:
        if not isinstance(node, dict | list):
            return 1
        if id(node) in memo:
            return memo[id(node)]
        memo[id(node)] = limit + 1  # a node inside itself (a recursive alias) is unbounded
        items = list(node.values()) if isinstance(node, dict) else node
        total = 1
        for item in items:
            total += size(item)
            if total > limit:
                break
        memo[id(node)] = total
        return total

    return size(data)


def read_yaml(path: Path, key: str) -> Any:
    """The data of the YAML file ``path``, which the setting ``key`` names (for messages)."""
    try:
        data = yaml.load(Path(path).read_text(), Loader=_Loader)  # noqa: S506 - a safe loader
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(
            key, str(path), f"allowed: a readable YAML file of plain values ({_why(exc)})"
        ) from None
    if expanded_size(data) > MOST_VALUES:
        raise ConfigError(
            key,
            str(path),
            f"allowed: a YAML file of at most {MOST_VALUES:,} values once its aliases are expanded "
            "(this one stands for more: an alias bomb?)",
        )
    return data


def _why(exc: BaseException) -> str:
    """One line on what is wrong with a file (PyYAML's message and where, or the OS's)."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        return f"{where}{exc.problem or exc.context or type(exc).__name__}"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
