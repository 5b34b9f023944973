"""``calibration.use``: a calibration's posterior point (mean or MAP) set on any other experiment
before it is planned (docs/calibration.md): the shipped posterior of the preset the run
simulates (``shipped``, the default; :mod:`kibs_mc.run.shipped`), a finished calibration's run
directory, or none (``hand_set``: the model's hand-set values)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kibs_mc.config import Config, with_numbers
from kibs_mc.errors import ConfigError
from kibs_mc.run import calibrated, shipped

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


def point_values(config: Config) -> tuple[dict[str, float], str | None]:
    """The calibrated values ``calibration.use`` sets and where they come from, in words:
    ``shipped`` (the default), the shipped posterior of the preset the run simulates
    (``conf/posterior/<preset>.json``; none when there is none or it is stale); a run
    directory, that calibration's; ``hand_set`` (or null), none: ({}, None)."""
    use = config.calibration.use
    if use is None or use == shipped.HAND_SET:
        return {}, None
    if use == shipped.SHIPPED:
        found, _ = shipped.usable(config)
        if found is None:
            return {}, None
        return dict(found.point[config.calibration.point]), found.words()
    values = calibrated.read_point(use, config.calibration.point)  # checked: the calibration's own parameters
    return values, f"the calibration in `{use}`"


def hand_set_words(config: Config) -> str:
    """The parameter values of a run without a calibration, in words, and why it has none."""
    why = ""
    if config.calibration.use == shipped.SHIPPED:
        why = f" ({shipped.usable(config)[1]})"
    return (
        f"the model's hand-set values (docs/ODD.md), not calibrated{why}; the ranking is conditional "
        "on them and can change once they are calibrated (docs/calibration.md)"
    )


def posterior_point(config: Config, overrides: Sequence[str]) -> tuple[Config, list[str]]:
    """``calibration.use``: the configuration and overrides with the calibration's posterior
    mean or MAP (``calibration.point``) set, for any other experiment (:func:`point_values`).
    A key the invocation sets itself keeps the value it was given: the calibration fills in
    what the user left to it."""
    given = {o.split("=", 1)[0].lstrip("+~") for o in overrides if "=" in o}
    values = {k: v for k, v in point_values(config)[0].items() if k not in given}
    if not values:
        return config, list(overrides)
    out = set_values(config, values, "calibration.use")
    return out, list(overrides) + [f"{k}={getattr_number(out, k)!r}" for k in values]


def point_overrides(config: Config) -> list[str]:
    """The overrides :func:`posterior_point` adds to a configuration it prepared (``config``):
    a scenario is not named after them (a key the invocation set to a value of its own is)."""
    values, _ = point_values(config)
    return [f"{k}={getattr_number(config, k)!r}" for k, v in values.items() if getattr_number(config, k) == v]


def getattr_number(config: Any, key: str) -> float:
    """The value at a dotted key (list elements as ``key[i]``) of a tree of dataclasses."""
    node = config
    for part in key.replace("]", "").split("."):
        name, _, index = part.partition("[")
        node = getattr(node, name)
        if index:
            node = node[int(index)]
    return node
