"""Simulation-based calibration of ``experiment=calibrate`` (Talts, Betancourt, Simpson, Vehtari
& Gelman 2018, "Validating Bayesian inference algorithms with simulation-based calibration",
arXiv:1804.06788): does the calibration's 90% posterior interval cover the truth 90% of the
time when the truth is drawn from the prior?

For each of ``truths`` parameter vectors drawn independently from the prior, the calibration's
own targets (same statistics, scales, held-out flags and policy-response arms) are simulated
once at the truth, exactly as a particle simulates them (``calibration.replicates`` replicates),
and these values become the observed ones of a full calibration with the invocation's settings.
Each truth's calibration is an item on the executor (it runs serially inside its worker), so
truths run side by side; a truth whose run directory already holds its result is not run again.
Per parameter, the share of truths inside the posterior interval is the coverage, with its
Clopper-Pearson 95% interval (:func:`kibs_mc.analysis.calibration.coverage_table`).

    python scripts/sbc.py --truths 30 [kibs-mc overrides of the calibration]
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from kibs_mc.analysis.robustness import scale_unit
from kibs_mc.analysis.targets import Target
from kibs_mc.config import Config, load_config
from kibs_mc.errors import ConfigError
from kibs_mc.experiments.calibrate import Simulator, parameters_of, resolve_targets
from kibs_mc.run.executor import make_executor
from kibs_mc.run.store import write_parquet

#: The file beside the truths' run directories: one row per (truth, parameter).
RESULTS = "sbc.parquet"
#: Draws of a truth whose observed statistics are undefined (NaN) before it is given up.
REDRAWS = 20


def draw_truths(config: Config, count: int) -> list[dict[str, float]]:
    """``count`` parameter vectors drawn independently from the calibration's prior (uniform,
    log-uniform or integer, as the ABC's prior), seeded from the root seed."""
    params = parameters_of(config)
    rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(0x5BC,)))
    values = scale_unit(params, rng.random((count, len(params))))
    return [{p.key: float(v[j]) for j, p in enumerate(params)} for v in values]


def observed_at(
    config: Config, simulator: Simulator, truth: dict[str, float], index: int
) -> tuple[dict[str, float], dict[str, float]] | None:
    """The targets' values at ``truth`` (one particle's simulation, seeded per truth), redrawn
    from the prior up to REDRAWS times while a fitted target is undefined; None if it stays so.
    Returns the truth used and the values."""
    params = parameters_of(config)
    rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(0x5BC, index)))
    for _ in range(REDRAWS):
        seeds = [int(s) for s in rng.integers(0, 2**63 - 1, size=simulator.seeds_needed)]
        values = simulator.statistics(truth, seeds)
        if all(np.isfinite(values[t.name]) for t in simulator.targets if t.fit):
            return truth, values
        unit = rng.random((1, len(params)))
        truth = {p.key: float(v) for p, v in zip(params, scale_unit(params, unit)[0], strict=True)}
    return None


def _target_file(targets: Sequence[Target], values: dict[str, float], path: Path) -> Path:
    """A target file with the observed values replaced (everything else as the calibration's)."""
    import yaml

    items = []
    for t in targets:
        if not (t.fit or np.isfinite(values[t.name])):
            continue  # a check undefined at this truth (no entrant observed long enough, say)
        item: dict[str, Any] = {k: v for k, v in asdict(t).items() if v not in (None, (), "")}
        item["observed"] = float(values[t.name])
        if t.intensity:
            item["intensity"] = dict(t.intensity)
        if t.per:
            item["per"] = list(t.per)
        items.append(item)
    path.write_text(yaml.safe_dump({"name": "sbc", "targets": items}, sort_keys=False))
    return path


def _calibrate_one(item: tuple[int, list[str], str]) -> tuple[int, str]:
    """One truth's calibration, serially in this process (an executor's item)."""
    from kibs_mc.experiments.pipeline import run_experiment

    index, overrides, run_dir = item
    config = load_config(overrides)
    run_experiment(config, overrides, Path(run_dir))
    return index, run_dir


def truth_rows(index: int, truth: dict[str, float], run_dir: Path) -> list[dict[str, Any]]:
    """:func:`posterior_rows` of the calibration in ``run_dir`` (its parameters.parquet and the
    last generation of its posterior.parquet)."""
    params = pl.read_parquet(run_dir / "parameters.parquet")
    posterior = pl.read_parquet(run_dir / "posterior.parquet")
    return posterior_rows(index, truth, params, posterior)


def posterior_rows(
    index: int, truth: dict[str, float], params: pl.DataFrame, posterior: pl.DataFrame
) -> list[dict[str, Any]]:
    """Per parameter: the truth, the posterior interval and narrowing (``params``, a
    parameter table), and the posterior CDF at the truth over the last generation of
    ``posterior`` (Talts et al.'s rank statistic, normalised: uniform on [0, 1] when
    calibrated)."""
    from kibs_mc.analysis.calibration import weighted_cdf

    last = posterior.filter(pl.col("generation") == posterior["generation"].max())
    w = last["weight"].to_numpy().astype(float)
    rows = []
    for r in params.iter_rows(named=True):
        x = truth[r["parameter"]]
        rows.append(
            {
                "truth_index": index,
                "parameter": r["parameter"],
                "truth": x,
                "interval_low": r["interval_low"],
                "interval_high": r["interval_high"],
                "covered": bool(r["interval_low"] <= x <= r["interval_high"]),
                "narrowing": r["narrowing"],
                "identified": r["identified"],
                "posterior_cdf": weighted_cdf(last[r["parameter"]].to_numpy().astype(float), w, x),
            }
        )
    return rows


def simulation_based_calibration(overrides: Sequence[str], truths: int, out_dir: Path) -> pl.DataFrame:
    """Run the SBC of the calibration ``overrides`` compose (``experiment=calibrate`` first)
    over ``truths`` prior draws into ``out_dir`` (``truth_<i>/`` each, ``sbc.parquet``);
    returns one row per (truth, parameter) (:func:`truth_rows`)."""
    overrides = ["experiment=calibrate", *overrides]
    config = load_config(overrides)
    if config.calibration.targets == "synthetic":
        raise ConfigError(
            "calibration.targets",
            "synthetic",
            "allowed: a target file (simulation-based calibration simulates its own observed values)",
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    targets, arms = resolve_targets(config, overrides)
    simulator = Simulator(
        config, tuple(parameters_of(config)), tuple(targets), config.calibration.replicates, tuple(arms)
    )
    todo, done = [], {}
    for i, drawn in enumerate(draw_truths(config, truths)):
        run_dir = out_dir / f"truth_{i:03d}"
        truth_file = run_dir / "truth.json"
        if (run_dir / "parameters.parquet").exists() and truth_file.exists():
            done[i] = json.loads(truth_file.read_text())
            continue
        found = observed_at(config, simulator, drawn, i)
        if found is None:
            continue
        truth, values = found
        run_dir.mkdir(parents=True, exist_ok=True)
        truth_file.write_text(json.dumps(truth))
        target_file = _target_file(targets, values, run_dir.parent / f"targets_{i:03d}.yaml")
        own = [
            *overrides,
            f"calibration.targets={target_file}",
            f"seed={config.seed + 1 + i}",
            "executor=serial",
            "tracking=none",
        ]
        todo.append((i, own, str(run_dir)))
        done[i] = truth
    with make_executor(config.executor) as executor:
        for _ in executor.map_unordered(_calibrate_one, todo):
            pass
    rows = [r for i in sorted(done) for r in truth_rows(i, done[i], out_dir / f"truth_{i:03d}")]
    frame = pl.DataFrame(rows)
    write_parquet(frame, out_dir / RESULTS)
    return frame
