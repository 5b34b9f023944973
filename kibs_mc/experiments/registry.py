"""The registry of experiment kinds."""

from __future__ import annotations

from kibs_mc.config import Config
from kibs_mc.errors import ConfigError
from kibs_mc.experiments.calibrate import Calibrate
from kibs_mc.experiments.compare import Compare, Single
from kibs_mc.experiments.kind import ExperimentKind
from kibs_mc.experiments.mix import Mix
from kibs_mc.experiments.robustness import Robustness
from kibs_mc.experiments.sweep import Sweep

#: Every experiment kind, by the name ``experiment.kind`` takes.
KINDS: dict[str, ExperimentKind] = {
    k.name: k for k in (Single(), Compare(), Sweep(), Calibrate(), Robustness(), Mix())
}


def get_kind(config: Config) -> ExperimentKind:
    """The kind ``experiment.kind`` names, its settings checked (ConfigError otherwise)."""
    kind = KINDS.get(config.experiment.kind)
    if kind is None:
        raise ConfigError(
            "experiment.kind", config.experiment.kind, "allowed: one of " + ", ".join(repr(k) for k in KINDS)
        )
    kind.check(config)
    return kind
