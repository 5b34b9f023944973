"""Typed, validated configuration: the schemas (``schema``), their composition through Hydra
(``compose``) and the declared ranges they are checked against (:mod:`kibs_mc.fields`).

The YAML groups in ``conf/`` extend the dataclasses registered here, so Hydra rejects unknown
keys and wrong types while composing; validation then checks ranges and choices that types
cannot express, so a bad value fails before any work starts, with its full key, its value and
what is allowed.
"""

from kibs_mc.config.compose import (
    CONF_DIR,
    apply_values,
    compose_config,
    group_options,
    load_config,
    replace_number,
    sweep_checks,
    with_numbers,
)
from kibs_mc.config.schema import (
    EXECUTOR_SCHEMAS,
    EXPERIMENT,
    RUN,
    SIMULATION,
    AutoConfig,
    CalibrationConfig,
    Config,
    ExperimentConfig,
    ObjectiveConfig,
    PrecisionConfig,
    RayConfig,
    RobustnessConfig,
    ScenarioConfig,
    SelectionConfig,
    SerialConfig,
    SweepConfig,
    SweepFactor,
    TrackingConfig,
    UncertainParameter,
    UncertaintyConfig,
    keys_of,
    to_config,
)

__all__ = [
    "CONF_DIR",
    "EXPERIMENT",
    "RUN",
    "SIMULATION",
    "CalibrationConfig",
    "Config",
    "EXECUTOR_SCHEMAS",
    "AutoConfig",
    "ExperimentConfig",
    "ObjectiveConfig",
    "PrecisionConfig",
    "RayConfig",
    "RobustnessConfig",
    "ScenarioConfig",
    "SelectionConfig",
    "SerialConfig",
    "SweepConfig",
    "SweepFactor",
    "TrackingConfig",
    "UncertainParameter",
    "UncertaintyConfig",
    "apply_values",
    "compose_config",
    "group_options",
    "keys_of",
    "load_config",
    "replace_number",
    "sweep_checks",
    "to_config",
    "with_numbers",
]
