"""Sampled scenarios and global sensitivity analysis (``experiment=lever_sweep``).

Points come from ``scipy.stats.qmc`` (Latin hypercube), from SALib's Saltelli sampler (Sobol
indices) or from a grid; each point becomes a scenario whose overrides set the factors. Points
are drawn on the unit cube and mapped to each factor's range by the uncertainty space's own map
(:func:`kibs_mc.analysis.robustness.scale_unit`): linearly, uniformly in log (``scale: log``) or
onto the whole numbers low..high, each on an equal share of the unit interval (``integer``). A
factor is then a function of its own unit coordinate alone, so the indices computed on the unit
coordinates are the factors' indices (for an integer factor: of its values drawn with equal
probability). After
the run, each outcome's scenario means feed SALib: first-order (S1) and total (ST) Sobol
indices (Saltelli et al. 2010, Comput. Phys. Commun. 181:259-270), or first-order RBD-FAST
indices for a Latin hypercube (Tarantola et al. 2006). Replicate noise in the scenario means
biases Sobol indices, not only their uncertainty (it inflates the variance they divide by and
the total index's numerator); with two or more replicates per point :func:`sobol_indices`
removes that bias with the replicates' own covariances, and ``noise_share`` says how much of
the points' variance was noise. RBD-FAST indices and one-replicate sweeps are not corrected.

Convergence (Sobol): SALib's Saltelli sample of N base points is the first N (D + 2) rows of the
sample of 2N (a scrambled Sobol' sequence), so a sweep can double N, keeping every point it
has run, until the indices are precise (``experiment.sweep.max_samples``, ``tolerance``), and
the indices can be recomputed on each prefix N = samples, 2 samples, ... for a convergence plot
(:func:`sobol_convergence`). :func:`index_warnings` names indices that are noise: ST below S1
beyond their CIs (impossible for the true indices) or S1 and ST both within their CI of zero.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from kibs_mc.config import SweepConfig, SweepFactor


def _problem(sweep: SweepConfig) -> dict:
    """SALib's problem on the unit cube: points are drawn there and mapped to each factor's
    scale by :func:`kibs_mc.analysis.robustness.scale_unit` (Sobol indices are those of the
    factors: a factor is a function of its own unit coordinate, and nothing else)."""
    return {
        "num_vars": len(sweep.factors),
        "names": [f.key for f in sweep.factors],
        "bounds": [[0.0, 1.0]] * len(sweep.factors),
    }


def planned_samples(sweep: SweepConfig) -> int:
    """Base samples of the whole plan: ``max_samples`` when a Sobol sweep may double, else
    ``samples``."""
    return sweep.max_samples if sweep.method == "sobol" and sweep.max_samples else sweep.samples


def points_per_sample(sweep: SweepConfig) -> int:
    """Scenarios per base sample (Saltelli without second order: factors + 2)."""
    return len(sweep.factors) + 2 if sweep.method == "sobol" else 1


def unit_points(sweep: SweepConfig, seed: int) -> np.ndarray:
    """The sample on the unit cube, one row per point, one column per factor (the plan's
    largest sample; Sobol and Latin hypercube designs)."""
    if sweep.method == "sobol":
        from SALib.sample import sobol

        return sobol.sample(
            _problem(sweep), planned_samples(sweep), calc_second_order=False, seed=seed % 2**32
        )
    if sweep.method == "lhs":
        from scipy.stats import qmc

        sampler = qmc.LatinHypercube(d=len(sweep.factors), seed=np.random.default_rng(seed))
        return sampler.random(sweep.samples)
    return np.empty((0, len(sweep.factors)))


def _grid_axis(factor: SweepFactor, count: int) -> np.ndarray:
    if factor.integer:  # at most `count` whole values, evenly spread, each once
        return np.unique(np.round(np.linspace(factor.low, factor.high, count)))
    if factor.scale == "log":
        return np.geomspace(factor.low, factor.high, count)
    return np.linspace(factor.low, factor.high, count)


def sample_points(sweep: SweepConfig, seed: int) -> np.ndarray:
    """The sample, one row per point, one column per factor (the plan's largest sample), on
    each factor's scale: linear, uniform in log (``scale: log``), or whole numbers low..high
    about equally often (``integer: true``)."""
    if sweep.method == "grid":
        axes = [_grid_axis(f, sweep.samples) for f in sweep.factors]
        return np.array(list(itertools.product(*axes)))
    from kibs_mc.analysis.robustness import scale_unit

    return scale_unit(sweep.factors, unit_points(sweep, seed))


def _text(factor: SweepFactor, value: float) -> str:
    return str(int(value)) if factor.integer else f"{float(value):.6g}"


def point_scenarios(sweep: SweepConfig, seed: int) -> list[tuple[str, list[str]]]:
    """(name, overrides) of every sampled point."""
    points = sample_points(sweep, seed)
    width = len(str(len(points)))
    return [
        (f"point-{i:0{width}d}", [f"{f.key}={_text(f, v)}" for f, v in zip(sweep.factors, row, strict=True)])
        for i, row in enumerate(points)
    ]


def run_samples(rows: pl.DataFrame, sweep: SweepConfig, seed: int) -> int:
    """The largest base sample N (samples, 2 samples, ... up to the plan's) whose points all
    have rows: the sample the indices are computed from."""
    names = [name for name, _ in point_scenarios(sweep, seed)]
    have = set(rows["scenario"].unique().to_list()) if rows.height else set()
    per = points_per_sample(sweep)
    n, best = sweep.samples, 0
    while n <= planned_samples(sweep):
        if all(name in have for name in names[: n * per]):
            best = n
        n *= 2
    return best


def _scenario_means(rows: pl.DataFrame, names: Sequence[str], outcomes: Sequence[str]) -> pl.DataFrame:
    means = (
        rows.filter(pl.col("scenario").is_in(list(names)))
        .group_by("scenario")
        .agg([pl.col(o).cast(pl.Float64).mean() for o in outcomes])
    )
    order = pl.DataFrame({"scenario": list(names)})
    return order.join(means, on="scenario", how="left", maintain_order="left")


#: Bootstrap resamples of the base samples for the Sobol indices' CIs (SALib's default).
SOBOL_RESAMPLES = 100


def sobol_indices(
    y: np.ndarray, factors: int, seed: int, resamples: int = SOBOL_RESAMPLES, confidence: float = 0.95
) -> dict[str, np.ndarray]:
    """First-order and total Sobol indices of the mean response from replicates at Saltelli's
    points, corrected for the replicate noise in the points' means.

    ``y`` is points x replicates in SALib's order without second order (per base sample n:
    A_n, AB_n1..AB_nD, B_n), replicate r from seed r at every point (common random numbers
    allowed: only each point's own replicates are compared). The estimators are Saltelli et
    al.'s (2010, Comput. Phys. Commun. 181:259-270, Table 2) for S1, mean B (AB_j - A), and
    Jansen's for ST, mean (A - AB_j)^2 / 2, over the variance V = mean (A - B)^2 / 2. Each
    averages a product of two points' means; a mean of R noisy replicates adds the covariance
    of the two points' replicate noise, divided by R, to that product, so the estimate
    subtracts the replicates' sample covariance / R from each product (for a square, the
    variance of the paired differences / R). That leaves the indices of the mean response:
    without it, noise inflates V (S1 biased toward 0) and the ST numerator (ST biased up).
    With one replicate per point nothing can be subtracted.

    Returns S1, S1_conf, ST, ST_conf (``confidence`` half-widths, normal approximation of
    ``resamples`` bootstrap resamples of the base samples, as SALib reports them) and
    ``noise_share``, the part of the points' variance that is replicate noise."""
    from scipy.stats import norm

    y = np.asarray(y, dtype=float)
    step = factors + 2
    n = y.shape[0] // step
    reps = y.shape[1]
    a, b = y[0 : n * step : step], y[step - 1 : n * step : step]  # (n, R)
    ab = np.stack([y[j + 1 : n * step : step] for j in range(factors)], axis=1)  # (n, D, R)

    def bias(x: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Sample covariance over replicates of x and z, / R: what the noise adds to mean x * mean z."""
        if reps < 2:
            return np.zeros(np.broadcast_shapes(x.shape, z.shape)[:-1])
        xc, zc = x - x.mean(axis=-1, keepdims=True), z - z.mean(axis=-1, keepdims=True)
        return (xc * zc).sum(axis=-1) / (reps - 1) / reps

    ma, mb, mab = a.mean(axis=1), b.mean(axis=1), ab.mean(axis=2)  # (n,), (n,), (n, D)
    d_ab = a - b
    v_terms = 0.5 * (d_ab.mean(axis=1) ** 2 - bias(d_ab, d_ab))  # (n,)
    gap = ab - a[:, None, :]  # AB_j - A per replicate, (n, D, R)
    s1_terms = mb[:, None] * (mab - ma[:, None]) - bias(b[:, None, :], gap)
    st_terms = 0.5 * ((ma[:, None] - mab) ** 2 - bias(gap, gap))
    raw_v = 0.5 * float((d_ab.mean(axis=1) ** 2).mean())

    def indices(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        v = v_terms[rows].mean(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            return s1_terms[rows].mean(axis=0) / v, st_terms[rows].mean(axis=0) / v

    s1, st = indices(np.arange(n))
    draws = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    boot = [indices(r) for r in draws]
    z = float(norm.ppf(0.5 + confidence / 2))
    return {
        "S1": s1,
        "S1_conf": z * np.std([s for s, _ in boot], axis=0, ddof=1),
        "ST": st,
        "ST_conf": z * np.std([t for _, t in boot], axis=0, ddof=1),
        "noise_share": np.full(factors, 1 - float(v_terms.mean()) / raw_v if raw_v > 0 else np.nan),
    }


INDEX_SCHEMA = {
    "outcome": pl.String,
    "factor": pl.String,
    "samples": pl.Int64,
    "S1": pl.Float64,
    "S1_conf": pl.Float64,
    "ST": pl.Float64,
    "ST_conf": pl.Float64,
    "noise_share": pl.Float64,
}


def replicate_matrix(rows: pl.DataFrame, names: Sequence[str], outcome: str) -> np.ndarray | None:
    """Points (in ``names``' order) x the replicates every point has, of ``outcome``; None
    without a ``replicate`` column or with fewer than two replicates common to all points."""
    if "replicate" not in rows.columns:
        return None
    wide = (
        rows.filter(pl.col("scenario").is_in(list(names)))
        .select("scenario", "replicate", pl.col(outcome).cast(pl.Float64))
        .pivot(on="replicate", index="scenario", values=outcome)
    )
    wide = pl.DataFrame({"scenario": list(names)}).join(
        wide, on="scenario", how="left", maintain_order="left"
    )
    y = wide.drop("scenario").fill_null(float("nan")).to_numpy()
    y = y[:, np.isfinite(y).all(axis=0)] if y.size else y
    return y if y.ndim == 2 and y.shape[1] >= 2 else None


def sensitivity(
    rows: pl.DataFrame, sweep: SweepConfig, seed: int, outcomes: Sequence[str], samples: int | None = None
) -> pl.DataFrame:
    """Sensitivity indices of each outcome's scenario mean to each factor (empty for grids),
    from the first ``samples`` base samples (default: all that have run, :func:`run_samples`)."""
    if sweep.method not in ("sobol", "lhs"):
        return pl.DataFrame(schema=INDEX_SCHEMA)
    problem = _problem(sweep)
    n = samples if samples is not None else run_samples(rows, sweep, seed)
    if n < 2:
        return pl.DataFrame(schema=INDEX_SCHEMA)
    count = n * points_per_sample(sweep)
    names = [name for name, _ in point_scenarios(sweep, seed)][:count]
    means = _scenario_means(rows, names, outcomes)
    records = []
    for outcome in outcomes:
        y = means[outcome].to_numpy()
        if np.any(~np.isfinite(y)) or np.std(y) == 0:
            continue  # no variation (or missing points): indices undefined
        if sweep.method == "sobol":
            replicates = replicate_matrix(rows, names, outcome)
            r: dict[str, Any]
            if replicates is not None:  # the mean response's indices, replicate noise removed
                r = dict(sobol_indices(replicates, len(problem["names"]), seed % 2**32))
            else:
                from SALib.analyze import sobol

                r = dict(sobol.analyze(problem, y, calc_second_order=False, seed=seed % 2**32))
                r["noise_share"] = [None] * len(problem["names"])
            for i, factor in enumerate(problem["names"]):
                records.append(
                    {
                        "outcome": outcome,
                        "factor": factor,
                        "samples": n,
                        "S1": r["S1"][i],
                        "S1_conf": r["S1_conf"][i],
                        "ST": r["ST"][i],
                        "ST_conf": r["ST_conf"][i],
                        "noise_share": r["noise_share"][i],
                    }
                )
        else:
            from SALib.analyze import rbd_fast

            # ranks of the unit coordinates: those of the factors, without ties for integers
            r = rbd_fast.analyze(problem, unit_points(sweep, seed)[:count], y, seed=seed % 2**32)
            for i, factor in enumerate(problem["names"]):
                records.append(
                    {
                        "outcome": outcome,
                        "factor": factor,
                        "samples": n,
                        "S1": r["S1"][i],
                        "S1_conf": r["S1_conf"][i],
                        "ST": None,
                        "ST_conf": None,
                        "noise_share": None,
                    }
                )
    return pl.DataFrame(records, schema=INDEX_SCHEMA)


def sobol_convergence(
    rows: pl.DataFrame, sweep: SweepConfig, seed: int, outcomes: Sequence[str]
) -> pl.DataFrame:
    """Sobol indices on each nested prefix N = samples, 2 samples, ... of the points that ran."""
    if sweep.method != "sobol":
        return pl.DataFrame(schema=INDEX_SCHEMA)
    top = run_samples(rows, sweep, seed)
    frames, n = [], sweep.samples
    while 2 <= n <= top:
        frames.append(sensitivity(rows, sweep, seed, outcomes, n))
        n *= 2
    return pl.concat(frames) if frames else pl.DataFrame(schema=INDEX_SCHEMA)


def precise(indices: pl.DataFrame, outcome: str, tolerance: float) -> bool:
    """Every S1 and ST CI half-width of ``outcome`` is at most ``tolerance``, and every pair of
    factors is ranked by ST (CIs apart) or equal within ``tolerance`` (both CIs that narrow)."""
    part = indices.filter(pl.col("outcome") == outcome)
    if part.height == 0:
        return False
    conf = part["ST_conf"].to_numpy()
    st = part["ST"].to_numpy()
    if max(float(part["S1_conf"].max()), float(part["ST_conf"].max())) > tolerance:  # type: ignore[arg-type]
        return False
    for i in range(len(st)):
        for j in range(i + 1, len(st)):
            apart = abs(st[i] - st[j]) > conf[i] + conf[j]
            if not (apart or (conf[i] <= tolerance and conf[j] <= tolerance)):
                return False
    return True


def index_warnings(indices: pl.DataFrame, outcomes: Sequence[str]) -> list[str]:
    """Sentences on indices that are noise, for the report and the terminal."""
    lines = []
    for r in indices.filter(pl.col("outcome").is_in(list(outcomes))).iter_rows(named=True):
        where = f"`{r['outcome']}` / `{r['factor']}` (N = {r['samples']})"
        if r["ST"] is not None and r["ST"] + r["ST_conf"] < r["S1"] - r["S1_conf"]:
            lines.append(
                f"{where}: ST = {r['ST']:.2f} ± {r['ST_conf']:.2f} is below S1 = "
                f"{r['S1']:.2f} ± {r['S1_conf']:.2f} beyond their CIs, impossible for the "
                "true indices: the sample is too small to rank this factor."
            )
        s1_zero = abs(r["S1"]) <= r["S1_conf"]
        st_zero = r["ST"] is None or abs(r["ST"]) <= r["ST_conf"]
        if s1_zero and st_zero:
            lines.append(
                f"{where}: S1 = {r['S1']:.2f} ± {r['S1_conf']:.2f}"
                + (f", ST = {r['ST']:.2f} ± {r['ST_conf']:.2f}" if r["ST"] is not None else "")
                + ": not distinguishable from zero."
            )
    return lines


def points_frame(sweep: SweepConfig, seed: int) -> pl.DataFrame:
    """The sampled scenarios' names and factor values, one column per factor."""
    names = [name for name, _ in point_scenarios(sweep, seed)]
    points = sample_points(sweep, seed)
    data: dict[str, list] = {"scenario": names}
    for j, factor in enumerate(sweep.factors):  # the values the scenarios run with
        data[factor.key] = (
            [int(v) for v in points[:, j]] if factor.integer else [float(f"{v:.6g}") for v in points[:, j]]
        )
    return pl.DataFrame(data)


def factor_words(factors: Sequence[SweepFactor]) -> str:
    """The factors' ranges and scales in a sentence, with how to read integer factors."""

    def one(f: SweepFactor) -> str:
        how = (
            "whole numbers, each equally likely"
            if f.integer
            else "uniform in log"
            if f.scale == "log"
            else "uniform"
        )
        return f"`{f.key}` [{f.low:g}, {f.high:g}] ({how})"

    text = "Factors: " + ", ".join(one(f) for f in factors) + "."
    if any(f.integer for f in factors):
        text += (
            " An integer factor's indices are those of the factor taking its whole values "
            "with equal probability: the share of variance from moving it across them (each "
            "index is computed from the unit coordinate the value is a step function of)."
        )
    return text


def report_section(
    indices: pl.DataFrame,
    headline: Sequence[str],
    warnings: Sequence[str] = (),
    factors: Sequence[SweepFactor] = (),
) -> str:
    """The report's Markdown section on the indices of the headline outcomes ('' if none), with
    the warnings of :func:`index_warnings` and the factors' ranges (:func:`factor_words`)."""
    from kibs_mc.analysis.report import markdown_table

    shown = indices.filter(pl.col("outcome").is_in(list(headline)))
    if shown.height == 0:
        return ""
    extra = [f"- **Warning**: {w}" for w in warnings]
    return "\n".join(
        [
            *(["## Sensitivity: warnings", "", *extra, ""] if extra else []),
            "## Sensitivity to the swept factors",
            "",
            "Sensitivity indices of the scenario means (Sobol indices for `sobol` sweeps, "
            "first-order RBD-FAST for `lhs`): `S1` the share of variance a factor explains "
            "alone, `ST` with its interactions (`*_conf`: 95% bootstrap half-width). Sobol "
            "indices are those of the mean response: with two or more replicates per point the "
            "replicate noise in the points' means is removed (`noise_share`: its part of their "
            "variance). Indices whose CI spans zero are not distinguishable from replicate noise."
            + (" " + factor_words(factors) if factors else ""),
            "",
            markdown_table(shown),
            "",
        ]
    )
