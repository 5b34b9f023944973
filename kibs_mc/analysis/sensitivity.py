"""Sampled scenarios and global sensitivity analysis (``experiment=lever_sweep``).

Points come from ``scipy.stats.qmc`` (Latin hypercube), from SALib's Saltelli sampler (Sobol
indices) or from a grid; each point becomes a scenario whose overrides set the factors. After
the run, each outcome's scenario means feed SALib: first-order (S1) and total (ST) Sobol
indices (Saltelli et al. 2010, Comput. Phys. Commun. 181:259-270), or first-order RBD-FAST
indices for a Latin hypercube (Tarantola et al. 2006). Replicate noise in the scenario means
inflates the indices' uncertainty; their bootstrap CIs (``*_conf``) say how much.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import polars as pl

from kibs_mc.config import SweepConfig


def _problem(sweep: SweepConfig) -> dict:
    return {
        "num_vars": len(sweep.factors),
        "names": [f.key for f in sweep.factors],
        "bounds": [[f.low, f.high] for f in sweep.factors],
    }


def sample_points(sweep: SweepConfig, seed: int) -> np.ndarray:
    """The sample, one row per point, one column per factor."""
    problem = _problem(sweep)
    lows = np.array([f.low for f in sweep.factors])
    highs = np.array([f.high for f in sweep.factors])
    if sweep.method == "sobol":
        from SALib.sample import sobol

        return sobol.sample(problem, sweep.samples, calc_second_order=False, seed=seed % 2**32)
    if sweep.method == "lhs":
        from scipy.stats import qmc

        sampler = qmc.LatinHypercube(d=len(sweep.factors), seed=np.random.default_rng(seed))
        unit = sampler.random(sweep.samples)
        return qmc.scale(unit, lows, highs)
    if sweep.method == "grid":
        axes = [np.linspace(f.low, f.high, sweep.samples) for f in sweep.factors]
        return np.array(list(itertools.product(*axes)))
    return np.empty((0, len(sweep.factors)))


def point_scenarios(sweep: SweepConfig, seed: int) -> list[tuple[str, list[str]]]:
    """(name, overrides) of every sampled point."""
    points = sample_points(sweep, seed)
    width = len(str(len(points)))
    return [
        (f"point-{i:0{width}d}", [f"{f.key}={float(v):.6g}" for f, v in zip(sweep.factors, row, strict=True)])
        for i, row in enumerate(points)
    ]


def sensitivity(rows: pl.DataFrame, sweep: SweepConfig, seed: int, outcomes: Sequence[str]) -> pl.DataFrame:
    """Sensitivity indices of each outcome's scenario mean to each factor (empty for grids)."""
    if sweep.method not in ("sobol", "lhs"):
        return pl.DataFrame()
    problem = _problem(sweep)
    points = sample_points(sweep, seed)
    names = [name for name, _ in point_scenarios(sweep, seed)]
    means = rows.filter(pl.col("scenario").is_in(names)).group_by("scenario").agg(
        [pl.col(o).cast(pl.Float64).mean() for o in outcomes])
    means = pl.DataFrame({"scenario": names}).join(means, on="scenario", how="left", maintain_order="left")
    records = []
    for outcome in outcomes:
        y = means[outcome].to_numpy()
        if np.any(~np.isfinite(y)) or np.std(y) == 0:
            continue  # no variation (or missing points): indices undefined
        if sweep.method == "sobol":
            from SALib.analyze import sobol

            r = sobol.analyze(problem, y, calc_second_order=False, seed=seed % 2**32)
            for i, factor in enumerate(problem["names"]):
                records.append({"outcome": outcome, "factor": factor, "S1": r["S1"][i],
                                "S1_conf": r["S1_conf"][i], "ST": r["ST"][i], "ST_conf": r["ST_conf"][i]})
        else:
            from SALib.analyze import rbd_fast

            r = rbd_fast.analyze(problem, points, y, seed=seed % 2**32)
            for i, factor in enumerate(problem["names"]):
                records.append({"outcome": outcome, "factor": factor, "S1": r["S1"][i],
                                "S1_conf": r["S1_conf"][i], "ST": None, "ST_conf": None})
    schema = {"outcome": pl.String, "factor": pl.String, "S1": pl.Float64, "S1_conf": pl.Float64,
              "ST": pl.Float64, "ST_conf": pl.Float64}
    return pl.DataFrame(records, schema=schema)


def points_frame(sweep: SweepConfig, seed: int) -> pl.DataFrame:
    """The sampled scenarios' names and factor values, one column per factor."""
    names = [name for name, _ in point_scenarios(sweep, seed)]
    points = sample_points(sweep, seed)
    data: dict[str, list] = {"scenario": names}
    for j, factor in enumerate(sweep.factors):
        data[factor.key] = [float(f"{v:.6g}") for v in points[:, j]]
    return pl.DataFrame(data)


def report_section(indices: pl.DataFrame, headline: Sequence[str]) -> str:
    """The report's Markdown section on the indices of the headline outcomes ('' if none)."""
    from kibs_mc.analysis.report import markdown_table

    shown = indices.filter(pl.col("outcome").is_in(list(headline)))
    if shown.height == 0:
        return ""
    return "\n".join([
        "## Sensitivity to the swept factors", "",
        "Sensitivity indices of the scenario means (Sobol indices for `sobol` sweeps, "
        "first-order RBD-FAST for `lhs`): `S1` the share of variance a factor explains "
        "alone, `ST` with its interactions (`*_conf`: 95% bootstrap half-width). Indices "
        "whose CI spans zero are not distinguishable from replicate noise.", "",
        markdown_table(shown), ""])
