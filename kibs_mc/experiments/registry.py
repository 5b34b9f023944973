"""The registry of experiment kinds."""

from __future__ import annotations

import importlib.util

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
    """The kind ``experiment.kind`` names, installed and its settings checked (ConfigError
    otherwise)."""
    kind = KINDS.get(config.experiment.kind)
    if kind is None:
        raise ConfigError(
            "experiment.kind", config.experiment.kind, "allowed: one of " + ", ".join(repr(k) for k in KINDS)
        )
    check_installed(kind)
    kind.check(config)
    return kind


def check_installed(kind: ExperimentKind) -> None:
    """The optional dependencies ``kind`` needs are installed (ConfigError saying how, else)."""
    missing = [m for m in kind.requires if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(
            "experiment.kind",
            kind.name,
            f"allowed: a kind whose optional dependencies are installed ({', '.join(missing)} is "
            f"missing: pip install 'kibs-mc[{kind.name}]')",
        )
