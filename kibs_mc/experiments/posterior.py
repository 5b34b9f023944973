"""``calibration.use=<run dir>``: a finished calibration's posterior point (mean or MAP) set on
any other experiment before it is planned (docs/calibration.md)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kibs_mc.config import Config, with_numbers
from kibs_mc.errors import ConfigError
from kibs_mc.run import calibrated

#: What a finished calibration leaves for ``calibration.use`` (posterior mean and MAP).
POINT_FILE = calibrated.POINT_FILE


def set_values(config: Config, values: dict[str, float], what: str) -> Config:
    """``config`` with numeric keys set (ConfigError naming ``what`` and the key otherwise)."""
    out = with_numbers(config, [f"{k}={v!r}" for k, v in values.items()])
    if out is None:
        for key, value in values.items():
            if with_numbers(config, [f"{key}={value!r}"]) is None:
                raise ConfigError(
                    f"{what}.{key}" if what else key,
                    value,
                    "allowed: a numeric key of the configuration (e.g. model.imitation_rate) "
                    "with a value its field accepts",
                )
    assert out is not None
    return out


def posterior_point(config: Config, overrides: Sequence[str]) -> tuple[Config, list[str]]:
    """``calibration.use=<run dir>``: the configuration and overrides with the calibration's
    posterior mean or MAP (``calibration.point``) set, for any other experiment."""
    use = config.calibration.use
    if use is None:
        return config, list(overrides)
    values = calibrated.read_point(use, config.calibration.point)  # checked: the calibration's own parameters
    out = set_values(config, values, "calibration.use")
    return out, list(overrides) + [f"{k}={getattr_number(out, k)!r}" for k in values]


def getattr_number(config: Any, key: str) -> float:
    """The value at a dotted key (list elements as ``key[i]``) of a tree of dataclasses."""
    node = config
    for part in key.replace("]", "").split("."):
        name, _, index = part.partition("[")
        node = getattr(node, name)
        if index:
            node = node[int(index)]
    return node
