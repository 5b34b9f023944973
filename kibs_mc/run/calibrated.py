"""A finished calibration's files, read by other experiments and checked like user input.

``calibration.use=<run dir>`` sets the posterior point of ``calibration.json``, and
``uncertainty.posterior=<run dir>`` draws worlds from the weighted particles of
``posterior.parquet``. Both files come from another run and may have been edited, truncated or
copied from elsewhere, so each value is checked before it is used: the point may set only the
calibration's own parameters (those its ``config.yaml`` lists, with their priors), each a
finite number inside its prior; the particles' values likewise, and their weights finite,
non-negative and of positive total. Anything else ends the run before any work with one
:class:`~kibs_mc.errors.ConfigError` naming the file, the key, the value and what is allowed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import polars as pl

from kibs_mc.config import UncertainParameter
from kibs_mc.errors import ConfigError

#: The calibration's posterior mean and MAP (``{"mean": {key: value}, "map": {...}}``).
POINT_FILE = "calibration.json"
#: Every generation's particles: one column per parameter, ``weight`` and ``generation``.
POSTERIOR_FILE = "posterior.parquet"
#: The calibration's resolved configuration, which names its parameters and their priors.
CONFIG_FILE = "config.yaml"


def _not_a_calibration(setting: str, run_dir: str | Path, needs: str) -> ConfigError:
    return ConfigError(
        setting, str(run_dir), f"allowed: a finished experiment=calibrate run directory (with {needs})"
    )


def calibrated_parameters(run_dir: str | Path, setting: str) -> list[UncertainParameter]:
    """The parameters a calibration fitted, with their priors, from its ``config.yaml``
    (``calibration.parameters``, else its uncertainty space's). ``setting`` names the
    override that pointed here, for the message."""
    from omegaconf import OmegaConf

    path = Path(run_dir).expanduser()
    try:
        saved = OmegaConf.to_container(OmegaConf.load(path / CONFIG_FILE))
        assert isinstance(saved, dict)
        listed = (
            (saved.get("calibration") or {}).get("parameters")
            or (saved.get("uncertainty") or {}).get("parameters")
            or []
        )
        parameters = [UncertainParameter(**dict(p)) for p in listed]
        for i, p in enumerate(parameters):
            p.check(f"{path / CONFIG_FILE}: calibration.parameters[{i}]")
    except ConfigError:
        raise
    except Exception:  # missing, unreadable or not a calibration's: one message for all  # noqa: BLE001
        raise _not_a_calibration(
            setting, run_dir, f"{POINT_FILE}, {POSTERIOR_FILE} and {CONFIG_FILE}"
        ) from None
    if not parameters:
        raise _not_a_calibration(setting, run_dir, f"a {CONFIG_FILE} that lists calibrated parameters")
    return parameters


def _prior(p: UncertainParameter) -> str:
    return f"{p.key} in [{p.low:g}, {p.high:g}]"


def check_value(where: str, p: UncertainParameter, value: Any) -> float:
    """``value`` as a float, if it is a finite number inside ``p``'s prior (ConfigError
    naming ``where`` otherwise)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(where, value, f"allowed: a finite number inside the prior, {_prior(p)}")
    if not p.low <= value <= p.high:
        raise ConfigError(where, value, f"allowed: a value inside the prior, {_prior(p)}")
    return float(value)


def read_point(run_dir: str | Path, point: str) -> dict[str, float]:
    """The calibration's posterior ``point`` (``mean`` or ``map``) from ``calibration.json``:
    one finite value inside its prior for each calibrated parameter, nothing else."""
    parameters = {p.key: p for p in calibrated_parameters(run_dir, "calibration.use")}
    path = Path(run_dir).expanduser() / POINT_FILE
    try:
        values = json.loads(path.read_text())[point]
    except (OSError, ValueError, KeyError, TypeError):
        raise _not_a_calibration("calibration.use", run_dir, f"a readable {POINT_FILE}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: {point}", values, "allowed: an object of calibrated parameter values")
    allowed = ", ".join(parameters)
    for key in values:
        if key not in parameters:
            raise ConfigError(
                f"{path}: {point}.{key}",
                values[key],
                f"allowed: only the calibrated parameters ({allowed}); a calibration sets nothing else",
            )
    missing = [key for key in parameters if key not in values]
    if missing:
        raise ConfigError(
            f"{path}: {point}.{missing[0]}",
            None,
            f"allowed: a value for every calibrated parameter ({allowed})",
        )
    return {key: check_value(f"{path}: {point}.{key}", parameters[key], values[key]) for key in parameters}


def read_posterior(run_dir: str | Path) -> tuple[list[UncertainParameter], pl.DataFrame]:
    """The calibrated parameters and the last generation's particles (one column per
    parameter and ``weight``), every value checked: parameters finite and inside their
    priors, weights finite, non-negative and of positive total."""
    parameters = calibrated_parameters(run_dir, "uncertainty.posterior")
    path = Path(run_dir).expanduser() / POSTERIOR_FILE
    keys = [p.key for p in parameters]
    try:
        posterior = pl.read_parquet(path)
        last = posterior.filter(pl.col("generation") == posterior["generation"].max())
        last = last.select(*keys, "weight").cast(pl.Float64)
    except Exception:  # noqa: BLE001 - missing, unreadable, or without the columns
        raise _not_a_calibration(
            "uncertainty.posterior",
            run_dir,
            f"a readable {POSTERIOR_FILE} with the columns {', '.join(keys)}, weight",
        ) from None
    if last.height == 0:
        raise ConfigError(f"{path}: weight", [], "allowed: at least one particle")
    indexed = last.with_row_index("particle")
    for p in parameters:
        ok = pl.col(p.key).is_finite() & pl.col(p.key).is_between(p.low, p.high)
        bad = indexed.filter(~ok.fill_null(False))
        if bad.height:
            check_value(f"{path}: {p.key}[{bad['particle'][0]}]", p, bad[p.key][0])
    bad = indexed.filter(~(pl.col("weight").is_finite() & (pl.col("weight") >= 0)).fill_null(False))
    if bad.height:
        raise ConfigError(
            f"{path}: weight[{bad['particle'][0]}]", bad["weight"][0], "allowed: a finite number >= 0"
        )
    total = float(last["weight"].sum())
    if not total > 0:
        raise ConfigError(f"{path}: sum(weight)", total, "allowed: weights of positive total")
    return parameters, last
